"""Heads, trackers and the management office: extensions, key projects, warnings, accountability, charts."""

from __future__ import annotations

from aiohttp import web

from gateway import charts
from gateway.audit import note
from gateway.auth import (
    EXTENSION_DECIDERS,
    SUPERVISING_ROLES,
    TRACKING_ROLES,
    Principal,
    principal_of,
    require,
)
from gateway.clients import call_or_none, optional
from gateway.i18n import refusal
from gateway.keys import clients
from gateway.views.common import departments, form_data, redirect, render, text, tr
from gateway.views.public import statistics_data
from onestop.approval.v1 import approval_pb2
from onestop.common.v1 import common_pb2
from onestop.supervision.v1 import supervision_pb2

routes = web.RouteTableDef()


def _me(request: web.Request) -> Principal:
    who = principal_of(request)
    assert who is not None  # guaranteed by @require
    return who


@routes.get("/staff/extensions", name="extensions")
@require(*EXTENSION_DECIDERS, here=True)
async def extensions(request: web.Request) -> web.Response:
    """Extension requests awaiting the head (R7): one's own department, or all for the center director."""
    who = _me(request)
    dept = "" if who.role == "center_director" else who.department
    reply = await clients(request).approval.ListExtensions(
        approval_pb2.ListExtensionsRequest(department=dept, state="requested"), timeout=5
    )
    decided = await clients(request).approval.ListExtensions(
        approval_pb2.ListExtensionsRequest(department=dept), timeout=5
    )
    return render(
        request,
        "staff/extensions.html",
        {
            "pending": list(reply.extensions),
            "decided": [e for e in decided.extensions if e.state != "requested"],
            "departments": await departments(request),
        },
    )


@routes.post("/staff/extensions/{extension_id}", name="decide_extension")
@require(*EXTENSION_DECIDERS, here=True)
async def decide_extension(request: web.Request) -> web.Response:
    """Approve or refuse an extension; the applicant is told in writing by the notification service."""
    who = _me(request)
    data = await form_data(request)
    approve = data.get("approve") == "1"
    ext_id = request.match_info["extension_id"]
    note(request, approve=approve)
    if who.role != "center_director":  # the director decides for every department of the center (R7)
        pending = await clients(request).approval.ListExtensions(
            approval_pb2.ListExtensionsRequest(department=who.department), timeout=5
        )
        ext = next((e for e in pending.extensions if e.extension_id == ext_id), None)
        if ext is None:
            raise refusal(
                web.HTTPForbidden, "该延期申请属于其他部门", "This extension belongs to another department"
            )
        note(request, case_number=ext.case_number, days=ext.days)
    await clients(request).approval.DecideExtension(
        approval_pb2.DecideExtensionRequest(
            extension_id=ext_id, approve=approve, reason=text(data, "reason", max_len=1000), by=who.actor()
        ),
        timeout=5,
    )
    raise redirect("/staff/extensions?done=decided")


@routes.get("/staff/key-projects", name="key_projects")
@require(*TRACKING_ROLES, here=True)
async def key_projects(request: web.Request) -> web.Response:
    """Key projects followed by this tracker (the office and the director see them all)."""
    who = _me(request)
    tracker = who.username if who.role == "tracker" else ""
    reply, missing = await optional(
        call_or_none(
            clients(request),
            "supervision",
            "ListKeyProjects",
            supervision_pb2.ListKeyProjectsRequest(tracker=tracker),
        ),
        "supervision",
    )
    return render(
        request,
        "staff/key_projects.html",
        {
            "clocks": reply.clocks if reply else [],
            "missing": missing,
            "departments": await departments(request),
        },
    )


@routes.get("/staff/warnings", name="warnings")
@require(*SUPERVISING_ROLES, here=True)
async def warnings(request: web.Request) -> web.Response:
    """The warning board: yellow and red lights, urged clocks and what is heading for deemed approval."""
    t = tr(request)
    reply, missing = await optional(
        call_or_none(
            clients(request),
            "supervision",
            "ListWarnings",
            supervision_pb2.ListWarningsRequest(min_level=common_pb2.CLOCK_STATE_YELLOW),
        ),
        "supervision",
    )
    rows = list(reply.warnings) if reply else []
    yellow = sum(1 for w in rows if w.level == common_pb2.CLOCK_STATE_YELLOW)
    red = sum(1 for w in rows if w.level == common_pb2.CLOCK_STATE_RED)
    urged = sum(1 for w in rows if w.clock.urged)
    board = charts.lights(
        [
            (t("黄灯", "yellow"), yellow, "yellow"),
            (t("红灯", "red"), red, "red"),
            (t("已催办", "urged"), urged, "urged"),
        ],
        title=t("预警灯", "Warning lights"),
    )
    rows.sort(key=lambda w: (-int(w.level), w.clock.due_at.seconds))
    return render(
        request,
        "staff/warnings.html",
        {"warnings": rows, "missing": missing, "board": board, "departments": await departments(request)},
    )


@routes.get("/staff/accountability", name="accountability")
@require(*SUPERVISING_ROLES, here=True)
async def accountability(request: web.Request) -> web.Response:
    """Deemed approvals and the staff responsible (R6, R22)."""
    reply, missing = await optional(
        call_or_none(
            clients(request), "supervision", "ListAccountability", supervision_pb2.ListAccountabilityRequest()
        ),
        "supervision",
    )
    return render(
        request,
        "staff/accountability.html",
        {
            "records": reply.records if reply else [],
            "missing": missing,
            "departments": await departments(request),
        },
    )


@routes.get("/staff/dashboard", name="dashboard")
@require(*SUPERVISING_ROLES, here=True)
async def dashboard(request: web.Request) -> web.Response:
    """Supervisors' charts: workload by department, on-time rates and ratings."""
    return render(request, "staff/dashboard.html", await statistics_data(request))
