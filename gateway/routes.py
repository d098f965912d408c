"""URL map of the gateway: health, language, and the views of each audience (gateway/views/*)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.auth import local_path
from gateway.i18n import refusal
from gateway.keys import CLIENTS, CLOSING
from gateway.views import (
    admin,
    agency,
    api,
    citizen,
    console,
    documents,
    fees,
    interconnect,
    live,
    public,
    staff,
    supervise,
)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: every configured peer is SERVING; unconfigured ones are reported, not awaited."""
    services = await request.app[CLIENTS].ready()
    ready = all(state in ("SERVING", "NOT_CONFIGURED") for state in services.values())
    ready = ready and any(state == "SERVING" for state in services.values())
    return web.json_response({"ready": ready, "services": services}, status=200 if ready else 503)


async def set_language(request: web.Request) -> web.Response:
    """Switch language and go back."""
    lang = request.match_info["lang"]
    if lang not in ("zh-CN", "en"):
        raise refusal(web.HTTPBadRequest, "未知的语言", "unknown language")
    response = web.HTTPSeeOther(local_path(request.query.get("next", "/")))
    response.set_cookie(
        "lang", lang, max_age=365 * 86400, path="/", secure=True, httponly=True, samesite="Lax"
    )
    raise response


async def _closing(app: web.Application) -> None:
    app[CLOSING].set()


def setup(app: web.Application) -> None:
    """Register every route."""
    app[CLOSING] = asyncio.Event()
    app.on_shutdown.append(_closing)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/lang/{lang}", set_language, name="lang")
    for table in (
        public.routes,
        citizen.routes,
        live.routes,
        staff.routes,
        console.routes,
        documents.routes,
        supervise.routes,
        interconnect.routes,
        admin.routes,
        agency.routes,
        fees.routes,
        api.routes,
    ):
        app.router.add_routes(table)
