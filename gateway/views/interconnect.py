"""The link to the parent node (R14): is the result stream open, what waits to go up, what failed.

Intake answers on its internal port (`InterconnectStatus`, docs/INTERCONNECT.md §7). The director,
the management office (supervisor) and the administrator see the link; the list of cases is case data,
so the administrator (who sees no case data) gets only the link and the counts.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from gateway.auth import ADMIN_ROLES, LINK_ROLES, principal_of, require
from gateway.clients import call_or_none, optional
from gateway.keys import clients
from gateway.views.common import render, tr
from onestop.interconnect.v1 import interconnect_pb2

routes = web.RouteTableDef()
# A waiting upload older than this (or any failed one) is flagged on the page.
STALE_SECONDS = 15 * 60
LISTED = ("waiting_to_upload", "failed", "preliminary_review")


def age(seconds: float, t: Callable[[str, str], str]) -> str:
    """A duration as people read it: 45 秒 / 12 分 / 3 小时 5 分 / 2 天 4 小时."""
    s = max(0, int(seconds))
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return t(f"{days} 天 {hours} 小时", f"{days} d {hours} h")
    if hours:
        return t(f"{hours} 小时 {minutes} 分", f"{hours} h {minutes} min")
    if minutes:
        return t(f"{minutes} 分", f"{minutes} min")
    return t(f"{secs} 秒", f"{secs} s")


@routes.get("/staff/interconnect", name="interconnect")
@require(*LINK_ROLES, here=True)
async def interconnect(request: web.Request) -> web.Response:
    """The link's state and the cases waiting to upload (or failed, or in preliminary review here)."""
    who = principal_of(request)
    assert who is not None  # guaranteed by @require
    t = tr(request)
    c = clients(request)
    link, missing = await optional(
        call_or_none(c, "interconnect", "GetLink", interconnect_pb2.GetLinkRequest()), "intake"
    )
    may_list = who.role not in ADMIN_ROLES
    lists: dict[str, list[interconnect_pb2.ForwardedCase]] = {state: [] for state in LISTED}
    if link is not None and link.parent_address and may_list:
        for state in LISTED:
            reply, gone = await optional(
                call_or_none(
                    c,
                    "interconnect",
                    "ListForwarded",
                    interconnect_pb2.ListForwardedRequest(state=state, limit=200),
                ),
                "intake",
            )
            missing = missing or gone
            lists[state] = list(reply.cases) if reply else []
    stale = bool(
        link is not None
        and link.parent_address
        and (
            not link.connected
            or link.oldest_waiting_seconds > STALE_SECONDS
            or (may_list and lists["failed"])
        )
    )
    return render(
        request,
        "staff/interconnect.html",
        {
            "link": link,
            "missing": missing,
            "may_list": may_list,
            "waiting": lists["waiting_to_upload"],
            "failed": lists["failed"],
            "reviewing": lists["preliminary_review"],
            "stale": stale,
            "age": lambda seconds: age(seconds, t),
        },
    )
