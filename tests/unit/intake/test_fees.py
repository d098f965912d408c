"""Fee rules: exact amounts, receipt numbers, refundable remainder, reconciliation and its report."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.common.errors import InvalidArgument
from services.intake import fees
from services.intake.fees import Line


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("80", "80.00"),
        ("80.5", "80.50"),
        ("0.01", "0.01"),
        (" 20.00 ", "20.00"),
        ("9999999999.99", "9999999999.99"),
    ],
)
def test_amounts_are_exact_decimals(text: str, value: str) -> None:
    assert fees.parse_amount(text) == Decimal(value)
    assert fees.money(fees.parse_amount(text)) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-5.00", "positive"),
        ("0", "more than zero"),
        ("0.00", "more than zero"),
        ("1.005", "two decimals"),
        ("abc", "not a decimal"),
        ("1e3", "not a decimal"),
        ("1,000.00", "not a decimal"),
        ("", "required"),
        (".5", "not a decimal"),
        ("NaN", "not a decimal"),
        ("10000000000.00", "too large"),
        ("5.", "not a decimal"),
    ],
)
def test_bad_amounts_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        fees.parse_amount(text)


def test_declared_may_be_zero_but_not_negative() -> None:
    assert fees.parse_declared("0") == Decimal("0.00")
    with pytest.raises(InvalidArgument):
        fees.parse_declared("-1")


def test_receipt_number_and_business_day_in_china_time() -> None:
    assert fees.receipt_number(center="210211101", year=2026, seq=7) == "210211101-2026-000007"
    # 2026-12-31 16:30 UTC is already 2027-01-01 in Dalian: the new year's series.
    assert fees.local_day(datetime(2026, 12, 31, 16, 30, tzinfo=UTC)) == (2027, "2027-01-01")
    assert fees.local_day(datetime(2026, 12, 31, 15, 59, tzinfo=UTC)) == (2026, "2026-12-31")


def test_refundable_after_refunds_and_voids() -> None:
    assert fees.refundable(Decimal("80.00"), []) == Decimal("80.00")
    assert fees.refundable(
        Decimal("80.00"), [("refund", Decimal("30.00")), ("refund", Decimal("0.10"))]
    ) == Decimal("49.90")
    assert fees.refundable(Decimal("80.00"), [("void", Decimal("80.00"))]) == Decimal("0.00")


def _line(kind: str, amount: str, receipt: str = "R-1", payer: str = "张三") -> Line:
    return Line(receipt, kind, "administrative", "C-1", payer, "cash", "fee1", Decimal(amount))


def test_reconciliation_balances_to_the_fen() -> None:
    lines = [
        _line("charge", "80.00"),
        _line("charge", "10.00"),
        _line("refund", "30.00"),
        _line("charge", "0.10"),
        _line("charge", "0.20"),
    ]
    result = fees.balance(lines, Decimal("60.30"))
    assert result.expected == Decimal("60.30") and result.balanced and result.difference == 0
    short = fees.balance(lines, Decimal("60.00"))
    assert not short.balanced and short.difference == Decimal("-0.30")
    assert fees.balance([], Decimal("0")).balanced


def test_report_is_printable_html_and_escapes_names() -> None:
    lines = [_line("charge", "80.00", payer="<script>x</script>"), _line("void", "80.00")]
    result = fees.balance(lines, Decimal("5.00"))
    page = fees.report_html(
        center="210211101", day="2026-11-26", collector="fee1", lines=lines, result=result, by="孙秀芝"
    )
    assert page.startswith("<!DOCTYPE html>") and "</html>" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "DISCREPANCY" in page and "5.00" in page and "-80.00" in page
