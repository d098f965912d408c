"""The applicant's pages: apply online, the receipt, track a case, answer a supplement notice, evaluate."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any, NoReturn

import grpc
from aiohttp import web

from gateway.auth import CARRIER_ROLES, principal_of
from gateway.clients import call_or_none, optional
from gateway.i18n import language_of, refusal
from gateway.keys import CONFIG, LIMITS, SIGNER, clients, now, store
from gateway.security import TRACK_COOKIE, check_rate, set_cookie, sha256_hex
from gateway.uploads import documents_from_form
from gateway.views.common import (
    asked_materials,
    departments,
    form_data,
    light,
    matter,
    online_actor,
    redirect,
    remaining_days,
    render,
    supplement_documents,
    text,
)
from gateway.views.public import encode_sealed
from onestop.approval.v1 import approval_pb2
from onestop.common.v1 import common_pb2
from onestop.intake.v1 import intake_pb2
from onestop.notification.v1 import notification_pb2
from onestop.supervision.v1 import supervision_pb2

routes = web.RouteTableDef()
NUMBER = re.compile(r"^[0-9A-Za-z-]{4,64}$")
CODE = re.compile(r"^[0-9A-Za-z]{4,16}$")
PHONE = re.compile(r"^\+?[0-9 -]{6,20}$")
MAX_TRACKED = 5
CONCLUDED = (common_pb2.CASE_STATUS_CONCLUDED, common_pb2.CASE_STATUS_DELIVERED)


def tracked(request: web.Request) -> dict[str, str]:
    """The cases this browser has unlocked: {case number: query code}, from a signed cookie."""
    data = request.app[SIGNER].loads("track", request.cookies.get(TRACK_COOKIE, ""))
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items() if NUMBER.match(str(k)) and CODE.match(str(v))}


def remember(request: web.Request, response: web.StreamResponse, number: str, code: str) -> None:
    """Unlock a case in this browser for a day, so the code never sits in a URL."""
    cases = {k: v for k, v in tracked(request).items() if k != number}
    cases[number] = code.upper()
    cases = dict(list(cases.items())[-MAX_TRACKED:])
    set_cookie(response, TRACK_COOKIE, request.app[SIGNER].dumps("track", cases), max_age=86400)


def _applicant(data: Any, lang: str) -> common_pb2.Applicant:
    kind = text(data, "applicant_kind", max_len=1) or "1"
    phone = text(data, "phone", max_len=20)
    if phone and not PHONE.match(phone):
        raise refusal(web.HTTPBadRequest, "联系电话格式不正确", "the phone number is not valid")
    email = text(data, "email", max_len=128)
    if email and "@" not in email:
        raise refusal(web.HTTPBadRequest, "电子邮箱格式不正确", "the e-mail address is not valid")
    return common_pb2.Applicant(
        kind=common_pb2.APPLICANT_KIND_COMPANY if kind == "2" else common_pb2.APPLICANT_KIND_PERSON,
        name=text(data, "name", max_len=100, required=True),
        id_number=text(data, "id_number", max_len=32),
        phone=phone,
        email=email,
        language=lang,
    )


@routes.get("/apply/{code}", name="apply")
async def apply_form(request: web.Request) -> web.Response:
    """The online application form: applicant, title, and one upload per material."""
    m = await matter(request, request.match_info["code"])
    return render(
        request,
        "apply.html",
        {
            "matter": m,
            "request_id": str(uuid.uuid4()),
            "max_mb": request.app[CONFIG].max_upload_bytes // (1024 * 1024),
        },
    )


@routes.post("/apply/{code}")
async def apply_submit(request: web.Request) -> web.Response:
    """Submit the application; the receipt shows the case number and the query code."""
    m = await matter(request, request.match_info["code"])
    data = await form_data(request)
    who = principal_of(request)
    agent = who is not None and who.role in CARRIER_ROLES
    # Every field is checked before the first document is stored: a refused form writes nothing.
    applicant = _applicant(data, language_of(request))
    request_id = text(data, "request_id", max_len=64)
    title = text(data, "title", max_len=200)
    docs = await documents_from_form(
        clients(request),
        data,
        matter=m,
        materials=[x.code for x in m.materials],
        ceiling=request.app[CONFIG].max_upload_bytes,
    )
    reply = await clients(request).intake.SubmitCase(
        intake_pb2.SubmitCaseRequest(
            client_request_id=request_id,
            matter_code=m.code,
            channel=common_pb2.CHANNEL_AGENT if agent else common_pb2.CHANNEL_ONLINE,
            applicant=applicant,
            documents=docs,
            submitted_by=who.actor() if who is not None and agent else online_actor(request, applicant.name),
            title=title,
        ),
        timeout=15,
    )
    if agent and who is not None:
        await store(request).add_carried(
            username=who.username,
            center=who.center,
            service_point=who.service_point,
            case_id=reply.case.case_id,
            case_number=reply.case.case_number,
            matter_code=m.code,
            now=now(request),
        )
    return receipt(request, m, reply.case, reply.query_code, list(reply.supplement))


def receipt(
    request: web.Request, m: Any, case: common_pb2.Case, code: str, missing: list[common_pb2.SupplementItem]
) -> web.Response:
    """The receipt page; an accepted case is unlocked in this browser."""
    response = render(
        request,
        "receipt.html",
        {
            "matter": m,
            "case": case,
            "query_code": code,
            "missing": missing,
            "max_mb": request.app[CONFIG].max_upload_bytes // (1024 * 1024),
        },
    )
    if case.case_number:
        remember(request, response, case.case_number, code)
    response.headers["Cache-Control"] = "no-store"
    return response


@routes.post("/apply/{code}/supplement", name="presupplement")
async def presupplement(request: web.Request) -> web.Response:
    """Answer the pre-review notice (before acceptance the case has no number yet, only its id)."""
    m = await matter(request, request.match_info["code"])
    data = await form_data(request)
    case_id = text(data, "case_id", max_len=36, required=True)
    code = text(data, "query_code", max_len=16, required=True)
    docs = await documents_from_form(
        clients(request),
        data,
        matter=m,
        materials=[x.code for x in m.materials],
        ceiling=request.app[CONFIG].max_upload_bytes,
    )
    if not docs:
        raise refusal(
            web.HTTPBadRequest, "请至少上传一份所缺材料", "upload at least one of the missing documents"
        )
    reply = await clients(request).intake.SupplementCase(
        intake_pb2.SupplementCaseRequest(
            case_id=case_id, documents=docs, by=online_actor(request), query_code=code
        ),
        timeout=15,
    )
    return receipt(request, m, reply.case, code, list(reply.still_missing))


async def _unlock(request: web.Request, number: str, code: str) -> NoReturn:
    check_rate(request, request.app[LIMITS].lookup)
    unknown = refusal(
        web.HTTPNotFound, "办件编号与查询码不匹配,或没有这个办件", "No case with this number and query code"
    )
    if not NUMBER.match(number) or not CODE.match(code):
        raise unknown
    try:
        await clients(request).intake.TrackCase(
            intake_pb2.TrackCaseRequest(case_number=number, query_code=code), timeout=5
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:  # a wrong code and no such case read the same
            raise unknown from None
        raise
    response = web.HTTPSeeOther(f"/track/{number}")
    remember(request, response, number, code)
    raise response


@routes.get("/track", name="track")
async def track_form(request: web.Request) -> web.StreamResponse:
    """The lookup form; a link carrying number and code unlocks the case and drops the code from the URL."""
    number = request.query.get("number", "").strip()[:64]
    code = request.query.get("code", "").strip()[:16]
    if number and code:
        return await _unlock(request, number, code)
    return render(request, "track.html", {"number": number, "cases": sorted(tracked(request))})


@routes.post("/track")
async def track_lookup(request: web.Request) -> web.StreamResponse:
    """Look a case up by number and query code (rate-limited per address)."""
    data = await form_data(request)
    return await _unlock(request, text(data, "number", max_len=64), text(data, "code", max_len=16))


def code_for(request: web.Request, number: str) -> str:
    """The query code this browser unlocked the case with; a form posted without one is refused."""
    code = tracked(request).get(number)
    if not code:
        if request.method != "GET":
            raise refusal(
                web.HTTPForbidden,
                "请先用办件编号和查询码查询该办件",
                "Look the case up with its number and query code first",
            )
        raise redirect(f"/track?number={number}") if NUMBER.match(number) else web.HTTPNotFound()
    return code


@routes.get("/track/{number}", name="case")
async def case_page(request: web.Request) -> web.Response:
    """The applicant's case: timeline, department tasks, clocks, notices, decision, supplement and evaluation."""
    number = request.match_info["number"]
    code = code_for(request, number)
    c = clients(request)
    reply = await c.intake.TrackCase(
        intake_pb2.TrackCaseRequest(case_number=number, query_code=code), timeout=5
    )
    case = reply.case
    concluded = case.status in CONCLUDED
    (
        (tasks, tasks_missing),
        (clocks, clocks_missing),
        (inbox, inbox_missing),
        (sealed, _),
        (evaluation, _),
    ) = await asyncio.gather(
        optional(
            call_or_none(
                c, "approval", "ListCaseTasks", approval_pb2.ListCaseTasksRequest(case_number=number)
            ),
            "approval",
        ),
        optional(
            call_or_none(c, "supervision", "GetClocks", supervision_pb2.GetClocksRequest(case_number=number)),
            "supervision",
            absent_ok=True,
        ),
        optional(
            call_or_none(
                c,
                "notification",
                "ListInbox",
                notification_pb2.ListInboxRequest(recipient=f"case:{number}", case_number=number),
            ),
            "notification",
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
                c,
                "supervision",
                "GetEvaluation",
                supervision_pb2.GetEvaluationRequest(
                    case_number=number, query_code_digest=sha256_hex(code.upper())
                ),
            )
            if concluded
            else None,
            "",
            absent_ok=True,  # not rated yet: the form is offered
        ),
    )
    instant = now(request)
    local_clocks = [(t, remaining_days(t.due_at, instant)) for t in (tasks.tasks if tasks else [])]
    m = await matter(request, case.matter_code)
    return render(
        request,
        "case.html",
        {
            "case": case,
            "matter": m,
            "timeline": list(reply.timeline.entries),
            "tasks": tasks.tasks if tasks else [],
            "tasks_missing": tasks_missing,
            "clocks": clocks.clocks if clocks else [],
            "clocks_missing": clocks_missing,
            "local_clocks": [
                (t, d, light(d, t.due_at, instant, m.warning_threshold_days or 1)) for t, d in local_clocks
            ],
            "inbox": inbox.messages if inbox else [],
            "inbox_missing": inbox_missing,
            "sealed": sealed,
            "evaluation": evaluation,
            "sealed_link": encode_sealed(sealed) if sealed else "",
            "departments": await departments(request),
            "done": request.query.get("done", ""),
            "concluded": concluded,
            "max_mb": request.app[CONFIG].max_upload_bytes // (1024 * 1024),
            "materials": {x.code: x for x in m.materials},
            "asked": asked_materials(case),
        },
    )


@routes.post("/track/{number}/supplement", name="supplement")
async def supplement(request: web.Request) -> web.Response:
    """Answer the one-time supplement notice by uploading what was asked."""
    number = request.match_info["number"]
    code = code_for(request, number)
    reply = await clients(request).intake.TrackCase(
        intake_pb2.TrackCaseRequest(case_number=number, query_code=code), timeout=5
    )
    asked = asked_materials(reply.case)
    if not asked:
        raise refusal(web.HTTPConflict, "该办件没有待补正的通知", "This case has no open supplement notice")
    docs = await supplement_documents(request, matter_code=reply.case.matter_code, asked=asked)
    await clients(request).intake.SupplementCase(
        intake_pb2.SupplementCaseRequest(
            case_id=reply.case.case_id,
            documents=docs,
            by=online_actor(request, reply.case.applicant.name),
            query_code=code,
        ),
        timeout=15,
    )
    raise redirect(f"/track/{number}?done=supplemented")


@routes.post("/track/{number}/evaluation", name="evaluate")
async def evaluate(request: web.Request) -> web.Response:
    """好差评: rate a concluded case from 1 to 5 (the query code vouches; staff may not rate)."""
    number = request.match_info["number"]
    if principal_of(request) is not None:
        raise refusal(
            web.HTTPForbidden,
            "工作人员不能评价办件:评价只能由申请人本人作出",
            "Staff may not evaluate a case: the rating is the applicant's own",
        )
    code = code_for(request, number)
    data = await form_data(request)
    try:
        rating = int(text(data, "rating", max_len=1, required=True))
    except ValueError:
        raise refusal(web.HTTPBadRequest, "请选择 1 至 5 的评价", "choose a rating from 1 to 5") from None
    if not 1 <= rating <= 5:
        raise refusal(web.HTTPBadRequest, "请选择 1 至 5 的评价", "choose a rating from 1 to 5")
    reply = await clients(request).intake.TrackCase(
        intake_pb2.TrackCaseRequest(case_number=number, query_code=code), timeout=5
    )
    if reply.case.status not in CONCLUDED:
        raise refusal(web.HTTPConflict, "办结后才能评价", "Only a concluded case can be evaluated")
    tags = [v for v in data.getall("tags", []) if isinstance(v, str)][:5] if hasattr(data, "getall") else []
    await clients(request).supervision.SubmitEvaluation(
        supervision_pb2.SubmitEvaluationRequest(
            case_number=number,
            query_code_digest=sha256_hex(code.upper()),
            rating=rating,
            tags=[t[:32] for t in tags],
            text=text(data, "comment", max_len=500),
        ),
        timeout=5,
    )
    raise redirect(f"/track/{number}?done=evaluated")


@routes.post("/track/{number}/withdraw", name="withdraw")
async def withdraw(request: web.Request) -> web.Response:
    """The applicant withdraws an open case (the query code vouches for them)."""
    number = request.match_info["number"]
    code = code_for(request, number)
    reply = await clients(request).intake.TrackCase(
        intake_pb2.TrackCaseRequest(case_number=number, query_code=code), timeout=5
    )
    await clients(request).intake.WithdrawCase(
        intake_pb2.WithdrawCaseRequest(
            case_id=reply.case.case_id,
            reason=text(await form_data(request), "reason", max_len=500),
            by=online_actor(request, reply.case.applicant.name),
            query_code=code,
        ),
        timeout=5,
    )
    raise redirect(f"/track/{number}?done=withdrawn")
