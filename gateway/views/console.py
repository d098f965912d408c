"""The window console: queue, case detail, claim, decide, supplement, extension, notices, questions."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, date, datetime, time
from typing import Any

from aiohttp import web

from gateway.audit import note
from gateway.auth import (
    CARRIER_ROLES,
    DECIDING_ROLES,
    SUPERVISING_ROLES,
    TRACKING_ROLES,
    WINDOW_ROLES,
    Principal,
    forbid_outside,
    forbid_unless,
    principal_of,
    require,
)
from gateway.clients import call_or_none, optional
from gateway.i18n import refusal
from gateway.keys import clients, now, store
from gateway.labels import SHANGHAI
from gateway.views.agency import carries
from gateway.views.common import (
    departments,
    form_data,
    light,
    lines,
    matter,
    redirect,
    remaining_days,
    render,
    text,
)
from gateway.views.public import encode_sealed
from onestop.approval.v1 import approval_pb2
from onestop.common.v1 import common_pb2
from onestop.intake.v1 import intake_pb2
from onestop.routing.v1 import routing_pb2
from onestop.supervision.v1 import supervision_pb2

routes = web.RouteTableDef()
DESIGNATING_DEPARTMENTS = frozenset({"DRC", "ECON", "FTRADE"})  # R1: authorized to name key projects
ACTIONS = frozenset(
    {
        "claim",
        "release",
        "approve",
        "reject",
        "supplement",
        "opinion",
        "extension",
        "special-procedure",
        "end-special-procedure",
    }
)
NOTICES = frozenset({"acceptance", "supplement", "decision", "extension"})
QUESTION_ID = re.compile(r"^[0-9a-f-]{36}$")


def _me(request: web.Request) -> Principal:
    who = principal_of(request)
    assert who is not None  # guaranteed by @require
    return who


def own_department(request: web.Request, who: Principal) -> None:
    """403 when the query names another department than the session's (it never widens the scope)."""
    asked = request.query.get("department", "")
    forbid_unless(
        not asked or asked == who.department,
        f"You may open only your own department's queue ({who.department or 'none'})",
        zh=f"您只能打开本部门的待办队列({who.department or '无'})",
    )


@routes.get("/staff/queue", name="queue")
@require(*WINDOW_ROLES, here=True)
async def queue(request: web.Request) -> web.Response:
    """The window's queue: priority first, then the nearest due time (only one's own department)."""
    who = _me(request)
    own_department(request, who)
    closed = request.query.get("closed") == "1"
    reply = await clients(request).approval.ListQueue(
        approval_pb2.ListQueueRequest(
            center=who.center, department=who.department, include_closed=closed, limit=200
        ),
        timeout=5,
    )
    instant = now(request)
    days = [(task, remaining_days(task.due_at, instant)) for task in reply.tasks]
    rows = [(task, left, light(left, task.due_at, instant)) for task, left in days]
    return render(
        request,
        "staff/queue.html",
        {"rows": rows, "closed": closed, "departments": await departments(request)},
    )


async def _may_see_case(
    request: web.Request, who: Principal, number: str, tasks: list[common_pb2.Task]
) -> bool:
    if who.role in SUPERVISING_ROLES or who.role in TRACKING_ROLES:
        return who.here
    if who.role in WINDOW_ROLES:
        return who.here and any(t.department == who.department for t in tasks)
    if who.role in CARRIER_ROLES:
        return await carries(request, who, number)
    return False


async def case_in_scope(request: web.Request, who: Principal, number: str) -> list[common_pb2.Task]:
    """The case's tasks, or 403 when the case detail is not for this person (one check for every page)."""
    reply = await clients(request).approval.ListCaseTasks(
        approval_pb2.ListCaseTasksRequest(case_number=number), timeout=5
    )
    tasks = list(reply.tasks)
    forbid_unless(
        await _may_see_case(request, who, number, tasks),
        "This case has no task of your department",
        zh="该办件没有本部门的任务",
    )
    return tasks


@routes.get("/staff/cases/{number}", name="staff_case")
@require()
async def case_detail(request: web.Request) -> web.Response:
    """A case as staff see it: documents, timeline, every department's task, clocks and the decision."""
    who = _me(request)
    number = request.match_info["number"]
    c = clients(request)
    tasks = await case_in_scope(request, who, number)
    case, timeline = await asyncio.gather(
        c.intake.GetCase(intake_pb2.GetCaseRequest(case_number=number), timeout=5),
        c.intake.GetTimeline(intake_pb2.GetCaseRequest(case_number=number), timeout=5),
    )
    concluded = case.status in (common_pb2.CASE_STATUS_CONCLUDED, common_pb2.CASE_STATUS_DELIVERED)
    (clocks, clocks_missing), (sealed, _), (extensions, _), (procedures, _) = await asyncio.gather(
        optional(
            call_or_none(c, "supervision", "GetClocks", supervision_pb2.GetClocksRequest(case_number=number)),
            "supervision",
            absent_ok=True,
        ),
        optional(
            call_or_none(
                c, "approval", "GetCaseDecision", approval_pb2.GetCaseDecisionRequest(case_number=number)
            )
            if concluded
            else None,
            "",
            absent_ok=True,  # decided at the parent node: the decision is not sealed here
        ),
        optional(
            call_or_none(
                c, "approval", "ListExtensions", approval_pb2.ListExtensionsRequest(department=who.department)
            )
            if who.department
            else None,
            "",
        ),
        optional(
            call_or_none(
                c,
                "approval",
                "ListSpecialProcedures",
                approval_pb2.ListSpecialProceduresRequest(case_number=number),
            ),
            "",
        ),
    )
    instant = now(request)
    m = await matter(request, case.matter_code)
    return render(
        request,
        "staff/case.html",
        {
            "case": case,
            "matter": m,
            "timeline": list(timeline.entries),
            "departments": await departments(request),
            "tasks": [(t, remaining_days(t.due_at, instant)) for t in tasks],
            "has_extension": any(t.extension_days for t in tasks),  # an approved one moved a due date
            "mine": [t for t in tasks if who.role in WINDOW_ROLES and t.department == who.department],
            "clocks": clocks.clocks if clocks else [],
            "clocks_missing": clocks_missing,
            "may_decide": who.role in DECIDING_ROLES,
            "may_designate": _may_designate(who) and not case.key_project and not concluded,
            "trackers": await _trackers(request) if _may_designate(who) and not case.key_project else [],
            "sealed": sealed,
            "sealed_link": encode_sealed(sealed) if sealed else "",
            "extensions": [
                e for e in (extensions.extensions if extensions else []) if e.case_number == number
            ],
            "procedures": list(procedures.procedures) if procedures else [],
            "light": lambda t: light(
                remaining_days(t.due_at, instant), t.due_at, instant, m.warning_threshold_days or 1
            ),
        },
    )


def _may_designate(who: Principal) -> bool:
    """The center director, or the head or chief representative of an authorized department (R1)."""
    if not who.here:
        return False
    if who.role == "center_director":
        return True
    return who.role in DECIDING_ROLES and who.department in DESIGNATING_DEPARTMENTS


async def _trackers(request: web.Request) -> list[tuple[str, str]]:
    reply = await clients(request).routing.ListStaff(
        routing_pb2.ListStaffRequest(center=_me(request).center, role="tracker"), timeout=5
    )
    return [(s.username, s.display_name) for s in reply.staff]


@routes.post("/staff/cases/{number}/key-project", name="designate")
@require("center_director", *DECIDING_ROLES)
async def designate(request: web.Request) -> web.Response:
    """Designate a key project with a publicly promised completion date and its tracker (R1, R5)."""
    who = _me(request)
    forbid_unless(
        _may_designate(who),
        "Only an authorized department or the director designates key projects",
        zh="只有授权部门或中心主任可以认定重点项目",
    )
    number = request.match_info["number"]
    data = await form_data(request)
    note(request, case_number=number)
    try:
        day = date.fromisoformat(text(data, "promised_date", max_len=10, required=True))
    except ValueError:
        raise refusal(
            web.HTTPBadRequest,
            "承诺办结日期格式应为 2025-03-31",
            "the promised date must look like 2025-03-31",
        ) from None
    deadline = datetime.combine(day, time(23, 59, 59), tzinfo=SHANGHAI)
    if deadline <= now(request):
        raise refusal(
            web.HTTPBadRequest, "承诺办结日期必须晚于今天", "the promised date must lie in the future"
        )
    tracker = text(data, "tracker", max_len=64)
    if tracker and tracker not in {u for u, _ in await _trackers(request)}:
        raise refusal(web.HTTPBadRequest, "请选择本中心的跟踪人", "choose a tracker of this center")
    case = await clients(request).intake.GetCase(intake_pb2.GetCaseRequest(case_number=number), timeout=5)
    note(request, promised_date=day.isoformat(), tracker=tracker)
    req = intake_pb2.DesignateKeyProjectRequest(
        case_id=case.case_id, designated_by=who.actor(), tracker=tracker
    )
    req.promised_deadline.FromDatetime(deadline.astimezone(UTC))
    await clients(request).intake.DesignateKeyProject(req, timeout=5)
    raise redirect(f"/staff/cases/{number}?done=designated")


async def _task_in_scope(request: web.Request, who: Principal, task_id: str) -> common_pb2.Task:
    task = await clients(request).approval.GetTask(approval_pb2.GetTaskRequest(task_id=task_id), timeout=5)
    note(request, case_number=task.case_number, department=task.department)
    forbid_outside(who)
    forbid_unless(
        who.role in WINDOW_ROLES and task.department == who.department,
        "This task belongs to another department's window",
        zh="该任务属于其他部门的窗口",
    )
    return task


@routes.post("/staff/tasks/{task_id}/{action}", name="task_action")
@require(*WINDOW_ROLES, here=True)
async def task_action(request: web.Request) -> web.Response:
    """Claim, release, decide, ask for a supplement, add an opinion, request an extension, or start and
    end a special procedure (hearing, expert review ...: its time is not counted)."""
    who = _me(request)
    action = request.match_info["action"]
    if action not in ACTIONS:
        raise refusal(web.HTTPNotFound, "未知的操作", "unknown action")
    task = await _task_in_scope(request, who, request.match_info["task_id"])
    data = await form_data(request)
    approval = clients(request).approval
    by = who.actor()
    if action in ("approve", "reject"):
        forbid_unless(
            who.role in DECIDING_ROLES,
            "Only the chief representative or the department head decides",
            zh="只有首席代表或部门负责人可以作出决定",
        )
    if action == "claim":
        await approval.ClaimTask(approval_pb2.ClaimTaskRequest(task_id=task.task_id, by=by), timeout=5)
    elif action == "release":
        await approval.ReleaseTask(approval_pb2.ClaimTaskRequest(task_id=task.task_id, by=by), timeout=5)
    elif action == "approve":
        await approval.DecideTask(
            approval_pb2.DecideTaskRequest(
                task_id=task.task_id,
                verdict=approval_pb2.VERDICT_APPROVE,
                opinion=text(data, "opinion", max_len=2000),
                by=by,
            ),
            timeout=10,
        )
    elif action == "reject":
        reasons = lines(text(data, "reasons", max_len=4000, required=True))
        await approval.DecideTask(
            approval_pb2.DecideTaskRequest(
                task_id=task.task_id,
                verdict=approval_pb2.VERDICT_REJECT,
                reasons=reasons,
                opinion=text(data, "opinion", max_len=2000),
                by=by,
            ),
            timeout=10,
        )
    elif action == "supplement":
        items = _supplement_items(data, task.department)
        if not items:
            raise refusal(
                web.HTTPBadRequest,
                "请至少选择一项材料并说明缺少什么",
                "Choose at least one material and say what is missing",
            )
        await approval.DecideTask(
            approval_pb2.DecideTaskRequest(
                task_id=task.task_id,
                verdict=approval_pb2.VERDICT_REQUEST_SUPPLEMENT,
                items=items,
                opinion=text(data, "opinion", max_len=2000),
                by=by,
            ),
            timeout=10,
        )
    elif action == "opinion":
        await approval.AddOpinion(
            approval_pb2.AddOpinionRequest(
                task_id=task.task_id, text=text(data, "text", max_len=2000, required=True), by=by
            ),
            timeout=5,
        )
    elif action == "extension":
        try:
            days = int(text(data, "days", max_len=3, required=True))
        except ValueError:
            raise refusal(web.HTTPBadRequest, "天数必须是数字", "days must be a number") from None
        await approval.RequestExtension(
            approval_pb2.RequestExtensionRequest(
                task_id=task.task_id,
                days=days,
                reason=text(data, "reason", max_len=1000, required=True),
                by=by,
            ),
            timeout=5,
        )
    elif action == "special-procedure":
        try:
            days = int(text(data, "expected_days", max_len=3, required=True))
        except ValueError:
            raise refusal(
                web.HTTPBadRequest, "预计工作日必须是数字", "the expected working days must be a number"
            ) from None
        await approval.StartSpecialProcedure(
            approval_pb2.StartSpecialProcedureRequest(
                task_id=task.task_id,
                procedure=text(data, "procedure", max_len=32, required=True),
                reason=text(data, "reason", max_len=1000, required=True),
                expected_days=days,
                by=by,
            ),
            timeout=5,
        )
    elif action == "end-special-procedure":
        await approval.EndSpecialProcedure(
            approval_pb2.EndSpecialProcedureRequest(
                procedure_id=text(data, "procedure_id", max_len=36, required=True),
                result=text(data, "result", max_len=2000, required=True),
                by=by,
            ),
            timeout=5,
        )
    raise redirect(f"/staff/cases/{task.case_number}?done={action}#task-{task.task_id}")


def _supplement_items(data: Any, department: str) -> list[common_pb2.SupplementItem]:
    """Checked materials with the reason written beside each (one-time notice: everything at once)."""
    codes = [v for v in data.getall("material", []) if isinstance(v, str)][:30]
    items, unexplained = [], []
    for code in codes:
        reason = text(data, f"reason_{code}", max_len=500) or text(data, "reason", max_len=500)
        if reason:
            items.append(
                common_pb2.SupplementItem(material_code=code[:64], reason=reason, department=department)
            )
        else:
            unexplained.append(code[:64])
    if unexplained:
        # A one-time notice cannot ask again later: a ticked material without its reason is not dropped.
        raise web.HTTPBadRequest(
            reason=f"请为每项勾选的材料写明原因 / Say what is wrong with every ticked material: {', '.join(unexplained)}"
        )
    return items


@routes.get("/staff/cases/{number}/notices/{kind}", name="notice")
@require()
async def notice(request: web.Request) -> web.Response:
    """A printable written notice: acceptance, one-time supplement, decision, or extension."""
    who = _me(request)
    number, kind = request.match_info["number"], request.match_info["kind"]
    if kind not in NOTICES:
        raise refusal(web.HTTPNotFound, "未知的通知", "unknown notice")
    c = clients(request)
    tasks = await case_in_scope(request, who, number)
    case = await c.intake.GetCase(intake_pb2.GetCaseRequest(case_number=number), timeout=5)
    sealed = None
    if kind == "decision":
        sealed = await c.approval.GetCaseDecision(
            approval_pb2.GetCaseDecisionRequest(case_number=number), timeout=5
        )
    extensions: list[approval_pb2.Extension] = []
    if kind == "extension":
        depts = {t.department for t in tasks}
        for dept in sorted(depts):
            reply = await c.approval.ListExtensions(
                approval_pb2.ListExtensionsRequest(department=dept), timeout=5
            )
            extensions += [e for e in reply.extensions if e.case_number == number and e.state == "approved"]
    items = list(case.open_supplement)
    return render(
        request,
        "staff/notice.html",
        {
            "kind": kind,
            "case": case,
            "matter": await matter(request, case.matter_code),
            "sealed": sealed,
            "sealed_link": encode_sealed(sealed) if sealed else "",
            "extensions": extensions,
            "items": items,
            "departments": await departments(request),
            "tasks": tasks,
            "printed_at": now(request),
        },
    )


@routes.get("/staff/questions", name="questions")
@require(*WINDOW_ROLES, *SUPERVISING_ROLES, here=True)
async def questions(request: web.Request) -> web.Response:
    """Citizens' questions to this window (咨询): open ones to answer, answered ones for reference."""
    who = _me(request)
    dept = who.department if who.role in WINDOW_ROLES else None
    return render(
        request,
        "staff/questions.html",
        {
            "open": await store(request).questions_for(department=dept, answered=False),
            "answered": await store(request).questions_for(department=dept, answered=True, limit=50),
            "departments": await departments(request),
            "may_answer": who.role in WINDOW_ROLES,
        },
    )


@routes.post("/staff/questions/{question_id}/answer", name="answer")
@require(*WINDOW_ROLES, here=True)
async def answer(request: web.Request) -> web.Response:
    """The window answers; a published answer joins the matter's public FAQ."""
    who = _me(request)
    question_id = request.match_info["question_id"]
    q = await store(request).question(question_id) if QUESTION_ID.match(question_id) else None
    if q is None:
        raise refusal(web.HTTPNotFound, "没有这个问题", "no such question")
    forbid_unless(
        q["department"] == who.department,
        "This question was asked of another department",
        zh="该问题是向其他部门提出的",
    )
    data = await form_data(request)
    await store(request).answer_question(
        q["question_id"],
        answer=text(data, "answer", max_len=4000, required=True),
        by=who.display_name,
        publish=data.get("publish") == "1",
        now=now(request),
    )
    raise redirect("/staff/questions?done=answered")
