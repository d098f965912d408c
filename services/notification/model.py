"""Notification's plain data and rules: facts, recipients, planned messages, retries, addresses."""

from __future__ import annotations

import os
import random
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

LANGUAGES = ("zh-CN", "en")
DEFAULT_LANGUAGE = "zh-CN"

# Delivery states.
PENDING, FAILED, SENT, DEAD, SKIPPED = "pending", "failed", "sent", "dead", "skipped"
DUE_STATES = (PENDING, FAILED)

# Channels: the two that leave the building, and the two that are rows in our own tables.
SMS, EMAIL, INBOX, NOTICE, NONE = "sms", "email", "inbox", "notice", "none"


class RandomIds:
    """Random (version 4) UUIDs as text, drawn from the operating system's random source a block at a
    time: one system call per `block` ids instead of one each (a case plans about ten)."""

    def __init__(self, block: int = 256) -> None:
        self._size = 16 * block
        self._pool = b""
        self._at = 0

    def __call__(self) -> str:
        if self._at >= len(self._pool):
            self._pool, self._at = os.urandom(self._size), 0
        raw = self._pool[self._at : self._at + 16]
        self._at += 16
        return str(uuid.UUID(bytes=raw, version=4))


new_id = RandomIds()

_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_EMAIL = re.compile(r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


@dataclass(frozen=True)
class Fact:
    """One event, as plain data: its kind, the case it is about, and its body's fields."""

    event_id: str
    kind: str
    case_id: str
    case_number: str
    at: datetime
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Recipient:
    """The applicant of a case as case_accepted described them."""

    case_number: str
    case_id: str
    name: str
    phone: str
    email: str
    language: str
    agent: str = ""
    title: str = ""
    matter_code: str = ""
    direct: bool = True
    origin_center: str = ""


@dataclass(frozen=True)
class TaskInfo:
    """Where a task sits: its department and window."""

    task_id: str
    case_number: str
    department: str
    window: str


@dataclass(frozen=True)
class Channels:
    """Which outward channels this process is configured for."""

    sms: bool
    email: bool


@dataclass(frozen=True)
class Outgoing:
    """One message to one recipient on one channel, planned from a fact."""

    kind: str
    channel: str
    recipient: str
    address: str
    language: str
    context: dict[str, Any]
    notice_kind: str = ""
    notice_id: str = ""
    skip_reason: str = ""


@dataclass(frozen=True)
class Outcome:
    """What one send attempt came to."""

    status: str  # sent | transient | permanent
    detail: str = ""

    @classmethod
    def sent(cls, detail: str = "") -> Outcome:
        """Delivered."""
        return cls("sent", detail)

    @classmethod
    def transient(cls, detail: str) -> Outcome:
        """Failed for now; try again later."""
        return cls("transient", detail)

    @classmethod
    def permanent(cls, detail: str) -> Outcome:
        """Will never succeed as it is; a person must look."""
        return cls("permanent", detail)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, and when to give up."""

    base_s: float = 5.0
    max_s: float = 1800.0
    max_attempts: int = 24
    rng: Callable[[], float] = field(default=random.random, compare=False)

    def delay(self, attempts: int) -> timedelta:
        """Wait after the `attempts`-th failure: base·2^(n-1) capped, then between half and all of it."""
        nominal = min(self.max_s, self.base_s * 2 ** max(0, attempts - 1))
        # "Equal jitter": spreads a burst of retries after an outage without ever retrying at once.
        return timedelta(seconds=nominal * (0.5 + 0.5 * self.rng()))

    def next_state(self, *, outcome: Outcome, attempts: int, now: datetime) -> tuple[str, datetime, str]:
        """(state, next_attempt_at, last_error) after `attempts` attempts ended in `outcome`."""
        if outcome.status == "sent":
            return SENT, now, ""
        if outcome.status == "permanent":
            return DEAD, now, outcome.detail
        if attempts >= self.max_attempts:
            return DEAD, now, f"gave up after {attempts} attempts: {outcome.detail}"
        return FAILED, now + self.delay(attempts), outcome.detail


def language_of(value: str) -> str:
    """A supported template language for what the applicant chose (zh-CN when unknown)."""
    value = (value or "").strip()
    if value.lower().startswith("en"):
        return "en"
    return DEFAULT_LANGUAGE


def normalize_phone(raw: str) -> str | None:
    """A mainland mobile number in its 11-digit form, or None when it is not one."""
    digits = re.sub(r"[\s\-()]", "", raw or "")
    for prefix in ("+86", "0086", "86"):
        if digits.startswith(prefix) and len(digits) == len(prefix) + 11:
            digits = digits[len(prefix) :]
            break
    return digits if _MOBILE.match(digits) else None


def valid_email(raw: str) -> bool:
    """True for something shaped like a deliverable e-mail address."""
    return bool(_EMAIL.match((raw or "").strip())) and len(raw) <= 254


def mask_address(channel: str, address: str) -> str:
    """The address as staff and logs may see it: 138****5678, z***@example.com."""
    if channel == SMS:
        digits = re.sub(r"\D", "", address)
        if len(digits) >= 7:
            return f"{digits[:3]}****{digits[-4:]}"
        return "*" * len(digits) if digits else "(none)"
    if channel == EMAIL:
        local, at, domain = address.partition("@")
        if not at:
            return f"{address[:1]}***" if address else "(none)"
        return f"{local[:1]}***@{domain}"
    return address
