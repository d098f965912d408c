"""Fee collection (R20): charges, refunds and voids with gapless receipts, and the day's reconciliation."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from onestop.events.v1 import events_pb2
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.common.events import new_event
from services.common.logging import get_logger
from services.common.outbox import UnitOfWork
from services.intake import convenience_repository as repo
from services.intake import fees
from services.intake.convenience import ConvenienceContext, load_case
from services.intake.convenience_staff import FEE_COLLECTOR, require
from services.intake.convert import to_json

REFUNDERS = (FEE_COLLECTOR, "center_director")
# The directive gives fees to the fee collectors (收费人员); liaison officers assign agents and track
# matters, and the director oversees the whole center's ledger.
RECONCILERS = (FEE_COLLECTOR, "center_director")
SUPERVISORS = ("center_director", "supervisor")  # the management office a discrepancy is flagged to
log = get_logger(__name__)


async def _entry(uow: UnitOfWork, ctx: ConvenienceContext, **values: Any) -> dict[str, Any]:
    """Number and insert one entry; the receipt counter is bumped in this same transaction."""
    now = ctx.now()
    year, day = fees.local_day(now)
    seq = await repo.next_receipt(uow.conn, center=ctx.center, year=year)
    row = {
        "entry_id": str(uuid.uuid4()),
        "receipt_number": fees.receipt_number(center=ctx.center, year=year, seq=seq),
        "center": ctx.center,
        "year": year,
        "seq": seq,
        "at": now,
        "day": day,
        "case_id": None,
        "case_number": "",
        "matter_code": "",
        "fee_code": "",
        "original_entry_id": None,
        "reason": "",
        **values,
    }
    await repo.insert(uow.conn, repo.t.fee_entries, row)
    return row


async def collect(uow: UnitOfWork, ctx: ConvenienceContext, req: Any) -> dict[str, Any]:
    """A fee collector takes a fee for a case or a matter and issues the next receipt."""
    amount = fees.parse_amount(req.amount)
    fee_kind = fees.check_choice(req.fee_kind, fees.FEE_KINDS, "fee_kind")
    method = fees.check_choice(req.method, fees.METHODS, "method")
    if not req.payer.strip():
        raise InvalidArgument("payer is required", field="payer", zh="请填写缴款人")
    await require(ctx.staff, req.collector, center=ctx.center, role=FEE_COLLECTOR)
    case_id, case_number, matter_code = None, "", req.matter_code
    if req.case_id or req.case_number:
        case = await load_case(uow, req.case_id, req.case_number)
        case_id, case_number, matter_code = case["case_id"], case["case_number"] or "", case["matter_code"]
    elif not req.matter_code:
        raise InvalidArgument(
            "a fee is for a case (case_id/case_number) or a matter (matter_code)",
            field="matter_code",
            zh="收费须对应一件报件（报件编号）或一个事项（事项编码）",
        )
    else:
        await ctx.intake.matters.get(req.matter_code)
    return await _entry(
        uow,
        ctx,
        entry_kind=fees.CHARGE,
        fee_kind=fee_kind,
        case_id=case_id,
        case_number=case_number,
        matter_code=matter_code,
        fee_code=req.fee_code,
        amount=amount,
        payer=req.payer.strip(),
        method=method,
        collector=to_json(req.collector),
        collector_username=req.collector.username,
    )


async def _original(uow: UnitOfWork, ctx: ConvenienceContext, receipt: str, by: Any) -> dict[str, Any]:
    if not receipt:
        raise InvalidArgument("receipt_number is required", field="receipt_number", zh="请填写票据号")
    if by.role not in REFUNDERS:
        raise PermissionDenied(
            "only a fee collector or the center director refunds or voids",
            zh="只有收费员或中心主任可以办理退费或作废",
        )
    await require(ctx.staff, by, center=ctx.center, role=by.role)
    original = await repo.fee_by_receipt(uow.conn, receipt, lock=True)
    if original is None or original["center"] != ctx.center:
        raise NotFound(f"no receipt {receipt}", zh=f"本中心没有票据号为 {receipt} 的票据")
    if original["entry_kind"] != fees.CHARGE:
        raise FailedPrecondition(
            f"receipt {receipt} is a {original['entry_kind']}; only a charge is refunded",
            zh=f"票据 {receipt} 是{fees.ENTRY_KIND_ZH.get(original['entry_kind'], original['entry_kind'])}票据，"
            "只有收费票据可以退费或作废",
        )
    return original


async def _remaining(uow: UnitOfWork, original: dict[str, Any]) -> Decimal:
    later = await repo.later_entries(uow.conn, original["entry_id"])
    return fees.refundable(original["amount"], [(x["entry_kind"], x["amount"]) for x in later])


async def refund(uow: UnitOfWork, ctx: ConvenienceContext, req: Any) -> dict[str, Any]:
    """Refund part or all of a charge: a new entry; more than what remains refundable is refused."""
    amount = fees.parse_amount(req.amount)
    if not req.reason.strip():
        raise InvalidArgument("a refund needs a reason", field="reason", zh="退费须写明理由")
    original = await _original(uow, ctx, req.receipt_number, req.by)
    left = await _remaining(uow, original)
    if amount > left:
        raise FailedPrecondition(
            f"refund of {fees.money(amount)} exceeds what remains refundable of receipt "
            f"{original['receipt_number']}: {fees.money(left)}",
            field="amount",
            zh=f"退费金额 {fees.money(amount)} 元超过票据 {original['receipt_number']} "
            f"尚可退还的 {fees.money(left)} 元",
        )
    return await _follow_up(uow, ctx, original, fees.REFUND, amount, req.reason.strip(), req.by)


async def void(uow: UnitOfWork, ctx: ConvenienceContext, req: Any) -> dict[str, Any]:
    """Void a charge issued in error (nothing refunded yet): a new entry cancelling its whole amount."""
    if not req.reason.strip():
        raise InvalidArgument("a void needs a reason", field="reason", zh="作废须写明理由")
    original = await _original(uow, ctx, req.receipt_number, req.by)
    later = await repo.later_entries(uow.conn, original["entry_id"])
    if later:
        kinds = ", ".join(sorted({x["entry_kind"] for x in later}))
        kinds_zh = "、".join(fees.ENTRY_KIND_ZH.get(k, k) for k in sorted({x["entry_kind"] for x in later}))
        raise FailedPrecondition(
            f"receipt {original['receipt_number']} already has a {kinds}; it cannot be voided",
            zh=f"票据 {original['receipt_number']} 已有{kinds_zh}记录，不能作废",
        )
    return await _follow_up(uow, ctx, original, fees.VOID, original["amount"], req.reason.strip(), req.by)


async def _follow_up(
    uow: UnitOfWork,
    ctx: ConvenienceContext,
    original: dict[str, Any],
    kind: str,
    amount: Decimal,
    reason: str,
    by: Any,
) -> dict[str, Any]:
    return await _entry(
        uow,
        ctx,
        entry_kind=kind,
        fee_kind=original["fee_kind"],
        case_id=original["case_id"],
        case_number=original["case_number"],
        matter_code=original["matter_code"],
        fee_code=original["fee_code"],
        amount=amount,
        payer=original["payer"],
        method=original["method"],
        collector=to_json(by),
        collector_username=by.username,
        original_entry_id=original["entry_id"],
        reason=reason,
    )


async def refundable_of(uow: UnitOfWork, entry: dict[str, Any]) -> Decimal:
    """What may still be refunded of an entry (zero for a refund or a void)."""
    if entry["entry_kind"] != fees.CHARGE:
        return Decimal("0.00")
    return await _remaining(uow, entry)


async def reconcile(uow: UnitOfWork, ctx: ConvenienceContext, req: Any) -> dict[str, Any]:
    """Expected (the day's entries) against the declared amount, for one collector or the whole center."""
    day = fees.check_day(req.day)
    declared = fees.parse_declared(req.declared)
    if req.by.role not in RECONCILERS:
        raise PermissionDenied(
            "a fee collector or the center director reconciles", zh="只有收费员或中心主任可以办理收费日对账"
        )
    await require(ctx.staff, req.by, center=ctx.center, role=req.by.role)
    rows = await repo.fees(uow.conn, center=ctx.center, day=day, collector=req.collector)
    lines = [
        fees.Line(
            r["receipt_number"],
            r["entry_kind"],
            r["fee_kind"],
            r["case_number"],
            r["payer"],
            r["method"],
            r["collector_username"],
            r["amount"],
        )
        for r in rows
    ]
    result = fees.balance(lines, declared)
    by_name = req.by.display_name or req.by.username
    row: dict[str, Any] = {
        "center": ctx.center,
        "day": day,
        "collector": req.collector,
        "expected": result.expected,
        "declared": result.declared,
        "difference": result.difference,
        "balanced": result.balanced,
        "flagged": not result.balanced,
        "entries": len(lines),
        "by": to_json(req.by),
        "at": ctx.now(),
        "report_html": fees.report_html(
            center=ctx.center, day=day, collector=req.collector, lines=lines, result=result, by=by_name
        ),
    }
    row["id"] = await repo.add_reconciliation(uow.conn, row)
    if row["flagged"]:
        uow.emit(await _failed_event(ctx, row, req.by))
    return row


async def reconciliations(uow: UnitOfWork, ctx: ConvenienceContext, req: Any) -> list[dict[str, Any]]:
    """The day's recorded reconciliations of this center: one collector's, or every one (and the center's)."""
    return await repo.reconciliations(
        uow.conn,
        center=ctx.center,
        day=fees.check_day(req.day),
        collector=req.collector,
        reconciliation_id=req.id,
        with_reports=req.with_reports,
    )


async def _failed_event(ctx: ConvenienceContext, row: dict[str, Any], by: Any) -> events_pb2.Envelope:
    """fee_reconciliation_failed, naming the supervisors notification tells (R20: flagged to management)."""
    told: list[str] = []
    for role in SUPERVISORS:
        told += [g.username for g in await ctx.staff.grants(ctx.center, role) if g.username not in told]
    body = events_pb2.FeeReconciliationFailed(
        reconciliation_id=row["id"],
        day=row["day"],
        collector=row["collector"],
        expected=fees.money(row["expected"]),
        declared=fees.money(row["declared"]),
        difference=fees.money(row["difference"]),
        entries=row["entries"],
        by=by,
        supervisors=told,
    )
    log.warning(
        "fee reconciliation does not balance",
        center=ctx.center,
        day=row["day"],
        collector=row["collector"],
        difference=body.difference,
        told=told,
    )
    return new_event(center=ctx.center, producer="intake", at=row["at"], body=body)
