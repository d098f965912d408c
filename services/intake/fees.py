"""Fee rules (R20), pure: exact amounts, receipt numbers, what is refundable, the day's reconciliation."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from services.common.errors import InvalidArgument

LOCAL = ZoneInfo("Asia/Shanghai")
FEE_KINDS = ("administrative", "other", "fine")
METHODS = ("cash", "card", "transfer")
CHARGE, REFUND, VOID = "charge", "refund", "void"
MAX_AMOUNT = Decimal("9999999999.99")  # Numeric(12, 2)
_AMOUNT = re.compile(r"^\d+(\.\d{1,2})?$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# How a Chinese refusal names the fields and the values of a fee.
FIELD_ZH = {"amount": "金额", "declared": "实收金额", "fee_kind": "费种", "method": "缴费方式", "day": "日期"}
CHOICE_ZH = {
    "administrative": "行政事业性收费",
    "other": "其他收费",
    "fine": "罚没款",
    "cash": "现金",
    "card": "刷卡",
    "transfer": "转账",
}
ENTRY_KIND_ZH = {CHARGE: "收费", REFUND: "退费", VOID: "作废"}


def _got(raw: str) -> str:
    """What was sent, as a Chinese refusal quotes it (nothing when nothing was sent)."""
    return f"（填写的是 {raw[:40]}）" if raw else ""


def parse_amount(text: str, *, field: str = "amount") -> Decimal:
    """A positive amount in yuan with at most two decimals; anything else is refused."""
    raw = text.strip()
    name = FIELD_ZH.get(field, field)
    if not raw:
        raise InvalidArgument(f"{field} is required", field=field, zh=f"请填写{name}")
    if raw.startswith("-"):
        raise InvalidArgument(
            f"{field} must be positive, got {raw[:40]!r}", field=field, zh=f"{name}不能为负数{_got(raw)}"
        )
    if not _AMOUNT.match(raw):
        if re.match(r"^\d+\.\d{3,}$", raw):
            raise InvalidArgument(
                f"{field} has more than two decimals: {raw[:40]!r}",
                field=field,
                zh=f"{name}最多保留两位小数{_got(raw)}",
            )
        raise InvalidArgument(
            f"{field} is not a decimal amount like 80.00: {raw[:40]!r}",
            field=field,
            zh=f"{name}应填写数字金额，如 80.00{_got(raw)}",
        )
    try:
        value = Decimal(raw)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        raise InvalidArgument(f"{field} is malformed", field=field, zh=f"{name}格式不正确") from None
    if value <= 0:
        raise InvalidArgument(f"{field} must be more than zero", field=field, zh=f"{name}须大于零")
    if value > MAX_AMOUNT:
        raise InvalidArgument(f"{field} is too large", field=field, zh=f"{name}超出可记录的最大金额")
    return value.quantize(Decimal("0.01"))


def parse_declared(text: str) -> Decimal:
    """The amount a collector declares in hand: like `parse_amount`, but zero is allowed."""
    if text.strip() in ("0", "0.0", "0.00"):
        return Decimal("0.00")
    return parse_amount(text, field="declared")


def money(value: Decimal) -> str:
    """The canonical text of an amount: two decimals."""
    return str(Decimal(value).quantize(Decimal("0.01")))


def receipt_number(*, center: str, year: int, seq: int) -> str:
    """The printed receipt number: center, year and a six-digit sequence (one series per center and year)."""
    return f"{center}-{year:04d}-{seq:06d}"


def local_day(at: datetime) -> tuple[int, str]:
    """The receipt year and the business day (YYYY-MM-DD) of an instant, in China Standard Time."""
    local = at.astimezone(LOCAL)
    return local.year, local.date().isoformat()


def check_day(day: str) -> str:
    """A YYYY-MM-DD day, or InvalidArgument."""
    if not _DAY.match(day):
        raise InvalidArgument("day must be YYYY-MM-DD", field="day", zh="日期应按 YYYY-MM-DD 格式填写")
    try:
        datetime.strptime(day, "%Y-%m-%d")
    except ValueError:
        raise InvalidArgument(f"{day!r} is not a date", field="day", zh=f"{day} 不是有效的日期") from None
    return day


def check_choice(value: str, allowed: Sequence[str], field: str) -> str:
    """`value` if it is one of `allowed`."""
    if value not in allowed:
        choices = "、".join(CHOICE_ZH.get(a, a) for a in allowed)
        raise InvalidArgument(
            f"{field} must be one of {', '.join(allowed)}; got {value[:40]!r}",
            field=field,
            zh=f"{FIELD_ZH.get(field, field)}应为以下之一：{choices}{_got(value)}",
        )
    return value


def refundable(charge: Decimal, later: Iterable[tuple[str, Decimal]]) -> Decimal:
    """What may still be refunded of a charge after its refunds and voids (a void leaves nothing)."""
    left = Decimal(charge)
    for kind, amount in later:
        if kind == VOID:
            return Decimal("0.00")
        left -= Decimal(amount)
    return max(left, Decimal("0.00")).quantize(Decimal("0.01"))


def signed(kind: str, amount: Decimal) -> Decimal:
    """An entry's effect on the cash in hand: charges add, refunds and voids subtract."""
    return Decimal(amount) if kind == CHARGE else -Decimal(amount)


@dataclass(frozen=True)
class Line:
    """One fee entry as the reconciliation report shows it."""

    receipt_number: str
    entry_kind: str
    fee_kind: str
    case_number: str
    payer: str
    method: str
    collector: str
    amount: Decimal


@dataclass(frozen=True)
class Balance:
    """Expected vs declared for one day."""

    expected: Decimal
    declared: Decimal

    @property
    def difference(self) -> Decimal:
        """Declared minus expected: negative is a shortfall, positive a surplus."""
        return (self.declared - self.expected).quantize(Decimal("0.01"))

    @property
    def balanced(self) -> bool:
        """Whether the cash counted equals the entries, to the fen."""
        return self.difference == 0


def balance(lines: Iterable[Line], declared: Decimal) -> Balance:
    """The expected amount (sum of the entries, signed) against the declared amount."""
    expected = sum((signed(x.entry_kind, x.amount) for x in lines), Decimal("0.00"))
    return Balance(
        expected=expected.quantize(Decimal("0.01")), declared=Decimal(declared).quantize(Decimal("0.01"))
    )


def report_html(
    *, center: str, day: str, collector: str, lines: Sequence[Line], result: Balance, by: str
) -> str:
    """A printable HTML reconciliation report (a complete document, escaped)."""
    e = html.escape
    rows = "\n".join(
        f"<tr><td>{e(x.receipt_number)}</td><td>{e(x.entry_kind)}</td><td>{e(x.fee_kind)}</td>"
        f"<td>{e(x.case_number)}</td><td>{e(x.payer)}</td><td>{e(x.method)}</td><td>{e(x.collector)}</td>"
        f'<td class="num">{money(signed(x.entry_kind, x.amount))}</td></tr>'
        for x in lines
    )
    status = "平衡 balanced" if result.balanced else "不平 DISCREPANCY"
    scope = e(collector) if collector else "全中心 whole center"
    return (
        '<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>收费日对账 {e(center)} {e(day)}</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #000;"
        "padding:2px 6px}.num{text-align:right}.bad{color:#b00;font-weight:bold}@media print{button{display:none}}"
        "</style></head><body>\n"
        f"<h1>收费日对账单 Daily fee reconciliation</h1>\n<p>中心 Center: {e(center)} · 日期 Day: {e(day)} · "
        f"收费员 Collector: {scope}</p>\n"
        "<table><thead><tr><th>收据号 Receipt</th><th>类别 Entry</th><th>费种 Fee</th><th>案件 Case</th>"
        "<th>缴款人 Payer</th><th>方式 Method</th><th>收费员 Collector</th><th>金额 Amount</th></tr></thead>"
        f"<tbody>\n{rows}\n</tbody></table>\n"
        f"<p>应收 Expected: <b>{money(result.expected)}</b> · 实收 Declared: <b>{money(result.declared)}</b> · "
        f"差额 Difference: <b>{money(result.difference)}</b></p>\n"
        f'<p class="{"ok" if result.balanced else "bad"}">{status}</p>\n'
        f"<p>对账人 Reconciled by: {e(by)}</p></body></html>\n"
    )
