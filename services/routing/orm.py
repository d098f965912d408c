"""Routing's tables: catalogue versions and where each case is decided."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, DateTime, Integer, MetaData, String, Table, Text

from services.common.outbox import inbox_table, outbox_table

metadata = MetaData()

catalogue_versions = Table(
    "routing_catalogue_versions",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("content", Text, nullable=False),  # the YAML as imported
    Column("source", String(255), nullable=False),
    Column("changed_by", String(128), nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("added", JSON, nullable=False),
    Column("removed", JSON, nullable=False),
    Column("changed", JSON, nullable=False),
)

routes = Table(
    "routing_routes",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("case_number", String(64), nullable=False),
    Column("matter_code", String(64), nullable=False),
    Column("matter_version", Integer, nullable=False),
    Column("decided_at_center", String(32), nullable=False),
    Column("forwarded", Boolean, nullable=False),
    Column("forward_state", String(32), nullable=False, default=""),
    Column("routed_at", DateTime(timezone=True), nullable=False),
)

outbox = outbox_table(metadata, "routing")
inbox = inbox_table(metadata, "routing")
