"""Which bulk writes go to PostgreSQL as one statement of column arrays, and which stay executemany."""

from __future__ import annotations

import uuid

from sqlalchemy import JSON, Column, Integer, MetaData, String, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import asyncpg

from services.common.db import Instant, unnest_insert, unnest_params

metadata = MetaData()
plain = Table(
    "plain",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("n", Integer, nullable=False),
    Column("detail", JSON),
    Column("at", Instant),
    Column("note", String(8), default="-"),
)
with_array = Table(
    "with_array",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tags", postgresql.ARRAY(String)),
)
with_callable = Table(
    "with_callable",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("token", String(36), default=lambda: str(uuid.uuid4())),
)


def _sql(stmt: object) -> str:
    return str(stmt.compile(dialect=asyncpg.dialect()))  # type: ignore[attr-defined]


def test_simple_columns_become_one_insert_of_unnested_arrays_with_the_requested_conflict_rule() -> None:
    columns = ("id", "n", "detail", "at")
    sql = _sql(unnest_insert(plain, columns, "update"))
    assert "unnest($1::VARCHAR(36)[])" in sql and "CAST(unnest($3::TEXT[]) AS JSON)" in sql
    assert "ON CONFLICT (id) DO UPDATE SET n = excluded.n, detail = excluded.detail, at = excluded.at" in sql
    assert "ON CONFLICT DO NOTHING" in _sql(unnest_insert(plain, columns, "ignore"))
    assert "ON CONFLICT" not in _sql(unnest_insert(plain, columns))
    rows = [{"id": "a", "n": 1, "detail": ["x", 2]}, {"id": "b", "n": 2, "detail": None}]
    assert unnest_params(plain, ("id", "n", "detail"), rows) == {
        "a_id": ["a", "b"],
        "a_n": [1, 2],
        "a_detail": ['["x", 2]', "null"],  # JSON as its text: a list would be one more array dimension
    }


def test_array_columns_and_computed_defaults_fall_back_to_executemany() -> None:
    assert unnest_insert(with_array, ("id", "tags")) is None  # unnest would flatten the arrays
    assert unnest_insert(with_callable, ("id",)) is None  # one value per row, not one per statement
    assert unnest_insert(with_callable, ("id", "token")) is not None
