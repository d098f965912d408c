"""Convenience-service tables (R19, R20) on intake's metadata: agency, deliveries, fees, reconciliations."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    Text,
)

from services.common.db import Instant
from services.intake.orm import metadata

_ID = BigInteger().with_variant(Integer, "sqlite")
MONEY = Numeric(12, 2, asdecimal=True)

# A matter a village/community agent took at a service point; submitted when handed to the center.
agency = Table(
    "intake_agency",
    metadata,
    Column("agency_id", String(36), primary_key=True),
    Column("service_point", String(32), nullable=False),
    Column("agent", JSON, nullable=False),
    Column("agent_username", String(128), nullable=False, index=True),
    Column("resident_name", String(128), nullable=False),
    Column("matter_code", String(64), nullable=False),
    Column("request", JSON, nullable=False),  # the SubmitCaseRequest to make at hand-over
    Column("taken_at", Instant, nullable=False),
    Column("state", String(16), nullable=False),  # taken | handed_over
    Column("received_by", JSON, nullable=True),
    Column("handed_over_at", Instant, nullable=True),
    Column("case_id", String(36), nullable=True, unique=True),
)

# The full-process agent a liaison officer assigned to an accepted case (R20); reassignment overwrites.
assignments = Table(
    "intake_agent_assignments",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("agent", JSON, nullable=False),
    Column("agent_username", String(128), nullable=False, index=True),
    Column("assigned_by", JSON, nullable=False),
    Column("assigned_at", Instant, nullable=False),
)

deliveries = Table(
    "intake_deliveries",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("case_number", String(64), nullable=False),
    Column("method", String(16), nullable=False),  # handed_over | posted | picked_up
    Column("receiver_name", String(128), nullable=False),
    Column("confirmed_at", Instant, nullable=False),
    Column("by", JSON, nullable=False),
    Column("recorded_at", Instant, nullable=False),
    Column("note", Text, nullable=False, default=""),
)

receipt_sequences = Table(
    "intake_receipt_sequences",
    metadata,
    Column("center", String(32), primary_key=True),
    Column("year", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
)

# Append-only: a refund or a void is a new entry referencing the original charge.
fee_entries = Table(
    "intake_fee_entries",
    metadata,
    Column("entry_id", String(36), primary_key=True),
    Column("receipt_number", String(64), nullable=False, unique=True),
    Column("center", String(32), nullable=False),
    Column("year", Integer, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("entry_kind", String(8), nullable=False),  # charge | refund | void
    Column("fee_kind", String(16), nullable=False),  # administrative | other | fine
    Column("case_id", String(36), nullable=True),
    Column("case_number", String(64), nullable=False, default=""),
    Column("matter_code", String(64), nullable=False, default=""),
    Column("fee_code", String(64), nullable=False, default=""),
    Column("amount", MONEY, nullable=False),
    Column("payer", String(128), nullable=False),
    Column("method", String(16), nullable=False),
    Column("collector", JSON, nullable=False),
    Column("collector_username", String(128), nullable=False),
    Column("at", Instant, nullable=False),
    Column("day", String(10), nullable=False),
    Column("original_entry_id", String(36), nullable=True),
    Column("reason", Text, nullable=False, default=""),
)
Index("ix_intake_fee_entries_day", fee_entries.c.center, fee_entries.c.day, fee_entries.c.collector_username)
Index("ix_intake_fee_entries_original", fee_entries.c.original_entry_id)

reconciliations = Table(
    "intake_reconciliations",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("center", String(32), nullable=False),
    Column("day", String(10), nullable=False),
    Column("collector", String(128), nullable=False, default=""),  # empty: the whole center
    Column("expected", MONEY, nullable=False),
    Column("declared", MONEY, nullable=False),
    Column("difference", MONEY, nullable=False),
    Column("balanced", Boolean, nullable=False),
    Column("flagged", Boolean, nullable=False),
    Column("entries", Integer, nullable=False),
    Column("by", JSON, nullable=False),
    Column("at", Instant, nullable=False),
    Column("report_html", Text, nullable=False),
)
Index("ix_intake_reconciliations_day", reconciliations.c.center, reconciliations.c.day)
