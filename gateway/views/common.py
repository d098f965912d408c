"""Helpers shared by the views: rendering, form fields, cached reference data and scope checks."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from google.protobuf.timestamp_pb2 import Timestamp

from gateway.clients import call_or_none, optional
from gateway.i18n import field_refusal, language_of, refusal, translator
from gateway.keys import CACHES, CONFIG, clients, settings
from gateway.security import read_form
from gateway.uploads import documents_from_form
from onestop.common.v1 import common_pb2
from onestop.routing.v1 import routing_pb2
from services.common.calendar import CalendarError, default_calendar

MATTER_TTL = 60.0
# Control characters other than tab and line breaks (textareas keep those), and lone surrogates.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def render(
    request: web.Request, template: str, context: Mapping[str, Any], *, status: int = 200
) -> web.Response:
    """Render a template with the shared context."""
    return aiohttp_jinja2.render_template(template, request, dict(context), status=status)


def tr(request: web.Request) -> Callable[[str, str], str]:
    """t(zh, en) for the visitor's language."""
    return translator(language_of(request))


async def form_data(request: web.Request) -> Mapping[str, Any]:
    """The posted form (already parsed, and cached, by the CSRF check); 400 when it cannot be parsed."""
    return await read_form(request)


def text(data: Mapping[str, Any], name: str, *, max_len: int = 200, required: bool = False) -> str:
    """A trimmed text field, length-limited and free of control characters; 400 when required and empty."""
    value = data.get(name, "")
    value = value.strip() if isinstance(value, str) else ""
    if len(value) > max_len:
        raise field_refusal(
            name,
            f"{{field}}不能超过 {max_len} 个字符",
            f"field {{field}} is longer than {max_len} characters",
        )
    if CONTROL.search(value):
        raise field_refusal(name, "{field}含有不允许的控制字符", "field {field} contains control characters")
    if required and not value:
        raise field_refusal(name, "请填写{field}", "field {field} is required")
    return value


def lines(value: str, *, max_items: int = 20) -> list[str]:
    """Non-empty lines of a textarea."""
    return [line.strip()[:500] for line in value.splitlines() if line.strip()][:max_items]


def redirect(location: str) -> web.HTTPSeeOther:
    """303 to a local path."""
    return web.HTTPSeeOther(location)


async def matter(request: web.Request, code: str) -> routing_pb2.Matter:
    """A matter of the current catalogue, cached for a minute."""
    cache = request.app[CACHES].matters
    hit = cache.get(code)
    if hit and time.monotonic() - hit[0] < MATTER_TTL:
        return hit[1]  # type: ignore[no-any-return]
    reply = await clients(request).routing.GetMatter(routing_pb2.GetMatterRequest(code=code), timeout=5)
    cache[code] = (time.monotonic(), reply)
    return reply


def asked_materials(case: common_pb2.Case) -> list[str]:
    """The materials the open supplement notice asks for, once each (two departments may ask for the
    same one: the applicant uploads it once)."""
    return list(dict.fromkeys(i.material_code for i in case.open_supplement))


async def supplement_documents(
    request: web.Request, *, matter_code: str, asked: list[str]
) -> list[common_pb2.Document]:
    """The documents a posted form answers a supplement notice with, for the materials `asked`; every
    file is checked before the first is stored, so a refused form changes nothing. 400 when none came."""
    docs = await documents_from_form(
        clients(request),
        await form_data(request),
        matter=await matter(request, matter_code),
        materials=asked,
        ceiling=request.app[CONFIG].max_upload_bytes,
    )
    if not docs:
        raise refusal(
            web.HTTPBadRequest, "请上传补正通知所要求的材料", "Upload the documents the notice asks for"
        )
    return docs


async def departments(request: web.Request) -> dict[str, tuple[str, str]]:
    """Department names by code (cached for the process; the organisation changes rarely)."""
    cache = request.app[CACHES]
    if not cache.departments:
        reply = await clients(request).routing.ListDepartments(
            routing_pb2.ListDepartmentsRequest(), timeout=5
        )
        cache.departments = {d.code: (d.name_zh, d.name_en) for d in reply.departments}
    return cache.departments


async def center_names(request: web.Request) -> dict[str, tuple[str, str]]:
    """Center names by code, from routing's organisation (cached for the process)."""
    cache = request.app[CACHES]
    if not cache.centers:
        reply, _ = await optional(
            call_or_none(clients(request), "routing", "ListCenters", routing_pb2.ListCentersRequest()),
            "routing",
        )
        if reply is None:
            return {}  # the codes stand in until routing answers again
        cache.centers = {c.code: (c.name_zh or c.code, c.name_en or c.code) for c in reply.centers}
    return cache.centers


async def own_centers(request: web.Request) -> frozenset[str]:
    """This node's center and every center below it (service points work in their node's gateway)."""
    return await centers_below(request, settings(request).center)


async def centers_below(request: web.Request, root: str) -> frozenset[str]:
    """A center and every center below it, from routing's organisation (cached for the process)."""
    cache = request.app[CACHES].subtrees
    if root in cache:
        return cache[root]
    found = {root}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        reply = await clients(request).routing.ListCenters(
            routing_pb2.ListCentersRequest(parent=parent), timeout=5
        )
        for c in reply.centers:
            if c.code not in found:
                found.add(c.code)
                frontier.append(c.code)
    cache[root] = frozenset(found)
    return cache[root]


def online_actor(request: web.Request, name: str = "") -> common_pb2.Actor:
    """The applicant acting for themselves through the portal."""
    return common_pb2.Actor(
        username="online", display_name=name[:64], role="applicant", center=settings(request).center
    )


def remaining_days(due: Timestamp, now: datetime) -> int | None:
    """Working days left until a due time by the calendar (None when unset or beyond the loaded years)."""
    if not due.seconds:
        return None
    try:
        return default_calendar().remaining_working_days(now, due.ToDatetime(tzinfo=UTC))
    except CalendarError:
        return None


def light(days: int | None, due: Timestamp, now: datetime, threshold: int = 1) -> int:
    """A ClockState value computed locally when supervision cannot say: green, yellow or red."""
    if days is None:
        return common_pb2.CLOCK_STATE_UNSPECIFIED
    if due.seconds and due.ToDatetime(tzinfo=UTC) < now:
        return common_pb2.CLOCK_STATE_RED
    return common_pb2.CLOCK_STATE_YELLOW if days <= threshold else common_pb2.CLOCK_STATE_GREEN
