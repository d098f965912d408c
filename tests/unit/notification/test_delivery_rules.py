"""Retry schedule, address checks, masking and how gateway answers are read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.common.settings import SettingsError
from services.notification.channels import classify_http, classify_smtp
from services.notification.config import load_config
from services.notification.model import (
    DEAD,
    EMAIL,
    FAILED,
    SENT,
    SMS,
    Outcome,
    RetryPolicy,
    mask_address,
    normalize_phone,
    valid_email,
)

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def test_backoff_doubles_from_the_base_and_stops_at_the_cap() -> None:
    policy = RetryPolicy(base_s=5, max_s=60, max_attempts=10, rng=lambda: 1.0)
    assert [policy.delay(n).total_seconds() for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]


def test_jitter_keeps_each_delay_between_half_and_all_of_the_nominal_one() -> None:
    low = RetryPolicy(base_s=8, rng=lambda: 0.0)
    high = RetryPolicy(base_s=8, rng=lambda: 0.999)
    assert low.delay(3) == timedelta(seconds=16)
    assert timedelta(seconds=31.9) < high.delay(3) <= timedelta(seconds=32)


def test_transient_failure_is_retried_later_and_gives_up_after_the_last_attempt() -> None:
    policy = RetryPolicy(base_s=1, max_attempts=3, rng=lambda: 1.0)
    state, at, error = policy.next_state(outcome=Outcome.transient("HTTP 503"), attempts=2, now=NOW)
    assert (state, at, error) == (FAILED, NOW + timedelta(seconds=2), "HTTP 503")
    state, _, error = policy.next_state(outcome=Outcome.transient("HTTP 503"), attempts=3, now=NOW)
    assert state == DEAD and error == "gave up after 3 attempts: HTTP 503"


def test_permanent_failure_is_dead_at_once_and_success_is_sent() -> None:
    policy = RetryPolicy()
    assert policy.next_state(outcome=Outcome.permanent("SMTP 550"), attempts=1, now=NOW)[0] == DEAD
    assert policy.next_state(outcome=Outcome.sent(), attempts=1, now=NOW)[0] == SENT


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13812345678", "13812345678"),
        ("+86 138-1234-5678", "13812345678"),
        ("008613812345678", "13812345678"),
        ("12345", None),
        ("0411-8888888", None),
        ("", None),
    ],
)
def test_only_mainland_mobile_numbers_get_sms(raw: str, expected: str | None) -> None:
    assert normalize_phone(raw) == expected


def test_email_shape_check() -> None:
    assert valid_email("wang@example.com")
    assert not valid_email("not-an-address")
    assert not valid_email("a@b")


def test_addresses_are_masked_for_staff_and_logs() -> None:
    assert mask_address(SMS, "13812345678") == "138****5678"
    assert mask_address(EMAIL, "wang.xiaoming@example.com") == "w***@example.com"
    assert mask_address(SMS, "123") == "***"
    assert mask_address("inbox", "window:W-PLAN-1") == "window:W-PLAN-1"


def test_gateway_answers_are_sorted_into_sent_retry_and_final() -> None:
    assert classify_http(200, "").status == "sent"
    assert classify_http(503, "down").status == "transient"
    assert classify_http(429, "slow down").status == "transient"
    refused = classify_http(400, "number 13812345678 unreachable")
    assert refused.status == "permanent" and "138****5678" in refused.detail
    assert classify_smtp(550, "no such user").status == "permanent"
    assert classify_smtp(451, "try later").status == "transient"


def test_config_requires_a_sender_with_an_smtp_host_and_hides_the_password() -> None:
    with pytest.raises(SettingsError, match="ONESTOP_SMTP_FROM"):
        load_config({"ONESTOP_SMTP_HOST": "mail.example.com"})
    cfg = load_config(
        {
            "ONESTOP_SMTP_HOST": "mail",
            "ONESTOP_SMTP_FROM": "noreply@center.gov.cn",
            "ONESTOP_SMTP_USER": "u",
            "ONESTOP_SMTP_PASSWORD": "secret",
        },
        center="210200",
    )
    assert cfg.redacted()["smtp_password"] == "***"
    assert cfg.center_name_zh == "行政服务中心(210200)"
    with pytest.raises(SettingsError, match="ONESTOP_SMS_URL"):
        load_config({"ONESTOP_SMS_URL": "ftp://x"})
