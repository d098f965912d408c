"""A fake ConvenienceService for the gateway's unit tests: a small ledger and agency records in memory."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import grpc

from onestop.common.v1 import common_pb2
from onestop.intake.v1 import convenience_pb2 as pb
from tests.unit.gateway.fakes import CENTER, NUMBER, rpc_error

DAY = "2025-01-06"  # the test clock's day in Shanghai
CARRIED = "210200-20250106-0007"  # taken at a service point, handed over, carried by agent.here
NOTICE_ID = "0b5e2f4c-7d1a-4c3e-9f60-2a8b1c9d0e11"  # handed over by agent.here, held in pre-review


def _case(number: str, status: int, outcome: int = 0) -> common_pb2.Case:
    return common_pb2.Case(
        case_id=f"id-{number}",
        case_number=number,
        center=CENTER,
        matter_code="CV-006",
        status=status,
        outcome=outcome,
        channel=common_pb2.CHANNEL_AGENT,
        applicant=common_pb2.Applicant(name="孙小梅"),
    )


def notice_case() -> common_pb2.Case:
    """The case agent.here handed over without its site plan: a one-time notice asks for it."""
    case = common_pb2.Case(
        case_id=NOTICE_ID,
        center=CENTER,
        matter_code="PL-001",
        status=common_pb2.CASE_STATUS_SUPPLEMENT_REQUESTED,
        channel=common_pb2.CHANNEL_AGENT,
        applicant=common_pb2.Applicant(name="王秀英"),
    )
    case.documents.add(material_code="APPLICATION", digest="a" * 64, filename="申请表.pdf", size=30)
    case.open_supplement.add(material_code="SITE-PLAN", reason="缺少总平面图")
    return case


@dataclass
class FakeConvenience:
    """ConvenienceService: receipts numbered in order, refunds bounded, one carried case, one undelivered."""

    entries: list[pb.FeeEntry] = field(default_factory=list)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    reconciliations: list[pb.Reconciliation] = field(default_factory=list)

    async def ListFees(self, req: pb.ListFeesRequest, timeout: float = 0) -> Any:
        found = [
            e
            for e in self.entries
            if (not req.day or e.day == req.day)
            and (not req.collector or e.collector.username == req.collector)
        ]
        return pb.ListFeesResponse(entries=found)

    def _add(self, **values: Any) -> pb.FeeEntry:
        entry = pb.FeeEntry(
            entry_id=f"e{len(self.entries) + 1}",
            receipt_number=f"{CENTER}-2025-{len(self.entries) + 1:06d}",
            day=DAY,
            **values,
        )
        self.entries.append(entry)
        return entry

    async def CollectFee(self, req: pb.CollectFeeRequest, timeout: float = 0) -> Any:
        self.calls.append(("collect", req))
        if Decimal(req.amount) <= 0:
            raise rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "amount must be positive, not zero")
        return self._add(
            entry_kind="charge",
            fee_kind=req.fee_kind,
            case_number=req.case_number,
            matter_code=req.matter_code,
            fee_code=req.fee_code,
            amount=f"{Decimal(req.amount):.2f}",
            payer=req.payer,
            method=req.method,
            collector=req.collector,
            refundable=f"{Decimal(req.amount):.2f}",
        )

    def _original(self, receipt: str) -> pb.FeeEntry:
        original = next((e for e in self.entries if e.receipt_number == receipt), None)
        if original is None:
            raise rpc_error(grpc.StatusCode.NOT_FOUND, f"no receipt {receipt}")
        return original

    async def RefundFee(self, req: pb.RefundFeeRequest, timeout: float = 0) -> Any:
        self.calls.append(("refund", req))
        original = self._original(req.receipt_number)
        if Decimal(req.amount) > Decimal(original.refundable):
            raise rpc_error(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"refund of {req.amount} exceeds what remains refundable of receipt "
                f"{original.receipt_number}: {original.refundable}",
            )
        original.refundable = f"{Decimal(original.refundable) - Decimal(req.amount):.2f}"
        return self._add(
            entry_kind="refund",
            fee_kind=original.fee_kind,
            amount=f"{Decimal(req.amount):.2f}",
            payer=original.payer,
            method=original.method,
            collector=req.by,
            original_receipt=original.receipt_number,
            reason=req.reason,
        )

    async def VoidFee(self, req: pb.VoidFeeRequest, timeout: float = 0) -> Any:
        self.calls.append(("void", req))
        original = self._original(req.receipt_number)
        original.refundable = "0.00"
        return self._add(
            entry_kind="void",
            fee_kind=original.fee_kind,
            amount=original.amount,
            payer=original.payer,
            method=original.method,
            collector=req.by,
            original_receipt=original.receipt_number,
            reason=req.reason,
        )

    async def Reconcile(self, req: pb.ReconcileRequest, timeout: float = 0) -> Any:
        self.calls.append(("reconcile", req))
        mine = (await self.ListFees(pb.ListFeesRequest(day=req.day, collector=req.collector))).entries
        expected = sum(
            (Decimal(e.amount) * (1 if e.entry_kind == "charge" else -1) for e in mine), Decimal("0.00")
        )
        difference = Decimal(req.declared) - expected
        rows = "".join(f"<tr><td>{e.receipt_number}</td><td>{e.amount}</td></tr>" for e in mine)
        done = pb.Reconciliation(
            id=len(self.reconciliations) + 1,
            center=CENTER,
            day=req.day,
            collector=req.collector,
            expected=f"{expected:.2f}",
            declared=f"{Decimal(req.declared):.2f}",
            difference=f"{difference:.2f}",
            balanced=difference == 0,
            flagged=difference != 0,
            entries=len(mine),
            by=req.by,
            report_html=(
                "<!DOCTYPE html><html><head><style>td{border:1px solid}</style></head><body>"
                f"<h1>收费日对账单 {req.collector or '全中心'}</h1><table>{rows}</table>"
                f"<p>应收 Expected: {expected:.2f} · 差额 Difference: {difference:.2f}</p></body></html>"
            ),
        )
        self.reconciliations.append(done)
        return done

    async def ListReconciliations(self, req: pb.ListReconciliationsRequest, timeout: float = 0) -> Any:
        found = [
            r
            for r in self.reconciliations
            if r.day == req.day
            and (not req.collector or r.collector == req.collector)
            and (not req.id or r.id == req.id)
        ]
        out = pb.ListReconciliationsResponse(reconciliations=found)
        if not req.with_reports:
            for r in out.reconciliations:
                r.report_html = ""
        return out

    async def ListAgentCases(self, req: pb.ListAgentCasesRequest, timeout: float = 0) -> Any:
        if req.agent != "agent.here":
            return pb.ListAgentCasesResponse()
        agency = pb.AgencyRecord(
            agency_id="a1",
            service_point="210200101201",
            agent=common_pb2.Actor(username="agent.here", display_name="AGENT.HERE"),
            resident_name="孙小梅",
            matter_code="CV-006",
            state="assigned",
            case_number=CARRIED,
            full_process_agent=common_pb2.Actor(username="agent.here"),
        )
        case = _case(CARRIED, common_pb2.CASE_STATUS_CONCLUDED, common_pb2.OUTCOME_APPROVED)
        waiting = pb.AgencyRecord(
            agency_id="a2",
            service_point="210200101201",
            agent=common_pb2.Actor(username="agent.here", display_name="AGENT.HERE"),
            resident_name="王秀英",
            matter_code="PL-001",
            state="handed_over",
            case_id=NOTICE_ID,
        )
        return pb.ListAgentCasesResponse(
            cases=[pb.AgentCase(agency=agency, case=case), pb.AgentCase(agency=waiting, case=notice_case())]
        )

    async def AssignAgent(self, req: pb.AssignAgentRequest, timeout: float = 0) -> Any:
        self.calls.append(("assign", req))
        if req.case_number not in (CARRIED, NUMBER):
            raise rpc_error(grpc.StatusCode.NOT_FOUND, f"no case {req.case_number}")
        return pb.AgencyRecord(case_number=req.case_number, full_process_agent=req.agent, assigned_by=req.by)

    async def ListUndelivered(self, req: pb.ListUndeliveredRequest, timeout: float = 0) -> Any:
        return pb.ListUndeliveredResponse(
            cases=[
                pb.UndeliveredCase(
                    case_id=f"id-{CARRIED}",
                    case_number=CARRIED,
                    matter_code="CV-006",
                    applicant_name="孙小梅",
                    age_days=4.5,
                    full_process_agent="agent.here",
                )
            ]
        )

    async def RecordDelivery(self, req: pb.RecordDeliveryRequest, timeout: float = 0) -> Any:
        self.calls.append(("deliver", req))
        return pb.Delivery(case_number=req.case_number, method=req.method, receiver_name=req.receiver_name)
