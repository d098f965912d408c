"""ConvenienceService over gRPC: agency, delivery, fees, reconciliation and the R20 staffing warning."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from google.protobuf import json_format

from onestop.common.v1 import common_pb2
from onestop.intake.v1 import convenience_pb2 as pb
from services.common.clock import aware
from services.common.events import timestamp
from services.common.outbox import UnitOfWork, transact
from services.common.runtime import Runtime
from services.intake import convenience, delivery, fees, fees_handlers, repository
from services.intake import convenience_repository as repo
from services.intake.convenience import ConvenienceContext
from services.intake.convenience_staff import R20_MINIMUM, RoutingStaff, staffing_warnings
from services.intake.convert import case_message


def _actor(data: Any) -> common_pb2.Actor:
    return json_format.ParseDict(data or {}, common_pb2.Actor(), ignore_unknown_fields=True)


def _ts(instant: datetime | None) -> Any:
    value = aware(instant)
    return timestamp(value) if value is not None else None


def agency_message(
    row: dict[str, Any], case: dict[str, Any] | None = None, assignment: dict[str, Any] | None = None
) -> pb.AgencyRecord:
    """The protobuf view of an agency record (with the case's number and its assigned agent)."""
    msg = pb.AgencyRecord(
        agency_id=row.get("agency_id", ""),
        service_point=row.get("service_point", ""),
        agent=_actor(row.get("agent")),
        resident_name=row.get("resident_name", ""),
        matter_code=row.get("matter_code", "") or (case or {}).get("matter_code", ""),
        state=row.get("state", ""),
        received_by=_actor(row.get("received_by")),
        taken_at=_ts(row.get("taken_at")),
        handed_over_at=_ts(row.get("handed_over_at")),
        case_id=row.get("case_id") or (case or {}).get("case_id", ""),
        case_number=(case or {}).get("case_number") or "",
    )
    if assignment:
        msg.state = "assigned"
        msg.full_process_agent.CopyFrom(_actor(assignment["agent"]))
        msg.assigned_by.CopyFrom(_actor(assignment["assigned_by"]))
        msg.assigned_at.CopyFrom(_ts(assignment["assigned_at"]))
    return msg


def delivery_message(row: dict[str, Any]) -> pb.Delivery:
    """The protobuf view of a delivery."""
    return pb.Delivery(
        case_id=row["case_id"],
        case_number=row["case_number"],
        method=row["method"],
        receiver_name=row["receiver_name"],
        confirmed_at=_ts(row["confirmed_at"]),
        by=_actor(row["by"]),
        recorded_at=_ts(row["recorded_at"]),
        note=row["note"],
    )


def fee_message(row: dict[str, Any], *, original: str = "", refundable: Any = None) -> pb.FeeEntry:
    """The protobuf view of a fee entry."""
    return pb.FeeEntry(
        entry_id=row["entry_id"],
        receipt_number=row["receipt_number"],
        entry_kind=row["entry_kind"],
        fee_kind=row["fee_kind"],
        case_id=row["case_id"] or "",
        case_number=row["case_number"],
        matter_code=row["matter_code"],
        fee_code=row["fee_code"],
        amount=fees.money(row["amount"]),
        payer=row["payer"],
        method=row["method"],
        collector=_actor(row["collector"]),
        at=_ts(row["at"]),
        day=row["day"],
        original_receipt=original,
        reason=row["reason"],
        refundable=fees.money(refundable) if refundable is not None else "",
    )


def reconciliation_message(row: dict[str, Any]) -> pb.Reconciliation:
    """The protobuf view of a reconciliation."""
    return pb.Reconciliation(
        id=row["id"],
        center=row["center"],
        day=row["day"],
        collector=row["collector"],
        expected=fees.money(row["expected"]),
        declared=fees.money(row["declared"]),
        difference=fees.money(row["difference"]),
        balanced=row["balanced"],
        flagged=row["flagged"],
        entries=row["entries"],
        by=_actor(row["by"]),
        at=_ts(row["at"]),
        report_html=row.get("report_html", ""),
    )


class ConvenienceApi:
    """Implements onestop.intake.v1.ConvenienceService."""

    def __init__(self, *, runtime: Runtime, ctx: ConvenienceContext) -> None:
        self.rt = runtime
        self.ctx = ctx

    async def _in_uow(self, fn: Callable[[UnitOfWork], Awaitable[Any]]) -> Any:
        return await transact(self.rt.uow, fn)

    async def TakeMatter(self, req: pb.TakeMatterRequest, _: Any) -> pb.AgencyRecord:
        return agency_message(await self._in_uow(lambda uow: convenience.take_matter(uow, self.ctx, req)))

    async def HandOver(self, req: pb.HandOverRequest, _: Any) -> pb.HandOverResponse:
        agency, case, shortfalls = await self._in_uow(lambda uow: convenience.hand_over(uow, self.ctx, req))
        reply = pb.HandOverResponse(
            agency=agency_message(agency, case), case=case_message(case), query_code=case["query_code"]
        )
        for s in shortfalls:
            reply.supplement.add(material_code=s.material_code, reason=s.reason)
        return reply

    async def AssignAgent(self, req: pb.AssignAgentRequest, _: Any) -> pb.AgencyRecord:
        async def run(uow: UnitOfWork) -> pb.AgencyRecord:
            case, assignment = await convenience.assign_agent(uow, self.ctx, req)
            agency = await repo.agency_of_case(uow.conn, case["case_id"]) or {}
            return agency_message(agency, case, assignment)

        result: pb.AgencyRecord = await self._in_uow(run)
        return result

    async def ListAgentCases(self, req: pb.ListAgentCasesRequest, _: Any) -> pb.ListAgentCasesResponse:
        out = pb.ListAgentCasesResponse()
        async with self.rt.uow() as uow:
            for agency in await repo.taken_not_handed_over(uow.conn, req.agent):
                out.cases.add(agency=agency_message(agency))
            for case_id in await repo.agent_case_ids(uow.conn, req.agent):
                case = await repository.get_case(uow.conn, case_id=case_id)
                if case is None:
                    continue
                agency = await repo.agency_of_case(uow.conn, case_id) or {}
                assignment = await repo.get_assignment(uow.conn, case_id)
                out.cases.add(agency=agency_message(agency, case, assignment), case=case_message(case))
        return out

    async def RecordDelivery(self, req: pb.RecordDeliveryRequest, _: Any) -> pb.Delivery:
        return delivery_message(await self._in_uow(lambda uow: delivery.record_delivery(uow, self.ctx, req)))

    async def ListUndelivered(self, req: pb.ListUndeliveredRequest, _: Any) -> pb.ListUndeliveredResponse:
        now = self.ctx.now()
        async with self.rt.engine.connect() as conn:
            rows = await repo.undelivered(conn, limit=min(max(req.limit or 100, 1), 1000))
        out = pb.ListUndeliveredResponse()
        for r in rows:
            concluded = aware(r["concluded_at"]) if r["concluded_at"] else None
            out.cases.add(
                case_id=r["case_id"],
                case_number=r["case_number"] or "",
                matter_code=r["matter_code"],
                applicant_name=(r["applicant"] or {}).get("name", ""),
                concluded_at=_ts(concluded),
                age_days=delivery.age_days(concluded, now),
                full_process_agent=r["agent_username"] or "",
            )
        return out

    async def CollectFee(self, req: pb.CollectFeeRequest, _: Any) -> pb.FeeEntry:
        row = await self._in_uow(lambda uow: fees_handlers.collect(uow, self.ctx, req))
        return fee_message(row, refundable=row["amount"])

    async def RefundFee(self, req: pb.RefundFeeRequest, _: Any) -> pb.FeeEntry:
        return fee_message(
            await self._in_uow(lambda uow: fees_handlers.refund(uow, self.ctx, req)),
            original=req.receipt_number,
        )

    async def VoidFee(self, req: pb.VoidFeeRequest, _: Any) -> pb.FeeEntry:
        return fee_message(
            await self._in_uow(lambda uow: fees_handlers.void(uow, self.ctx, req)),
            original=req.receipt_number,
        )

    async def ListFees(self, req: pb.ListFeesRequest, _: Any) -> pb.ListFeesResponse:
        if req.day:
            fees.check_day(req.day)
        out = pb.ListFeesResponse()
        async with self.rt.uow() as uow:
            rows = await repo.fees(
                uow.conn,
                center=self.ctx.center,
                day=req.day,
                collector=req.collector,
                case_number=req.case_number,
            )
            receipts = {r["entry_id"]: r["receipt_number"] for r in rows}
            for r in rows:
                original = receipts.get(r["original_entry_id"] or "", "")
                if r["original_entry_id"] and not original:
                    found = await repo.fees(uow.conn, center=self.ctx.center, case_number=r["case_number"])
                    original = next(
                        (x["receipt_number"] for x in found if x["entry_id"] == r["original_entry_id"]), ""
                    )
                out.entries.append(
                    fee_message(r, original=original, refundable=await fees_handlers.refundable_of(uow, r))
                )
        return out

    async def Reconcile(self, req: pb.ReconcileRequest, _: Any) -> pb.Reconciliation:
        return reconciliation_message(
            await self._in_uow(lambda uow: fees_handlers.reconcile(uow, self.ctx, req))
        )

    async def ListReconciliations(
        self, req: pb.ListReconciliationsRequest, _: Any
    ) -> pb.ListReconciliationsResponse:
        async with self.rt.uow() as uow:
            rows = await fees_handlers.reconciliations(uow, self.ctx, req)
        return pb.ListReconciliationsResponse(reconciliations=[reconciliation_message(r) for r in rows])

    async def ListStaffingWarnings(
        self, req: pb.ListStaffingWarningsRequest, _: Any
    ) -> pb.ListStaffingWarningsResponse:
        found = await staffing_warnings(self.ctx.staff, req.minimum or R20_MINIMUM)
        return pb.ListStaffingWarningsResponse(
            warnings=[
                pb.StaffingWarning(
                    center=w.center,
                    level=w.level,
                    liaison_officers=w.liaison_officers,
                    fee_collectors=w.fee_collectors,
                    minimum=w.minimum,
                )
                for w in found
            ]
        )


def servicers(runtime: Runtime, intake: Any) -> list[tuple[object, Any]]:
    """The ConvenienceService servicer for intake's bootstrap (staff looked up in routing's organisation)."""
    ctx = ConvenienceContext(intake=intake, staff=RoutingStaff(runtime.settings.peer("routing")))
    return [(ConvenienceApi(runtime=runtime, ctx=ctx), pb.DESCRIPTOR.services_by_name["ConvenienceService"])]
