"""The gateway's aiohttp application: citizens' portal and staff console over the node's services."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import grpc
import jinja2
import yaml
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import Counter, Histogram
from yarl import URL

from gateway import labels, routes
from gateway.accounts import import_demo_accounts
from gateway.audit import trail
from gateway.auth import PRINCIPAL, Passwords, load_principal, principal_of, session_token
from gateway.clients import SERVICE_NAMES, Clients, ServiceMissing, http_status
from gateway.config import GatewayConfig, load_config
from gateway.i18n import language_of, reason_zh, refusal, service_reason_zh, translator
from gateway.keys import (
    CACHES,
    CLIENTS,
    CONFIG,
    LIMITS,
    NOW,
    OPENAPI,
    PASSWORDS,
    SETTINGS,
    SIGNER,
    STORE,
    Caches,
    Limits,
)
from gateway.security import (
    ANON_COOKIE,
    CLEAR_SESSION,
    CSRF_FIELD,
    CSRF_HEADER,
    NEW_ANON,
    SAFE_METHODS,
    SESSION_COOKIE,
    SESSION_OK,
    RateLimiter,
    Signer,
    clear_cookie,
    csrf_token,
    csrf_valid,
    read_form,
    set_cookie,
)
from gateway.store import Store
from onestop.supervision.v1 import supervision_pb2
from services.common.calendar import YearData, default_calendar
from services.common.logging import get_logger
from services.common.settings import Settings

log = get_logger(__name__)
HERE = Path(__file__).resolve().parent
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_STATUS_TEXT = {
    400: ("请求有误", "Bad request"),
    401: ("请先登录", "Please sign in"),
    403: ("无权访问", "Forbidden"),
    404: ("未找到", "Not found"),
    405: ("不支持此请求方法", "Method not allowed"),
    409: ("当前状态下不能这样操作", "Not possible in the current state"),
    413: ("文件过大", "File too large"),
    415: ("不接受的文件类型", "File type not accepted"),
    429: ("请求过于频繁，请稍后再试", "Too many requests: please wait a moment"),
    503: ("服务暂不可用", "Service temporarily unavailable"),
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Security headers on every response (streams too), and the anonymous CSRF nonce when one was made."""
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    if request.get(PRINCIPAL) is not None or request.path.startswith("/staff"):
        response.headers.setdefault("Cache-Control", "no-store")
    # Cookies were already turned into headers when this signal runs: add ours as headers.
    extra = web.Response()
    nonce = request.get(NEW_ANON)
    if nonce and ANON_COOKIE not in response.cookies:
        set_cookie(extra, ANON_COOKIE, nonce)
    if request.get(CLEAR_SESSION) and SESSION_COOKIE not in response.cookies:
        clear_cookie(extra, SESSION_COOKIE)
    for morsel in extra.cookies.values():
        response.headers.add("Set-Cookie", morsel.OutputString())


def _back_link(request: web.Request, status: int) -> str:
    """Where a refused form came from (this site only), for "go back and correct it"; else empty."""
    if request.method != "POST" or not 400 <= status < 500:
        return ""
    referer = URL(request.headers.get("Referer", ""))
    if (
        referer.host != request.url.host
        or referer.port != request.url.port
        or not referer.path.startswith("/")
    ):
        return ""
    return str(referer.relative())


def _error_page(
    request: web.Request, status: int, message: str, reference: str = "", *, message_zh: str = ""
) -> web.StreamResponse:
    """The error page (JSON under /api/): on zh-CN pages a refusal with a Chinese text shows it first,
    its English original beneath."""
    if request.path.startswith("/api/"):
        body: dict[str, object] = {"status": status, "message": message}
        if reference:
            body["reference"] = reference
        return web.json_response({"error": body}, status=status)
    zh, en = _STATUS_TEXT.get(status, ("出错了", "Something went wrong"))
    return aiohttp_jinja2.render_template(
        "error.html",
        request,
        {
            **base_context(request),
            "status": status,
            "title_zh": zh,
            "title_en": en,
            "message": message,
            "message_zh": message_zh if language_of(request) != "en" else "",
            "reference": reference,
            "back": _back_link(request, status),
        },
        status=status,
    )


REQUESTS = Counter("onestop_http_requests_total", "HTTP requests answered", ["route", "status"])
LATENCY = Histogram("onestop_http_seconds", "HTTP handling time", ["route"])


@web.middleware
async def metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every request by its route pattern (never by raw path: case numbers stay out)."""
    route = getattr(getattr(request.match_info, "route", None), "resource", None)
    name = route.canonical if route is not None else "unmatched"
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        LATENCY.labels(name).observe(time.perf_counter() - started)
        REQUESTS.labels(name, str(status)).inc()


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """gRPC errors become 4xx pages with the service's reason; crashes a friendly 500 with a reference."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            response = _error_page(request, exc.status, exc.reason, message_zh=reason_zh(exc))
            for name in ("Retry-After", "WWW-Authenticate", "Allow"):
                if name in exc.headers:
                    response.headers[name] = exc.headers[name]
            return response
        raise
    except grpc.aio.AioRpcError as exc:
        status = http_status(exc.code())
        if status < 500:  # a service's reason for refusing is meant for the person who asked
            return _error_page(
                request, status, exc.details() or exc.code().name, message_zh=service_reason_zh(exc)
            )
        # Transport details (addresses, peers) are for the log, not for visitors.
        reference = uuid.uuid4().hex[:12]
        log.warning(
            "service call failed",
            path=request.path,
            code=exc.code().name,
            details=exc.details(),
            reference=reference,
        )
        t = translator(language_of(request))
        return _error_page(
            request,
            status,
            t("后台服务暂时无法响应,请稍后再试", "A service did not answer; try again in a moment"),
            reference,
        )
    except HttpProcessingError as exc:  # a body the parser refused: the client's fault, not ours
        return _error_page(request, 400, exc.message or "The request could not be read")
    except ServiceMissing as exc:
        zh, en = SERVICE_NAMES.get(exc.service, (exc.service, exc.service))
        t = translator(language_of(request))
        return _error_page(
            request, 503, t(f"{zh}暂不可用，请稍后再试", f"The {en} service is unavailable; try later")
        )
    except Exception:  # noqa: BLE001 - no stack traces to visitors
        reference = uuid.uuid4().hex[:12]
        log.exception("unhandled error in gateway", path=request.path, reference=reference)
        return _error_page(request, 500, "internal error", reference)


@web.middleware
async def session(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Load the signed-in person from the server-side session; a dead cookie is cleared."""
    token = session_token(request)
    if token:
        who = await load_principal(
            request.app[STORE],
            request.app[CONFIG],
            token,
            request.app[NOW](),
            node=request.app[SETTINGS].center,
        )
        if who is None:
            request[CLEAR_SESSION] = True
        else:
            request[PRINCIPAL] = who
            request[SESSION_OK] = True
    return await handler(request)


@web.middleware
async def csrf(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every state-changing request carries the token bound to the session (or the anonymous nonce)."""
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await read_form(request)
            value = form.get(CSRF_FIELD, "")
            sent = value if isinstance(value, str) else ""
        if not csrf_valid(request, request.app[SIGNER], sent):
            raise refusal(
                web.HTTPForbidden,
                "表单已过期,或不是从本站提交的;请刷新页面后重试",
                "The form has expired or was not sent from this site; reload and retry",
            )
    return await handler(request)


async def _context(request: web.Request) -> dict[str, object]:
    return base_context(request)


def base_context(request: web.Request) -> dict[str, object]:
    """What every template may use: language, translator, the signed-in person, the CSRF token."""
    lang = language_of(request)
    who = principal_of(request)
    return {
        "lang": lang,
        "t": translator(lang),
        "path": request.path,
        "path_qs": request.path_qs,
        "who": who,
        "csrf_token": csrf_token(request, request.app[SIGNER]),
        "center": request.app[SETTINGS].center,
        "calendar_missing": request.app[CACHES].calendar_missing if who else (),
        **labels.GLOBALS,
    }


class AccessLogger(AbstractAccessLogger):
    """One structured line per request, without the query string (it may carry a query code)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """Log method, path, status and duration (probes are not logged)."""
        if request.path in ("/healthz", "/readyz"):
            return
        log.info(
            "http", method=request.method, path=request.path, status=response.status, ms=round(time * 1000, 1)
        )


CALENDAR_WATCH_S = 30.0


async def calendar_watch(app: web.Application, *, interval: float = CALENDAR_WATCH_S) -> None:
    """Follow supervision's calendar: the years an administrator loaded there (so this gateway's working-day
    figures use them, after a restart too) and the years clocks need but nobody loaded (shown to staff)."""
    while True:
        clients = app[CLIENTS]
        if clients.has("supervision"):
            try:
                status = await clients.stubs["supervision"].GetCalendarStatus(
                    supervision_pb2.GetCalendarStatusRequest(), timeout=5
                )
                app[CACHES].calendar_missing = tuple(status.missing_years)
                add_loaded_years(status.loaded_years)
            except Exception as exc:  # noqa: BLE001 - supervision down or older: keep what we knew
                log.debug("calendar status unavailable", error=str(exc))
        await asyncio.sleep(interval)


def add_loaded_years(years: Any) -> None:
    """Add the years supervision keeps to this process's calendar where they differ from what it has."""
    cal = default_calendar()
    for y in years:
        data = YearData.build(y.year, holidays=dict(y.holidays), workdays=list(y.workdays), source=y.source)
        cal.add_year_if_changed(data)


def create_app(
    settings: Settings,
    *,
    clients: Clients | None = None,
    config: GatewayConfig | None = None,
    now: Callable[[], datetime] | None = None,
    passwords: Passwords | None = None,
) -> web.Application:
    """The gateway application; the store and the channels are opened in cleanup_ctx."""
    config = config or load_config(settings)
    app = web.Application(
        middlewares=[metrics, errors, session, trail, csrf],
        client_max_size=config.max_upload_bytes + 1024 * 1024,
    )
    app[SETTINGS] = settings
    app[CONFIG] = config
    app[NOW] = now or (lambda: datetime.now(UTC))
    app[SIGNER] = Signer(config.secret)
    app[PASSWORDS] = passwords or Passwords()
    app[CACHES] = Caches()
    app[LIMITS] = Limits(
        sign_in=RateLimiter(config.sign_in_rate),
        lookup=RateLimiter(config.lookup_rate),
        question=RateLimiter(config.question_rate),
        upload=RateLimiter(config.upload_rate),
        refusals=RateLimiter(config.refusal_rate),
    )
    app[OPENAPI] = yaml.safe_load((HERE / "openapi.yaml").read_text(encoding="utf-8"))
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        context_processors=[_context],
        undefined=jinja2.StrictUndefined if settings.env == "test" else jinja2.Undefined,
    )
    env.filters.update(labels.FILTERS)
    app.on_response_prepare.append(_on_prepare)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        app[STORE] = await Store.open(config.database_url)
        app[CLIENTS] = clients or Clients.open(settings)
        if config.demo_accounts_file:
            await import_demo_accounts(
                app[STORE], app[PASSWORDS], Path(config.demo_accounts_file), app[NOW]()
            )
        await app[STORE].purge_sessions(now=app[NOW]())
        watch = asyncio.create_task(calendar_watch(app))
        yield
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
        await app[CLIENTS].close()
        await app[STORE].close()

    app.cleanup_ctx.append(resources)
    app.router.add_static("/static", HERE / "static", name="static", append_version=False)
    routes.setup(app)
    return app
