"""Administrators: users, roles, catalogue versions, calendar (the cases agents carry: views/agency.py)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.accounts import MIN_PASSWORD_LENGTH, new_password
from gateway.audit import note
from gateway.auth import ADMIN_ROLES, Principal, principal_of, require
from gateway.i18n import refusal
from gateway.keys import CACHES, PASSWORDS, clients, now, store
from gateway.views.common import centers_below, form_data, own_centers, render, text
from onestop.routing.v1 import routing_pb2
from onestop.supervision.v1 import supervision_pb2
from services.common.calendar import CalendarDataError, default_calendar, parse_year_json

routes = web.RouteTableDef()
MAX_CATALOGUE_BYTES = 2 * 1024 * 1024  # within routing's 4 MiB ceiling for an import
MAX_CALENDAR_BYTES = 64 * 1024


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
        raise refusal(
            web.HTTPNotFound,
            "本中心没有使用该用户名的工作人员",
            "no staff member of this center has that username",
        )
    if username not in {s.username for s in await _managed(request, staff)}:
        raise web.HTTPForbidden(
            reason=f"{username} holds a role outside center {who.center}: not yours to manage"
        )
    chosen = text(await form_data(request), "password", max_len=256)
    if chosen and len(chosen) < MIN_PASSWORD_LENGTH:
        raise refusal(
            web.HTTPBadRequest,
            f"密码至少需要 {MIN_PASSWORD_LENGTH} 个字符",
            f"a password needs at least {MIN_PASSWORD_LENGTH} characters",
        )
    password = chosen or new_password()
    note(request, generated=not chosen)
    await store(request).set_password(
        username, await request.app[PASSWORDS].hash(password), now=now(request), by=who.username
    )
    await store(request).delete_sessions_of(username)
    response = await _users_page(request, shown=(username, "" if chosen else password))
    response.headers["Cache-Control"] = "no-store"
    return response


async def _catalogue_page(
    request: web.Request, imported: routing_pb2.CatalogueVersion | None = None
) -> web.Response:
    reply = await clients(request).routing.ListCatalogueVersions(
        routing_pb2.ListCatalogueVersionsRequest(), timeout=5
    )
    return render(
        request,
        "staff/admin_catalogue.html",
        {"versions": sorted(reply.versions, key=lambda v: -v.version), "imported": imported},
    )


def _uploaded(data: Mapping[str, Any], *, limit: int, suffixes: tuple[str, ...]) -> tuple[str, str]:
    """(file name, UTF-8 text) of the form's `file`; 400 with the reason when it is missing or unfit."""
    field = data.get("file")
    if not isinstance(field, web.FileField):
        raise refusal(web.HTTPBadRequest, "请选择要上传的文件", "choose a file to upload")
    name = Path(field.filename or "").name[:100]
    if not name.lower().endswith(suffixes):
        raise refusal(
            web.HTTPBadRequest,
            f"文件名须以 {' 或 '.join(suffixes)} 结尾",
            f"the file must end with {' or '.join(suffixes)}",
        )
    raw = field.file.read(limit + 1)
    if len(raw) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(raw))
    try:
        return name, raw.decode("utf-8")
    except UnicodeDecodeError:
        raise refusal(web.HTTPBadRequest, f"{name} 不是 UTF-8 文本", f"{name} is not UTF-8 text") from None


@routes.get("/staff/admin/catalogue", name="admin_catalogue")
@require(*ADMIN_ROLES)
async def catalogue(request: web.Request) -> web.Response:
    """Versions of the matter catalogue, and a form to import the next one."""
    return await _catalogue_page(request)


@routes.post("/staff/admin/catalogue", name="import_catalogue")
@require(*ADMIN_ROLES, here=True)
async def import_catalogue(request: web.Request) -> web.Response:
    """Import an uploaded catalogue file as the next version (validated by routing; errors name the field)."""
    name, content = _uploaded(await form_data(request), limit=MAX_CATALOGUE_BYTES, suffixes=(".yaml", ".yml"))
    version = await clients(request).routing.ImportCatalogue(
        routing_pb2.ImportCatalogueRequest(
            content=content.encode(), source=name, changed_by=_me(request).username
        ),
        timeout=30,
    )
    request.app[CACHES].matters.clear()  # pages show the new version at once
    note(request, version=version.version, changed=list(version.changed))
    return await _catalogue_page(request, imported=version)


async def _calendar_page(request: web.Request, loaded: list[tuple[int, int]] | None = None) -> web.Response:
    cal = default_calendar()
    years = [cal.year_data(y) for y in cal.years()]
    return render(
        request, "staff/admin_calendar.html", {"years": years, "today": now(request), "loaded": loaded}
    )


@routes.get("/staff/admin/calendar", name="admin_calendar")
@require(*ADMIN_ROLES)
async def calendar(request: web.Request) -> web.Response:
    """The working-day calendar years loaded, and a form to load a newly published year."""
    return await _calendar_page(request)


@routes.post("/staff/admin/calendar", name="load_calendar")
@require(*ADMIN_ROLES, here=True)
async def load_calendar(request: web.Request) -> web.Response:
    """Load a published year (JSON, services/common/calendar_data/README.md): supervision recomputes clocks."""
    who = _me(request)
    name, content = _uploaded(await form_data(request), limit=MAX_CALENDAR_BYTES, suffixes=(".json",))
    try:
        years = parse_year_json(content, source=name)
    except CalendarDataError as exc:
        raise web.HTTPBadRequest(reason=str(exc)) from None
    loaded = []
    for year in years:
        reply = await clients(request).supervision.LoadCalendarYear(
            supervision_pb2.LoadCalendarYearRequest(
                year=year.year,
                holidays={d.isoformat(): label for d, label in year.holidays.items()},
                workdays=sorted(d.isoformat() for d in year.workdays),
                source=f"{name}, uploaded by {who.username}",
                by=who.actor(),
            ),
            timeout=60,
        )
        default_calendar().add_year(year)  # this gateway's own working-day figures follow at once
        loaded.append((year.year, reply.moved_clocks))
    note(request, years=[y for y, _ in loaded])
    return await _calendar_page(request, loaded=loaded)
