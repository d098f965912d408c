"""Full-process agency (R19, R20): the cases agents carry for residents, assignment, delivery of results.

Two sources make up "the cases I carry": what an agent applied for through this portal (the gateway's own
record) and, where this node is the agent's own center, the convenience service's agency records (matters
taken at a service point and handed over, cases a liaison officer assigned). Liaison officers see their
center's cases, the results not yet delivered with their age, and assign a full-process agent. The agent
who carries a case (or a liaison officer of its center) answers its one-time supplement notice here, the
way the applicant would online, and is named as the person who answered (R22).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from aiohttp import web

from gateway.audit import note
from gateway.auth import CARRIER_ROLES, Principal, forbid_unless, principal_of, require
from gateway.clients import optional
from gateway.i18n import field_refusal, refusal
from gateway.keys import CONFIG, clients, now, store
from gateway.views.common import (
    asked_materials,
    departments,
    form_data,
    matter,
    redirect,
    render,
    supplement_documents,
    text,
)
from onestop.common.v1 import common_pb2
from onestop.intake.v1 import convenience_pb2 as pb
from onestop.intake.v1 import intake_pb2
from onestop.routing.v1 import routing_pb2
from services.common.events import timestamp

routes = web.RouteTableDef()
AGENT, LIAISON = "agent", "liaison_officer"
DELIVERY_METHODS = ("handed_over", "posted", "picked_up")
CASE_ID = re.compile(r"^[0-9a-f-]{36}$")


def _me(request: web.Request) -> Principal:
    who = principal_of(request)
    assert who is not None  # guaranteed by @require
    return who


def _convenience(request: web.Request, who: Principal) -> bool:
    """Whether the convenience service holds this person's center's records (it runs at their own node)."""
    return who.here and clients(request).has("convenience")


async def agents_of(request: web.Request, center: str) -> list[routing_pb2.Staff]:
    """The agents of a center, by username."""
    reply = await clients(request).routing.ListStaff(
        routing_pb2.ListStaffRequest(center=center, role=AGENT), timeout=5
    )
    found = [s for s in reply.staff if any(g.role == AGENT and g.center == center for g in s.roles)]
    return sorted(found, key=lambda s: s.username)


async def agency_cases(request: web.Request, who: Principal) -> list[pb.AgentCase]:
    """The convenience service's records: an agent's own, or every agent's of a liaison officer's center."""
    if not _convenience(request, who):
        return []
    if who.role == AGENT:
        names = [who.username]
    else:
        names = [s.username for s in await agents_of(request, who.center)]
    out: list[pb.AgentCase] = []
    seen: set[str] = set()
    for name in names:
        reply = await clients(request).convenience.ListAgentCases(
            pb.ListAgentCasesRequest(agent=name), timeout=5
        )
        for row in reply.cases:
            key = row.case.case_id or row.agency.agency_id
            if key not in seen:
                seen.add(key)
                out.append(row)
    return out


async def _carried(request: web.Request, who: Principal, matches: Callable[[str, str], bool]) -> bool:
    """Whether a case the person carries (or whose center's agents carry) matches (case id, number)."""
    mine = await store(request).carried_cases(
        username=who.username if who.role == AGENT else None,
        center=None if who.role == AGENT else who.center,
    )
    if any(matches(r["case_id"], r["case_number"]) for r in mine):
        return True
    if who.role not in (AGENT, LIAISON):
        return False
    return any(matches(r.case.case_id, r.case.case_number) for r in await agency_cases(request, who))


async def carries(request: web.Request, who: Principal, number: str) -> bool:
    """Whether the person may open the case as one who carries it (or whose center's agents do)."""
    return await _carried(request, who, lambda _, n: n == number)


async def carries_case(request: web.Request, who: Principal, case_id: str) -> bool:
    """The same by case id: a case in pre-review has no number yet."""
    return await _carried(request, who, lambda i, _: i == case_id)


@routes.get("/staff/carried", name="carried")
@require(*CARRIER_ROLES)
async def carried(request: web.Request) -> web.Response:
    """Agents: the cases they carry; liaison officers and fee collectors: every case carried at their center."""
    who = _me(request)
    rows = await store(request).carried_cases(
        username=who.username if who.role == AGENT else None,
        center=None if who.role == AGENT else who.center,
    )
    out = []
    for row in rows[:100]:
        case, _ = await optional(
            clients(request).intake.GetCase(intake_pb2.GetCaseRequest(case_id=row["case_id"]), timeout=5),
            "intake",
        )
        m = await matter(request, row["matter_code"])
        out.append((row, case, m))
    agency = await agency_cases(request, who) if who.role in (AGENT, LIAISON) else []
    undelivered: list[pb.UndeliveredCase] = []
    if who.role in (AGENT, LIAISON) and _convenience(request, who):
        reply = await clients(request).convenience.ListUndelivered(pb.ListUndeliveredRequest(), timeout=5)
        undelivered = [u for u in reply.cases if who.role == LIAISON or u.full_process_agent == who.username]
    agents = await agents_of(request, who.center) if who.role == LIAISON and who.here else []
    return render(
        request,
        "staff/carried.html",
        {
            "rows": out,
            "agency": agency,
            "undelivered": undelivered,
            "agents": agents,
            "may_assign": who.role == LIAISON and _convenience(request, who),
            "convenience": _convenience(request, who),
            "delivery_methods": DELIVERY_METHODS,
            "done": request.query.get("done", ""),
        },
    )


@routes.post("/staff/carried/assign", name="assign_agent")
@require(LIAISON, here=True)
async def assign(request: web.Request) -> web.Response:
    """A liaison officer assigns a full-process agent of the center to an accepted case (R20)."""
    who = _me(request)
    data = await form_data(request)
    number = text(data, "case_number", max_len=40, required=True)
    username = text(data, "agent", max_len=64, required=True)
    note(request, case_number=number, agent=username)
    chosen = next((s for s in await agents_of(request, who.center) if s.username == username), None)
    if chosen is None:
        raise refusal(web.HTTPBadRequest, "请选择本中心的代办员", "choose an agent of this center")
    agent = common_pb2.Actor(
        username=chosen.username, display_name=chosen.display_name, role=AGENT, center=who.center
    )
    await clients(request).convenience.AssignAgent(
        pb.AssignAgentRequest(case_number=number, agent=agent, by=who.actor()), timeout=10
    )
    raise redirect("/staff/carried?done=assigned")


@routes.post("/staff/carried/deliver", name="record_delivery")
@require(AGENT, LIAISON, here=True)
async def deliver(request: web.Request) -> web.Response:
    """Record how a concluded case's result reached the resident, confirmed by the receiver now."""
    who = _me(request)
    data = await form_data(request)
    number = text(data, "case_number", max_len=40, required=True)
    method = text(data, "method", max_len=32, required=True)
    if method not in DELIVERY_METHODS:
        raise field_refusal(
            "method",
            f"{{field}}只能是 {'、'.join(DELIVERY_METHODS)}",
            f"{{field}} must be one of {', '.join(DELIVERY_METHODS)}",
        )
    note(request, case_number=number, method=method)
    if who.role == AGENT:
        forbid_unless(
            await carries(request, who, number), "You do not carry this case", zh="您不是该办件的代办员"
        )
    req = pb.RecordDeliveryRequest(
        case_number=number,
        method=method,
        receiver_name=text(data, "receiver_name", max_len=100, required=True),
        by=who.actor(),
        confirmed_at=timestamp(now(request)),
        note=text(data, "note", max_len=500),
    )
    await clients(request).convenience.RecordDelivery(req, timeout=10)
    raise redirect("/staff/carried?done=delivered")


async def _carried_case(request: web.Request, who: Principal) -> common_pb2.Case:
    """The case of the path, or 403 unless this person carries it (404 for an id that cannot be one)."""
    case_id = request.match_info["case_id"]
    if not CASE_ID.match(case_id):
        raise refusal(web.HTTPNotFound, "没有这个办件", "No such case")
    forbid_unless(
        await carries_case(request, who, case_id),
        "You do not carry this case: only its agent and the liaison officers of its center answer its notices",
        zh="您不是该办件的代办员:只有其代办员和本中心联络员可以答复它的通知",
    )
    return await clients(request).intake.GetCase(intake_pb2.GetCaseRequest(case_id=case_id), timeout=5)


@routes.get("/staff/carried/{case_id}/supplement", name="carried_supplement")
@require(AGENT, LIAISON)
async def supplement_form(request: web.Request) -> web.Response:
    """A carried case's one-time supplement notice: every item with its reason, one upload for each."""
    who = _me(request)
    case = await _carried_case(request, who)
    m = await matter(request, case.matter_code)
    return render(
        request,
        "staff/carried_supplement.html",
        {
            "case": case,
            "matter": m,
            "materials": {x.code: x for x in m.materials},
            "asked": asked_materials(case),
            "departments": await departments(request),
            "done": request.query.get("done", ""),
            "max_mb": request.app[CONFIG].max_upload_bytes // (1024 * 1024),
        },
    )


@routes.post("/staff/carried/{case_id}/supplement", name="answer_supplement")
@require(AGENT, LIAISON)
async def answer_supplement(request: web.Request) -> web.Response:
    """Send the documents the notice asks for; intake resubmits the case as for an applicant online."""
    who = _me(request)
    case = await _carried_case(request, who)
    note(request, case_number=case.case_number)
    asked = asked_materials(case)
    if case.status != common_pb2.CASE_STATUS_SUPPLEMENT_REQUESTED or not asked:
        raise refusal(
            web.HTTPConflict,
            "该办件没有待补正的通知(可能已补正)",
            "This case has no open supplement notice (it may be answered already)",
        )
    docs = await supplement_documents(request, matter_code=case.matter_code, asked=asked)
    numbered = bool(case.case_number)
    reply = await clients(request).intake.SupplementCase(
        intake_pb2.SupplementCaseRequest(case_id=case.case_id, documents=docs, by=who.actor()), timeout=15
    )
    note(
        request,
        case_number=reply.case.case_number,
        documents=[d.material_code for d in docs],
        still_missing=[i.material_code for i in reply.still_missing],
    )
    if reply.case.case_number and not numbered:  # accepted now: the portal's record learns its number
        await store(request).number_carried(case_id=case.case_id, case_number=reply.case.case_number)
    raise redirect(f"/staff/carried/{case.case_id}/supplement?done=supplemented")
