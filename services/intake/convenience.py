"""Full-process agency (R19, R20): the agent takes a matter, hands it to the center, a liaison assigns an agent."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format

from onestop.common.v1 import common_pb2
from onestop.intake.v1 import intake_pb2
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.common.outbox import UnitOfWork
from services.intake import convenience_repository as repo
from services.intake import handlers, model, repository
from services.intake.convenience_staff import AGENT, LIAISON, StaffDirectory, require
from services.intake.convert import to_json

CS = common_pb2
RECEIVING_ROLES = ("window_clerk", LIAISON, "center_director")
ACCEPTED_OR_LATER = {
    CS.CASE_STATUS_ACCEPTED,
    CS.CASE_STATUS_ROUTED,
    CS.CASE_STATUS_FORWARDED,
    CS.CASE_STATUS_SUPPLEMENT_REQUESTED,
    CS.CASE_STATUS_CONCLUDED,
}


@dataclass
class ConvenienceContext:
    """The convenience service's collaborators: intake's context and the staff directory."""

    intake: handlers.IntakeContext
    staff: StaffDirectory

    @property
    def center(self) -> str:
        """This node's center."""
        return self.intake.center

    def now(self) -> Any:
        """The clock's now."""
        return self.intake.clock.now()


async def take_matter(uow: UnitOfWork, ctx: ConvenienceContext, req: Any) -> dict[str, Any]:
    """Record a matter an agent took from a resident at a village/community service point."""
    if not req.service_point:
        raise InvalidArgument("service_point is required", field="service_point", zh="请填写便民服务点")
    if not req.matter_code:
        raise InvalidArgument("matter_code is required", field="matter_code", zh="请填写事项编码")
    if not req.resident.name.strip():
        raise InvalidArgument("resident.name is required", field="resident.name", zh="请填写申请人姓名")
    await require(ctx.staff, req.agent, center=ctx.center, role=AGENT, service_point=req.service_point)
    await ctx.intake.matters.get(req.matter_code)  # an unknown matter is refused now, not at hand-over
    agency_id = str(uuid.uuid4())
    submit = intake_pb2.SubmitCaseRequest(
        client_request_id=req.client_request_id or f"agency:{agency_id}",
        matter_code=req.matter_code,
        channel=CS.CHANNEL_AGENT,
        applicant=req.resident,
        documents=list(req.documents),
        submitted_by=req.agent,
        title=req.title,
        form=dict(req.form),
    )
    row = {
        "agency_id": agency_id,
        "service_point": req.service_point,
        "agent": to_json(req.agent),
        "agent_username": req.agent.username,
        "resident_name": req.resident.name.strip(),
        "matter_code": req.matter_code,
        "request": json_format.MessageToDict(submit),
        "taken_at": ctx.now(),
        "state": "taken",
        "received_by": None,
        "handed_over_at": None,
        "case_id": None,
    }
    await repo.insert(uow.conn, repo.t.agency, row)
    return row


async def hand_over(
    uow: UnitOfWork, ctx: ConvenienceContext, req: Any
) -> tuple[dict[str, Any], dict[str, Any], list[model.Shortfall]]:
    """The township center receives the taken matter and submits it through intake (channel AGENT)."""
    if not req.agency_id:
        raise InvalidArgument("agency_id is required", field="agency_id", zh="请指明要接收的代办")
    if req.received_by.role not in RECEIVING_ROLES or not req.received_by.username:
        raise PermissionDenied(
            "a named window clerk, liaison officer or director of the center receives it",
            zh="须由本中心具名的窗口工作人员、联络员或中心主任接收",
        )
    if req.received_by.center and req.received_by.center != ctx.center:
        raise PermissionDenied(
            f"{req.received_by.username} is not staff of center {ctx.center}",
            zh=f"{req.received_by.username} 不是本中心（{ctx.center}）的工作人员",
        )
    agency = await repo.get_agency(uow.conn, req.agency_id, lock=True)
    if agency is None:
        raise NotFound(f"no agency record {req.agency_id}", zh="未找到该代办记录")
    if agency["state"] != "taken":  # a retried hand-over answers with the same case
        case = await repository.get_case(uow.conn, case_id=agency["case_id"])
        assert case is not None
        return agency, case, [model.Shortfall(**i) for i in case["open_supplement"]]
    submit = json_format.ParseDict(agency["request"], intake_pb2.SubmitCaseRequest())
    case, shortfalls = await handlers.submit_case(uow, ctx.intake, submit)
    now = ctx.now()
    values = {
        "state": "handed_over",
        "received_by": to_json(req.received_by),
        "handed_over_at": now,
        "case_id": case["case_id"],
    }
    await repo.update_agency(uow.conn, agency["agency_id"], **values)
    agency.update(values)
    return agency, case, shortfalls


async def assign_agent(
    uow: UnitOfWork, ctx: ConvenienceContext, req: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A liaison officer assigns a full-process agent to an accepted case (R20); reassigning overwrites."""
    await require(ctx.staff, req.by, center=ctx.center, role=LIAISON)
    await require(ctx.staff, req.agent, center=ctx.center, role=AGENT)
    case = await load_case(uow, req.case_id, req.case_number)
    if case["status"] not in ACCEPTED_OR_LATER or not case["case_number"]:
        raise FailedPrecondition(
            f"case {case['case_id']} is not accepted yet; only an accepted case gets an agent",
            zh="该报件尚未受理，受理后才能指派代办员",
        )
    if case["status"] == CS.CASE_STATUS_CONCLUDED and case["outcome"] == CS.OUTCOME_WITHDRAWN:
        raise FailedPrecondition(
            f"case {case['case_number']} was withdrawn",
            zh=f"报件 {case['case_number']} 已撤回，不能再指派代办员",
        )
    row = {
        "case_id": case["case_id"],
        "agent": to_json(req.agent),
        "agent_username": req.agent.username,
        "assigned_by": to_json(req.by),
        "assigned_at": ctx.now(),
    }
    await repo.put_assignment(uow.conn, row)
    return case, row


async def load_case(uow: UnitOfWork, case_id: str, case_number: str) -> dict[str, Any]:
    """A case of this center by id or number, or NotFound."""
    if not case_id and not case_number:
        raise InvalidArgument("case_id or case_number is required", field="case_id", zh="请填写报件编号")
    case = await repository.get_case(uow.conn, case_id=case_id, case_number=case_number)
    if case is None:
        raise NotFound(
            f"no case {case_id or case_number}",
            zh=f"未找到报件 {case_number}" if case_number else "未找到该报件",
        )
    return case
