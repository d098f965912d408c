"""Approval's tables: case plans, tasks, opinions, extensions, special procedures and sealed decisions."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

from services.common.audit import audit_tables
from services.common.db import Instant
from services.common.outbox import inbox_table, outbox_table

metadata = MetaData()

plans = Table(
    "approval_plans",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("case_number", String(64), nullable=False, unique=True),
    Column("matter_code", String(64), nullable=False),
    Column("accepted_at", Instant, nullable=False),
    Column("promised_limit_days", Integer, nullable=False),
    Column("key_project", Boolean, nullable=False, default=False),
    Column("preliminary_review", Boolean, nullable=False, default=False),  # CaseRouted.preliminary_review
    Column("supplement_round", Integer, nullable=False, default=0),
    Column("state", String(16), nullable=False),  # open | concluded | withdrawn
    Column("outcome", Integer, nullable=False, default=0),
    Column("updated_at", Instant, nullable=False),
    # The special procedures (hearing, expert_review, ...) the matter allows (CaseRouted).
    Column("special_procedures", JSON, nullable=False, default=list),
)

tasks = Table(
    "approval_tasks",
    metadata,
    Column("task_id", String(36), primary_key=True),
    Column("case_id", String(36), nullable=False, index=True),
    Column("case_number", String(64), nullable=False),
    Column("matter_code", String(64), nullable=False),
    Column("department", String(32), nullable=False),
    Column("window", String(64), nullable=False),
    Column("grp", Integer, nullable=False),
    Column("prerequisites", JSON, nullable=False),
    Column("lead", Boolean, nullable=False),
    Column("status", Integer, nullable=False),
    Column("priority", Integer, nullable=False, default=0),
    Column("due_at", Instant, nullable=True),
    Column("claimed_by", JSON, nullable=True),
    Column("decided_by", JSON, nullable=True),
    Column("opinion", Text, nullable=False, default=""),
    Column("reasons", JSON, nullable=False),
    Column("items", JSON, nullable=False),  # supplement items this task asked for
    Column("extension_days", Integer, nullable=False, default=0),
    Column("special_procedure", String(32), nullable=False, default=""),  # running now; "": none
    Column("created_at", Instant, nullable=False),
    Column("opened_at", Instant, nullable=True),
    Column("decided_at", Instant, nullable=True),
)
Index("ix_approval_tasks_queue", tasks.c.department, tasks.c.status, tasks.c.priority, tasks.c.due_at)

opinions = Table(
    "approval_opinions",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("task_id", String(36), nullable=False, index=True),
    Column("case_id", String(36), nullable=False),
    Column("author", JSON, nullable=False),
    Column("text", Text, nullable=False),
    Column("at", Instant, nullable=False),
)

extensions = Table(
    "approval_extensions",
    metadata,
    Column("extension_id", String(36), primary_key=True),
    Column("task_id", String(36), nullable=False, index=True),
    Column("case_number", String(64), nullable=False),
    Column("department", String(32), nullable=False),
    Column("days", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("state", String(16), nullable=False),  # requested | approved | refused
    Column("requested_by", JSON, nullable=False),
    Column("decided_by", JSON, nullable=True),
    Column("decision_reason", Text, nullable=False, default=""),
    Column("requested_at", Instant, nullable=False),
    Column("decided_at", Instant, nullable=True),
)

special_procedures = Table(
    "approval_special_procedures",
    metadata,
    Column("procedure_id", String(36), primary_key=True),
    Column("task_id", String(36), nullable=False, index=True),
    Column("case_number", String(64), nullable=False, index=True),
    Column("department", String(32), nullable=False),
    Column("procedure", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("expected_days", Integer, nullable=False),
    Column("expected_end", Instant, nullable=True),
    Column("state", String(16), nullable=False),  # running | ended
    Column("started_by", JSON, nullable=False),
    Column("started_at", Instant, nullable=False),
    Column("ended_by", JSON, nullable=True),
    Column("ended_at", Instant, nullable=True),
    Column("result", Text, nullable=False, default=""),
)

# Calendar years an administrator loaded at supervision (CalendarYearLoaded), beside the packaged ones.
calendar_years = Table(
    "approval_calendar_years",
    metadata,
    Column("year", Integer, primary_key=True, autoincrement=False),
    Column("holidays", JSON, nullable=False),  # {ISO date: name}
    Column("workdays", JSON, nullable=False),  # [ISO date]
    Column("source", String(255), nullable=False),
    Column("loaded_at", Instant, nullable=False),
)

decisions = Table(
    "approval_decisions",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("case_number", String(64), nullable=False, index=True),
    Column("task_id", String(36), nullable=False, default=""),  # empty: the case's joined decision
    Column("sealed", LargeBinary, nullable=False),
    Column("at", Instant, nullable=False),
)

outbox = outbox_table(metadata, "approval")
inbox = inbox_table(metadata, "approval")

audit = audit_tables(metadata, "approval")
