"""Administrators: users, roles, catalogue versions, calendar (the cases agents carry: views/agency.py)."""

from __future__ import annotations

from aiohttp import web

from gateway.accounts import MIN_PASSWORD_LENGTH, new_password
from gateway.audit import note
from gateway.auth import ADMIN_ROLES, Principal, principal_of, require
from gateway.keys import PASSWORDS, clients, now, store
from gateway.views.common import centers_below, form_data, own_centers, render, text
from onestop.routing.v1 import routing_pb2
from services.common.calendar import default_calendar

routes = web.RouteTableDef()


def _me(request: web.Request) -> Principal:
    who = principal_of(request)
    assert who is not None  # guaranteed by @require
    return who


async def _staff_here(request: web.Request) -> list[routing_pb2.Staff]:
    """Staff with a role grant at this node's centers (the only ones this gateway signs in)."""
    centers = await own_centers(request)
    reply = await clients(request).routing.ListStaff(routing_pb2.ListStaffRequest(), timeout=5)
    return [s for s in reply.staff if any(g.center in centers for g in s.roles)]


async def _managed(request: web.Request, staff: list[routing_pb2.Staff]) -> list[routing_pb2.Staff]:
    """The staff an administrator manages: every grant they hold here lies at the admin's center or below."""
    # A district's administrator cannot reset the password of someone who also acts for the city.
    mine = await centers_below(request, _me(request).center)
    here = await own_centers(request)
    return [s for s in staff if all(g.center in mine for g in s.roles if g.center in here)]


async def _users_page(request: web.Request, *, shown: tuple[str, str] | None = None) -> web.Response:
    staff = await _managed(request, await _staff_here(request))
    return render(
        request,
        "staff/admin_users.html",
        {
            "staff": staff,
            "accounts": await store(request).all_accounts(),
            "now": now(request),
            "shown": shown,
            "centers": await own_centers(request),
        },
    )


@routes.get("/staff/admin/users", name="admin_users")
@require(*ADMIN_ROLES)
async def users(request: web.Request) -> web.Response:
    """Staff from routing with their role grants and the state of their gateway account."""
    return await _users_page(request)


@routes.post("/staff/admin/users/{username}/password", name="reset_password")
@require(*ADMIN_ROLES)
async def reset_password(request: web.Request) -> web.Response:
    """Create an account or reset its password (generated, shown once); signs the person out everywhere."""
    who = _me(request)
    username = request.match_info["username"]
    staff = await _staff_here(request)
    if username not in {s.username for s in staff}:
        raise web.HTTPNotFound(reason="no staff member of this center has that username")
    if username not in {s.username for s in await _managed(request, staff)}:
        raise web.HTTPForbidden(
            reason=f"{username} holds a role outside center {who.center}: not yours to manage"
        )
    chosen = text(await form_data(request), "password", max_len=256)
    if chosen and len(chosen) < MIN_PASSWORD_LENGTH:
        raise web.HTTPBadRequest(reason=f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    password = chosen or new_password()
    note(request, generated=not chosen)
    await store(request).set_password(
        username, await request.app[PASSWORDS].hash(password), now=now(request), by=who.username
    )
    await store(request).delete_sessions_of(username)
    response = await _users_page(request, shown=(username, "" if chosen else password))
    response.headers["Cache-Control"] = "no-store"
    return response


@routes.get("/staff/admin/catalogue", name="admin_catalogue")
@require(*ADMIN_ROLES)
async def catalogue(request: web.Request) -> web.Response:
    """Versions of the matter catalogue (read-only here; imports go through `onestop catalogue import`)."""
    reply = await clients(request).routing.ListCatalogueVersions(
        routing_pb2.ListCatalogueVersionsRequest(), timeout=5
    )
    return render(
        request, "staff/admin_catalogue.html", {"versions": sorted(reply.versions, key=lambda v: -v.version)}
    )


@routes.get("/staff/admin/calendar", name="admin_calendar")
@require(*ADMIN_ROLES)
async def calendar(request: web.Request) -> web.Response:
    """The working-day calendar years this gateway has loaded (read-only)."""
    cal = default_calendar()
    years = [cal.year_data(y) for y in cal.years()]
    return render(request, "staff/admin_calendar.html", {"years": years, "today": now(request)})
