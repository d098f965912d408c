"""URL map of the gateway: the citizens' portal, the JSON API and health endpoints."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web
from google.protobuf import json_format

from onestop.intake.v1 import intake_pb2
from onestop.routing.v1 import routing_pb2

CATEGORIES = {
    "business_registration": ("工商企业注册登记", "business registration"),
    "capital_construction": ("基本建设", "capital construction"),
    "foreign_investment": ("外商投资", "foreign investment"),
    "real_estate": ("房地产开发", "real-estate development"),
    "technical_renovation": ("技术改造", "technical renovation"),
    "convenience": ("便民服务", "convenience service"),
    "other": ("其他", "other"),
}


def _clients(request: web.Request) -> Any:
    from gateway.app import CLIENTS

    return request.app[CLIENTS]


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: every service of the node is SERVING."""
    ready = await _clients(request).ready()
    return web.json_response({"ready": all(ready.values()), "services": ready}, status=200 if all(ready.values()) else 503)


@aiohttp_jinja2.template("index.html")
async def index(request: web.Request) -> dict[str, Any]:
    """Service guides: search by name and category (办事指南)."""
    query = request.query.get("q", "")[:100]
    category = request.query.get("category", "")
    if category and category not in CATEGORIES:
        raise web.HTTPBadRequest(reason="unknown category")
    reply = await _clients(request).routing.ListMatters(
        routing_pb2.ListMattersRequest(query=query, category=category), timeout=5
    )
    return {"matters": reply.matters, "query": query, "category": category, "categories": CATEGORIES}


@aiohttp_jinja2.template("guide.html")
async def guide(request: web.Request) -> dict[str, Any]:
    """One matter's service guide."""
    matter = await _clients(request).routing.GetMatter(
        routing_pb2.GetMatterRequest(code=request.match_info["code"]), timeout=5
    )
    return {"matter": matter, "categories": CATEGORIES}


@aiohttp_jinja2.template("track.html")
async def track(request: web.Request) -> dict[str, Any]:
    """Track a case with its number and query code."""
    number = request.query.get("number", "").strip()[:64]
    code = request.query.get("code", "").strip()[:16]
    if not number and not code:
        return {"result": None, "number": "", "timeline": []}
    reply = await _clients(request).intake.TrackCase(
        intake_pb2.TrackCaseRequest(case_number=number, query_code=code), timeout=5
    )
    return {"result": reply.case, "number": number, "timeline": reply.timeline.entries}


async def api_matters(request: web.Request) -> web.Response:
    """GET /api/v1/matters: the catalogue as JSON."""
    reply = await _clients(request).routing.ListMatters(
        routing_pb2.ListMattersRequest(query=request.query.get("q", "")[:100]), timeout=5
    )
    return web.json_response(json_format.MessageToDict(reply, preserving_proto_field_name=True))


async def set_language(request: web.Request) -> web.Response:
    """Switch language and go back."""
    lang = request.match_info["lang"]
    if lang not in ("zh-CN", "en"):
        raise web.HTTPBadRequest(reason="unknown language")
    back = request.query.get("next", "/")
    response = web.HTTPSeeOther(back if back.startswith("/") and not back.startswith("//") else "/")
    response.set_cookie("lang", lang, max_age=365 * 86400, httponly=True, samesite="Lax")
    raise response


def setup(app: web.Application) -> None:
    """Register every route."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/", index, name="index")
    app.router.add_get("/guide/{code}", guide, name="guide")
    app.router.add_get("/track", track, name="track")
    app.router.add_get("/lang/{lang}", set_language)
    app.router.add_get("/api/v1/matters", api_matters)
