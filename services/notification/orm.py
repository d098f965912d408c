"""Notification's tables: recipients, tasks seen, deliveries and their attempts, inboxes, notices."""

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

# Who to tell about a case: the contact arrives only once, in case_accepted.
recipients = Table(
    "notification_recipients",
    metadata,
    Column("case_number", String(64), primary_key=True),
    Column("case_id", String(36), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("phone", String(32), nullable=False),
    Column("email", String(254), nullable=False),
    Column("language", String(8), nullable=False),
    Column("agent", String(64), nullable=False),  # username of the agent acting for the applicant
    Column("title", String(500), nullable=False),
    Column("matter_code", String(64), nullable=False),
    # False for a case a child center uploaded: that center tells its own applicant.
    Column("direct", Boolean, nullable=False),
    Column("origin_center", String(32), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Which window holds a task, so later clock warnings reach that window's queue.
tasks = Table(
    "notification_tasks",
    metadata,
    Column("task_id", String(36), primary_key=True),
    Column("case_number", String(64), nullable=False),
    Column("department", String(32), nullable=False),
    Column("window", String(64), nullable=False),
)

deliveries = Table(
    "notification_deliveries",
    metadata,
    Column("delivery_id", String(36), primary_key=True),
    Column("event_id", String(36), nullable=False),
    Column("kind", String(64), nullable=False),  # the message template
    Column("case_number", String(64), nullable=False, index=True),
    Column("channel", String(16), nullable=False),  # sms | email | inbox | notice | none
    Column("recipient", String(128), nullable=False),  # case:<n> | window:<w> | head:<d> | staff:<u>
    Column("address", Text, nullable=False),  # cleared once sent: we keep only what we must
    Column("address_masked", String(300), nullable=False),
    Column("language", String(8), nullable=False),
    Column("context", JSON, nullable=False),
    Column("notice_kind", String(32), nullable=False),
    Column("notice_id", String(36), nullable=False),
    Column("state", String(16), nullable=False),  # pending | failed | sent | dead | skipped
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    # The same event never produces the same message twice on one channel to one recipient.
    UniqueConstraint("event_id", "kind", "channel", "recipient", name="uq_notification_deliveries_once"),
)
Index("ix_notification_deliveries_due", deliveries.c.state, deliveries.c.next_attempt_at)

attempts = Table(
    "notification_attempts",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("delivery_id", String(36), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("outcome", String(16), nullable=False),  # sent | transient | permanent
    Column("detail", Text, nullable=False),
    Column("elapsed_ms", Integer, nullable=False),
)

inbox_messages = Table(
    "notification_inbox_messages",  # "notification_inbox" is the consumer's idempotency table
    metadata,
    Column("message_id", String(36), primary_key=True),
    Column("delivery_id", String(36), nullable=False, unique=True),
    Column("recipient", String(128), nullable=False),
    Column("case_number", String(64), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("title", String(500), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
Index("ix_notification_inbox_messages_recipient", inbox_messages.c.recipient, inbox_messages.c.created_at)

notices = Table(
    "notification_notices",
    metadata,
    Column("notice_id", String(36), primary_key=True),
    Column("delivery_id", String(36), nullable=False, unique=True),
    Column("case_number", String(64), nullable=False, index=True),
    Column("kind", String(32), nullable=False),  # supplement | extension | decision | deemed_approval
    Column("language", String(8), nullable=False),
    Column("html", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

outbox = outbox_table(metadata, "notification")
inbox = inbox_table(metadata, "notification")
