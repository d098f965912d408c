"""Shared builders for notification's unit tests: facts, recipients, a template set."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from services.notification.model import Channels, Fact, Recipient
from services.notification.templates import StaticDirectory, Templates

AT = datetime(2026, 11, 26, 2, 30, tzinfo=UTC)  # 10:30 in Shanghai
BOTH = Channels(sms=True, email=True)
DIRECTORY = StaticDirectory(
    "大连市人民政府行政服务中心",
    "Dalian Municipal Administrative Service Center",
    {"PLAN": ("规划局", "Planning Bureau"), "FIRE": ("公安消防局", "Fire Department")},
)


def templates(override_dir: str = "") -> Templates:
    """The package's templates with a known directory of names."""
    return Templates(directory=DIRECTORY, override_dir=override_dir)


def fact(
    kind: str, data: Mapping[str, Any] | None = None, *, case_number: str = "210200-20261126-0001"
) -> Fact:
    """A fact about the demo case."""
    return Fact(event_id="ev-1", kind=kind, case_id="case-1", case_number=case_number, at=AT, data=data or {})


def applicant(**overrides: Any) -> Recipient:
    """The demo applicant: Chinese, with phone and e-mail."""
    values: dict[str, Any] = {
        "case_number": "210200-20261126-0001",
        "case_id": "case-1",
        "name": "王小明",
        "phone": "13812345678",
        "email": "wang@example.com",
        "language": "zh-CN",
        "title": "新建厂房项目",
        "matter_code": "KP-INVEST",
    }
    values.update(overrides)
    return Recipient(**values)


def ids() -> Any:
    """Deterministic delivery and notice ids."""
    counter = itertools.count(1)
    return lambda: f"00000000-0000-0000-0000-{next(counter):012d}"
