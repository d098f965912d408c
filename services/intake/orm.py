"""Intake's tables: cases as the applicant sees them, documents, numbering and the timeline."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from services.common.outbox import inbox_table, outbox_table

metadata = MetaData()

cases = Table(
    "intake_cases",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("case_number", String(64), unique=True, nullable=True),
    Column("client_request_id", String(128), unique=True, nullable=True),
    Column("query_code", String(16), nullable=False),
    Column("center", String(32), nullable=False),
    Column("matter_code", String(64), nullable=False),
    Column("matter_version", Integer, nullable=False),
    Column("status", Integer, nullable=False),
    Column("outcome", Integer, nullable=False, default=0),
    Column("channel", Integer, nullable=False),
    Column("applicant", JSON, nullable=False),
    Column("documents", JSON, nullable=False),
    Column("form", JSON, nullable=False),
    Column("title", String(256), nullable=False, default=""),
    Column("submitted_by", JSON, nullable=False),
    Column("submitted_at", DateTime(timezone=True), nullable=False),
    Column("accepted_at", DateTime(timezone=True), nullable=True),
    Column("concluded_at", DateTime(timezone=True), nullable=True),
    Column("key_project", Boolean, nullable=False, default=False),
    Column("promised_deadline", DateTime(timezone=True), nullable=True),
    Column("open_supplement", JSON, nullable=False),
    Column("supplement_round", Integer, nullable=False, default=0),
    Column("reasons", JSON, nullable=False),
    Column("origin_center", String(32), nullable=False, default=""),
    Column("origin_case_id", String(64), nullable=False, default=""),
    Column("sealed", Text, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("ix_intake_cases_status", cases.c.status)

case_sequences = Table(
    "intake_case_sequences",
    metadata,
    Column("center", String(32), primary_key=True),
    Column("day", String(8), primary_key=True),
    Column("seq", Integer, nullable=False),
)

documents = Table(
    "intake_documents",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("filename", String(255), nullable=False),
    Column("content_type", String(128), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("stored_at", DateTime(timezone=True), nullable=False),
)

timeline = Table(
    "intake_timeline",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("case_id", String(36), nullable=False, index=True),
    Column("event_id", String(36), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("summary_zh", Text, nullable=False),
    Column("summary_en", Text, nullable=False),
    Column("actor", String(128), nullable=False, default=""),
    Column("department", String(32), nullable=False, default=""),
    UniqueConstraint("case_id", "event_id", name="uq_intake_timeline_event"),
)

outbox = outbox_table(metadata, "intake")
inbox = inbox_table(metadata, "intake")
