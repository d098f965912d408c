"""The fee collector's page (R20): the day's ledger, a fee with its receipt, refunds, voids, reconciliation.

The ledger belongs to the node's own center (intake keeps it there), so only grants held at this node's
center reach it. Who acts comes from the session; a fee collector reconciles only their own takings, and
prints only their own reconciliation reports (the printable documents intake recorded with each one).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Awaitable
from datetime import date
from decimal import Decimal
from typing import Any

from aiohttp import web

from gateway.audit import note
from gateway.auth import Principal, forbid_unless, principal_of, require
from gateway.i18n import field_refusal, refusal
from gateway.keys import clients, now
from gateway.labels import SHANGHAI
from gateway.views.common import form_data, redirect, render, text
from onestop.intake.v1 import convenience_pb2 as pb
from onestop.routing.v1 import routing_pb2

routes = web.RouteTableDef()
FEE_COLLECTOR = "fee_collector"
FEE_ROLES = (FEE_COLLECTOR, "center_director")  # the director oversees the ledger and reconciles the center
FEE_KINDS = ("administrative", "other", "fine")
METHODS = ("cash", "card", "transfer")
RECEIPT = re.compile(r"^[0-9]{6,12}-[0-9]{4}-[0-9]{1,9}$")
AMOUNT = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,2})?$")
RECONCILIATION_ID = re.compile(r"^[0-9]{1,18}$")
STYLE = re.compile(r"<style>(.*?)</style>", re.S)


def _me(request: web.Request) -> Principal:
    who = principal_of(request)
    assert who is not None  # guaranteed by @require
    return who


def _day(value: str, request: web.Request) -> str:
    """A YYYY-MM-DD day (today in Shanghai when empty); 400 otherwise."""
    if not value:
        return now(request).astimezone(SHANGHAI).date().isoformat()
    try:
        if len(value) == 10:
            return date.fromisoformat(value).isoformat()
    except ValueError:
        pass
    raise refusal(web.HTTPBadRequest, "日期格式应为 2025-11-20", "the day must look like 2025-11-20")


def _amount(data: Any, name: str) -> str:
    """A positive amount in yuan with at most two decimals, as typed; 400 with the reason otherwise."""
    value = text(data, name, max_len=16, required=True).replace(",", "")
    if not AMOUNT.match(value):
        raise field_refusal(
            name,
            "{field}应为以元计的金额,例如 80 或 80.50",
            "{field} must be an amount in yuan such as 80 or 80.50",
        )
    return value


def _receipt(data: Any) -> str:
    value = text(data, "receipt_number", max_len=40, required=True)
    if not RECEIPT.match(value):
        raise refusal(
            web.HTTPBadRequest,
            "票据号格式应为 210211101-2025-000012",
            "receipt_number must look like 210211101-2025-000012",
        )
    return value


def _choice(data: Any, name: str, allowed: tuple[str, ...]) -> str:
    value = text(data, name, max_len=32, required=True)
    if value not in allowed:
        raise field_refusal(
            name, f"{{field}}只能是 {'、'.join(allowed)}", f"{{field}} must be one of {', '.join(allowed)}"
        )
    return value


async def _collectors(request: web.Request, center: str) -> list[str]:
    """Usernames of the center's fee collectors (from routing's organisation)."""
    reply = await clients(request).routing.ListStaff(
        routing_pb2.ListStaffRequest(center=center, role=FEE_COLLECTOR), timeout=5
    )
    return sorted(
        s.username
        for s in reply.staff
        if any(g.role == FEE_COLLECTOR and g.center == center for g in s.roles)
    )


def _totals(entries: list[pb.FeeEntry]) -> dict[str, str]:
    """Charged, refunded or voided, and net, as exact decimals (the gateway never rounds money)."""
    charged = sum((Decimal(e.amount) for e in entries if e.entry_kind == "charge"), Decimal("0.00"))
    back = sum((Decimal(e.amount) for e in entries if e.entry_kind != "charge"), Decimal("0.00"))
    return {"charged": f"{charged:.2f}", "returned": f"{back:.2f}", "net": f"{charged - back:.2f}"}


@routes.get("/staff/fees", name="fees")
@require(*FEE_ROLES, here=True)
async def fees_page(request: web.Request) -> web.Response:
    """The day's entries of the center (one's own highlighted), the forms, and a receipt just issued."""
    who = _me(request)
    day = _day(request.query.get("day", ""), request)
    reply = await clients(request).convenience.ListFees(pb.ListFeesRequest(day=day), timeout=5)
    entries = list(reply.entries)
    shown = request.query.get("receipt", "")
    receipt = next((e for e in entries if e.receipt_number == shown), None)
    collectors = await _collectors(request, who.center) if who.role != FEE_COLLECTOR else [who.username]
    own = who.username if who.role == FEE_COLLECTOR else ""  # a collector sees only their own reports
    done = await clients(request).convenience.ListReconciliations(
        pb.ListReconciliationsRequest(day=day, collector=own), timeout=5
    )
    return render(
        request,
        "staff/fees.html",
        {
            "day": day,
            "entries": entries,
            "receipt": receipt,
            "totals": _totals(entries),
            "mine": _totals([e for e in entries if e.collector.username == who.username]),
            "collectors": collectors,
            "may_collect": who.role == FEE_COLLECTOR,
            "fee_kinds": FEE_KINDS,
            "methods": METHODS,
            "reconciliations": list(done.reconciliations),
        },
    )


def _back(entry: pb.FeeEntry) -> web.HTTPSeeOther:
    return redirect(f"/staff/fees?day={entry.day}&receipt={entry.receipt_number}#receipt")


async def _entered(request: web.Request, call: Awaitable[pb.FeeEntry]) -> web.HTTPSeeOther:
    """The ledger entry a call made, noted for the audit record; the redirect to its receipt."""
    entry = await call
    note(request, receipt=entry.receipt_number)
    return _back(entry)


@routes.post("/staff/fees/collect", name="collect_fee")
@require(FEE_COLLECTOR, here=True)
async def collect(request: web.Request) -> web.Response:
    """Take a fee for a case or a matter; the next gapless receipt number is issued by intake."""
    who = _me(request)
    data = await form_data(request)
    case_number = text(data, "case_number", max_len=40)
    matter_code = text(data, "matter_code", max_len=32)
    if not case_number and not matter_code:
        raise refusal(
            web.HTTPBadRequest,
            "收费须对应一个办件(办件编号)或一个事项(事项编码)",
            "a fee is for a case (case number) or a matter (matter code)",
        )
    req = pb.CollectFeeRequest(
        case_number=case_number,
        matter_code="" if case_number else matter_code,
        fee_code=text(data, "fee_code", max_len=32),
        fee_kind=_choice(data, "fee_kind", FEE_KINDS),
        amount=_amount(data, "amount"),
        payer=text(data, "payer", max_len=100, required=True),
        method=_choice(data, "method", METHODS),
        collector=who.actor(),
    )
    note(request, case_number=case_number, matter_code=req.matter_code, amount=req.amount)
    raise await _entered(request, clients(request).convenience.CollectFee(req, timeout=10))


@routes.post("/staff/fees/refund", name="refund_fee")
@require(*FEE_ROLES, here=True)
async def refund(request: web.Request) -> web.Response:
    """Refund part or all of a charge: a new entry referencing the original receipt."""
    data = await form_data(request)
    req = pb.RefundFeeRequest(
        receipt_number=_receipt(data),
        amount=_amount(data, "amount"),
        reason=text(data, "reason", max_len=500, required=True),
        by=_me(request).actor(),
    )
    note(request, original=req.receipt_number, amount=req.amount)
    raise await _entered(request, clients(request).convenience.RefundFee(req, timeout=10))


@routes.post("/staff/fees/void", name="void_fee")
@require(*FEE_ROLES, here=True)
async def void(request: web.Request) -> web.Response:
    """Void a charge issued in error: a new entry cancelling it (nothing is edited or deleted)."""
    data = await form_data(request)
    req = pb.VoidFeeRequest(
        receipt_number=_receipt(data),
        reason=text(data, "reason", max_len=500, required=True),
        by=_me(request).actor(),
    )
    note(request, original=req.receipt_number)
    raise await _entered(request, clients(request).convenience.VoidFee(req, timeout=10))


@routes.post("/staff/fees/reconcile", name="reconcile_fees")
@require(*FEE_ROLES, here=True)
async def reconcile(request: web.Request) -> web.Response:
    """Reconcile a day: expected against the amount counted in hand; a discrepancy alarms the office."""
    who = _me(request)
    data = await form_data(request)
    day = _day(text(data, "day", max_len=10), request)
    if who.role == FEE_COLLECTOR:
        collector = who.username  # a collector answers for their own takings only
        forbid_unless(
            text(data, "collector", max_len=64) in ("", who.username),
            "A fee collector reconciles only their own takings",
            zh="收费员只能对账本人的收费",
        )
    else:
        collector = text(data, "collector", max_len=64)
        if collector and collector not in await _collectors(request, who.center):
            raise refusal(
                web.HTTPBadRequest,
                "请选择本中心的收费员,或不选(按全中心统计)",
                "choose a fee collector of this center, or none for the center",
            )
    declared = _amount(data, "declared")
    note(request, day=day, collector=collector, declared=declared)
    c = clients(request).convenience
    result = await c.Reconcile(
        pb.ReconcileRequest(day=day, collector=collector, declared=declared, by=who.actor()), timeout=10
    )
    note(request, balanced=result.balanced, difference=result.difference)
    listed = await c.ListFees(pb.ListFeesRequest(day=day, collector=collector), timeout=5)
    return render(
        request, "staff/fees_reconciled.html", {"r": result, "entries": list(listed.entries), "day": day}
    )


def report_policy(document: str) -> str:
    """The CSP of one printable report: nothing loads, and only its own inline styles apply (by hash)."""
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(style.encode()).digest()).decode() + "'"
        for style in STYLE.findall(document)
    ]
    styles = " ".join(hashes) or "'none'"
    return (
        f"default-src 'none'; style-src {styles}; frame-ancestors 'none'; form-action 'none'; base-uri 'none'"
    )


@routes.get("/staff/fees/report", name="fee_report")
@require(*FEE_ROLES, here=True)
async def report(request: web.Request) -> web.Response:
    """The printable report of a day's reconciliation, as intake recorded it; a collector's own only.

    `id` names one reconciliation of the day; otherwise the latest of the scope: a fee collector's own,
    or for the director the whole center's (or the named `collector`'s).
    """
    who = _me(request)
    day = _day(request.query.get("day", ""), request)
    wanted = request.query.get("id", "")
    if wanted and not RECONCILIATION_ID.match(wanted):
        raise refusal(
            web.HTTPBadRequest,
            "对账编号应为数字,例如 12",
            "id must be the number of a reconciliation, such as 12",
        )
    collector = request.query.get("collector", "")
    if who.role == FEE_COLLECTOR:
        forbid_unless(
            collector in ("", who.username),
            "A fee collector prints only their own reconciliation reports",
            zh="收费员只能打印本人的对账单",
        )
        collector = who.username
    elif collector and collector not in await _collectors(request, who.center):
        raise refusal(
            web.HTTPBadRequest,
            "请选择本中心的收费员,或不选(按全中心统计)",
            "choose a fee collector of this center, or none for the center",
        )
    note(request, day=day, collector=collector, reconciliation=wanted)
    reply = await clients(request).convenience.ListReconciliations(
        pb.ListReconciliationsRequest(
            day=day, collector="" if wanted else collector, id=int(wanted or 0), with_reports=True
        ),
        timeout=10,
    )
    found = list(reply.reconciliations)
    if wanted and who.role == FEE_COLLECTOR:
        forbid_unless(
            all(r.collector == who.username for r in found),
            "A fee collector prints only their own reconciliation reports",
            zh="收费员只能打印本人的对账单",
        )
    elif not wanted:
        found = [r for r in found if r.collector == collector]  # the director's default: the whole center
    if not found:
        scope = f"reconciliation {wanted}" if wanted else f"reconciliation of {collector or 'the center'}"
        scope_zh = f"对账单 {wanted}" if wanted else f"{collector or '全中心'}的对账单"
        raise refusal(
            web.HTTPNotFound,
            f"{day} 没有{scope_zh}:请先对账",
            f"No {scope} is recorded for {day}: reconcile the day first",
        )
    chosen = found[-1]
    note(request, reconciliation=chosen.id, balanced=chosen.balanced)
    return web.Response(
        text=chosen.report_html,
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": report_policy(chosen.report_html)},
    )
