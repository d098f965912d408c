"""Supervision's tables: known cases, clocks and their changes, warnings, urges, deemed approvals,
accountability, evaluations and alarms."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from services.common.db import Instant
from services.common.outbox import inbox_table, outbox_table

metadata = MetaData()


# The cases supervision has heard of, with what the clocks need (limits come with case_routed).
cases = Table(
    "supervision_cases",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("case_number", String(64), nullable=True, unique=True),
    Column("center", String(32), nullable=False, default=""),
    Column("matter_code", String(64), nullable=False, default=""),
    # submitted | accepted | routed | forwarded | concluded | withdrawn
    Column("status", String(16), nullable=False),
    Column("outcome", Integer, nullable=False, default=0),
    Column("accepted_at", Instant(), nullable=True),
    Column("routed", Boolean, nullable=False, default=False),
    Column("on_the_spot", Boolean, nullable=False, default=False),
    Column("promised_days", Integer, nullable=False, default=0),
    Column("statutory_days", Integer, nullable=False, default=0),
    Column("threshold_days", Integer, nullable=False, default=1),
    Column("deemed_allowed", Boolean, nullable=False, default=False),
    Column("key_project", Boolean, nullable=False, default=False),
    Column("key_deadline", Instant(), nullable=True),
    Column("tracker", String(64), nullable=False, default=""),
    # From case_accepted; null for a case accepted before intake sent it (then the first evaluation's).
    Column("query_code_digest", String(64), nullable=True),
    Column("forwarded_to", String(32), nullable=False, default=""),  # the parent center deciding it
    Column("forward_reason", String(32), nullable=False, default=""),  # decided_above | preliminary_review
    # When it went up (decided above: forwarded; preliminary review: passed); not indexed, only the
    # statistics read it, and every index costs each case write.
    Column("forwarded_at", Instant(), nullable=True),
    Column("concluded_at", Instant(), nullable=True),
    Column("updated_at", Instant(), nullable=False),
)
Index("ix_supervision_cases_tracker", cases.c.key_project, cases.c.tracker)

# One clock per case (task_id "") and one per department task.
clocks = Table(
    "supervision_clocks",
    metadata,
    Column("clock_id", String(80), primary_key=True),
    Column("case_id", String(36), nullable=False, index=True),
    # Not indexed: every index costs each tick's update of a thousand rows (GetClocks goes by case_id).
    Column("case_number", String(64), nullable=False),
    Column("task_id", String(36), nullable=False, default=""),
    Column("center", String(32), nullable=False, default=""),
    Column("matter_code", String(64), nullable=False, default=""),
    Column("department", String(32), nullable=False, default=""),
    Column("window", String(64), nullable=False, default=""),
    Column("accepted_at", Instant(), nullable=False),
    Column("started_at", Instant(), nullable=False),
    Column("limit_days", Integer, nullable=False),
    Column("statutory_days", Integer, nullable=False, default=0),
    Column("key_deadline", Instant(), nullable=True),
    Column("extension_days", Integer, nullable=False, default=0),
    Column("threshold_days", Integer, nullable=False, default=1),
    Column("deemed_allowed", Boolean, nullable=False, default=False),
    Column("pauses", JSON, nullable=False),  # [{"kind", "from", "to"|null}]
    Column("paused", Boolean, nullable=False, default=False),
    Column("due_at", Instant(), nullable=True),  # null: calendar missing
    Column("calendar_missing", Integer, nullable=False, default=0),  # the year lacking data, or 0
    Column("warned_level", Integer, nullable=False, default=0),
    Column("urged_at", Instant(), nullable=True),
    Column("deem_state", String(16), nullable=False, default=""),  # "" | pending | deemed | refused
    Column("claimants", JSON, nullable=False),
    Column("decided_by", String(64), nullable=False, default=""),
    Column("stopped_at", Instant(), nullable=True),
    Column("outcome", Integer, nullable=False, default=0),
    Column("working_days", Integer, nullable=True),
    Column("next_action_at", Instant(), nullable=True),
    Column("updated_at", Instant(), nullable=False),
)
# The tick's only access path: the earliest instants that need attention, never a full scan.
Index(
    "ix_supervision_clocks_next_action",
    clocks.c.next_action_at,
    postgresql_where=clocks.c.next_action_at.isnot(None),
    sqlite_where=clocks.c.next_action_at.isnot(None),
)

clock_changes = Table(
    "supervision_clock_changes",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("clock_id", String(80), nullable=False, index=True),
    Column("case_number", String(64), nullable=False),
    Column("at", Instant(), nullable=False),
    Column("cause", String(32), nullable=False),
    Column("old_due", Instant(), nullable=True),
    Column("new_due", Instant(), nullable=True),
    Column("detail", Text, nullable=False, default=""),
    Column("event_id", String(36), nullable=False, default=""),
)

# Warnings, urges and deemed approvals name only their clock: a tick writes a thousand of them at once,
# and their department, window, matter and center are the clock's.
warnings = Table(
    "supervision_warnings",
    metadata,
    Column("clock_id", String(80), primary_key=True),
    Column("level", Integer, primary_key=True),  # onestop.common.v1.ClockState YELLOW | RED
    Column("raised_at", Instant(), nullable=False),
)

# Unique per task: two replicas can never urge or deem the same task twice.
urges = Table(
    "supervision_urges",
    metadata,
    Column("task_id", String(36), primary_key=True),
    Column("clock_id", String(80), nullable=False),
    Column("due_at", Instant(), nullable=True),
    Column("urged_at", Instant(), nullable=False),
)

deemed = Table(
    "supervision_deemed",
    metadata,
    Column("task_id", String(36), primary_key=True),
    Column("clock_id", String(80), nullable=False),
    Column("due_at", Instant(), nullable=True),
    Column("urged_at", Instant(), nullable=True),
    Column("claimed_at", Instant(), nullable=False),
    Column("state", String(16), nullable=False),  # pending | deemed | refused
    Column("attempts", Integer, nullable=False, default=0),
    Column("note", Text, nullable=False, default=""),
    Column("deemed_at", Instant(), nullable=True),
)

accountability = Table(
    "supervision_accountability",
    metadata,
    Column("task_id", String(36), primary_key=True),
    Column("case_number", String(64), nullable=False),
    Column("department", String(32), nullable=False, index=True),
    Column("window", String(64), nullable=False, default=""),
    Column("staff", JSON, nullable=False),
    Column("due_at", Instant(), nullable=True),
    Column("urged_at", Instant(), nullable=True),
    Column("deemed_at", Instant(), nullable=False),
)

evaluations = Table(
    "supervision_evaluations",
    metadata,
    Column("evaluation_id", String(36), primary_key=True),
    Column("case_id", String(36), nullable=False, unique=True),
    Column("case_number", String(64), nullable=False),
    Column("center", String(32), nullable=False, default=""),
    Column("matter_code", String(64), nullable=False, default=""),
    Column("rating", Integer, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("text", Text, nullable=False, default=""),
    Column("submitted_at", Instant(), nullable=False),
    Column("rectification", Boolean, nullable=False, default=False),
    Column("callback_due", Instant(), nullable=True),
    Column("rectify_due", Instant(), nullable=True),
    Column("called_back_at", Instant(), nullable=True),
    Column("rectified_at", Instant(), nullable=True),
    Column("follow_up_rating", Integer, nullable=True),
    Column("follow_up_at", Instant(), nullable=True),
)

# Visible conditions that need an operator, e.g. ("calendar_missing", "2027"); raised once.
alarms = Table(
    "supervision_alarms",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("raised_at", Instant(), nullable=False),
    Column("detail", Text, nullable=False, default=""),
    Column("cleared_at", Instant(), nullable=True),
)

# The calendar data the open clocks were last computed with (a fingerprint of its years).
calendar_state = Table(
    "supervision_calendar_state",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("updated_at", Instant(), nullable=False),
)

# Calendar years an operator loaded at run time, so every replica computes with the same calendar.
calendar_years = Table(
    "supervision_calendar_years",
    metadata,
    Column("year", Integer, primary_key=True, autoincrement=False),
    Column("holidays", JSON, nullable=False),  # {ISO date: name}
    Column("workdays", JSON, nullable=False),  # [ISO date] adjusted working weekend days
    Column("source", String(255), nullable=False),
    Column("loaded_at", Instant(), nullable=False),
)

outbox = outbox_table(metadata, "supervision")
inbox = inbox_table(metadata, "supervision")
