"""The gateway's aiohttp application: citizens' portal and staff console over the node's services."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp_jinja2
import grpc
import jinja2
from aiohttp import web

from gateway import routes
from gateway.clients import Clients
from gateway.i18n import language_of, translator
from services.common.logging import get_logger
from services.common.settings import Settings

log = get_logger(__name__)
HERE = Path(__file__).resolve().parent
SETTINGS = web.AppKey("settings", Settings)
CLIENTS = web.AppKey("clients", Clients)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_GRPC_HTTP = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Security headers on every response."""
    response = await handler(request)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


def _error_page(request: web.Request, status: int, message: str, reference: str = "") -> web.StreamResponse:
    if request.path.startswith("/api/"):
        body = {"error": {"status": status, "message": message}}
        if reference:
            body["error"]["reference"] = reference
        return web.json_response(body, status=status)
    response = aiohttp_jinja2.render_template(
        "error.html", request, {"status": status, "message": message, "reference": reference}, status=status
    )
    return response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """gRPC errors become 4xx pages with the service's reason; crashes a friendly 500 with a reference."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.status != 405 and not exc.text:
            return _error_page(request, exc.status, exc.reason)
        raise
    except grpc.aio.AioRpcError as exc:
        status = _GRPC_HTTP.get(exc.code(), 502)
        return _error_page(request, status, exc.details() or exc.code().name)
    except Exception:  # noqa: BLE001 - no stack traces to visitors
        reference = uuid.uuid4().hex[:12]
        log.exception("unhandled error in gateway", path=request.path, reference=reference)
        return _error_page(request, 500, "internal error", reference)


async def _context(request: web.Request) -> dict[str, object]:
    lang = language_of(request)
    return {"lang": lang, "t": translator(lang), "path": request.path}


def create_app(settings: Settings, *, clients: Clients | None = None) -> web.Application:
    """The gateway application; resources are opened in cleanup_ctx."""
    app = web.Application(middlewares=[security_headers, errors], client_max_size=60 * 1024 * 1024)
    app[SETTINGS] = settings
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        context_processors=[_context],
    )

    async def open_clients(app: web.Application) -> AsyncIterator[None]:
        app[CLIENTS] = clients or Clients.open(settings)
        yield
        await app[CLIENTS].close()

    app.cleanup_ctx.append(open_clients)
    app.router.add_static("/static", HERE / "static", name="static")
    routes.setup(app)
    return app
