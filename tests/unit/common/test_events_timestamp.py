"""`timestamp` and `from_timestamp` give exactly what protobuf's own conversions give."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.clock import SHANGHAI, from_timestamp
from services.common.events import timestamp


@pytest.mark.parametrize(
    "instant",
    [
        datetime(2026, 3, 2, 9, 30, 15, 123456, tzinfo=SHANGHAI),
        datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
        datetime(2001, 5, 6, 7, 8, 9, 1, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2026, 3, 2, 9, 30, 15, 42),  # naive: UTC
    ],
)
def test_a_timestamp_is_the_one_protobuf_would_make(instant: datetime) -> None:
    expected = Timestamp()
    expected.FromDatetime(instant)
    assert timestamp(instant) == expected


@settings(max_examples=500)
@given(
    st.integers(min_value=-62135596800, max_value=253402300799),
    st.integers(min_value=0, max_value=999_999_999),
)
def test_an_instant_read_back_is_the_one_protobuf_would_read(seconds: int, nanos: int) -> None:
    ts = Timestamp(seconds=seconds, nanos=nanos)
    instant = from_timestamp(ts)
    assert instant == ts.ToDatetime(tzinfo=UTC)
    assert instant.tzinfo is UTC
