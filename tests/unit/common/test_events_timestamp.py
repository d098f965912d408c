"""`timestamp` gives exactly what protobuf's own conversion gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from services.common.clock import SHANGHAI
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
