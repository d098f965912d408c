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
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from services.common.audit import audit_tables
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
Index("ix_intake_cases_origin", cases.c.origin_case_id)

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

# -- interconnect (docs/INTERCONNECT.md) ------------------------------------------------------------
_SEQ = BigInteger().with_variant(Integer, "sqlite")

# Child side: the durable forwarding outbox (upload, supplement, withdraw, evaluate), delivered in order
# per case.
forwarding = Table(
    "intake_forwarding",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column("case_id", String(36), nullable=False),
    Column("op", String(16), nullable=False),  # upload | supplement | withdraw | evaluate
    Column("state", String(16), nullable=False),  # held | pending | done | failed | cancelled
    Column("parent_center", String(32), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("last_error", Text, nullable=False, default=""),
    Column("waiting_since", DateTime(timezone=True), nullable=False),
    Column("done_at", DateTime(timezone=True), nullable=True),
    Column("parent_case_id", String(36), nullable=False, default=""),
    Column("parent_case_number", String(64), nullable=False, default=""),
    Column("result_at", DateTime(timezone=True), nullable=True),
)
Index("ix_intake_forwarding_due", forwarding.c.state, forwarding.c.next_attempt_at)
Index("ix_intake_forwarding_case", forwarding.c.case_id, forwarding.c.seq)

# Child side: the last result update applied from the parent's feed (in the same transaction).
parent_link = Table(
    "intake_parent_link",
    metadata,
    Column("parent_center", String(32), primary_key=True),
    Column("applied_cursor", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Parent side: per-child result feed; seq is drawn under the head row's lock, so commit order = seq order.
result_feed = Table(
    "intake_result_feed",
    metadata,
    Column("child_center", String(32), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("child_case_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

feed_heads = Table(
    "intake_feed_heads",
    metadata,
    Column("child_center", String(32), primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
    Column("acked_seq", BigInteger, nullable=False),
    Column("acked_at", DateTime(timezone=True), nullable=True),
)

# Parent side: supplement/withdraw operations already applied (a retried call is answered, not redone).
interconnect_ops = Table(
    "intake_interconnect_ops",
    metadata,
    Column("center", String(32), primary_key=True),
    Column("operation_id", String(128), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
)

# Parent side: calls refused because they reached for another center's case (or came from a stranger).
interconnect_audit = Table(
    "intake_interconnect_audit",
    metadata,
    Column("id", _SEQ, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("center", String(64), nullable=False),
    Column("method", String(64), nullable=False),
    Column("child_case_id", String(64), nullable=False, default=""),
    Column("allowed", Boolean, nullable=False),
    Column("detail", Text, nullable=False, default=""),
)

# Intake's hash-chained audit log (services/common/audit.py): every node-to-node call a parent serves,
# allowed or refused, with the caller's center from its certificate.
audit = audit_tables(metadata, "intake")

outbox = outbox_table(metadata, "intake")
inbox = inbox_table(metadata, "intake")

from services.intake import orm_convenience  # noqa: E402,F401  (tables on the same metadata)
