"""The gateway's audit chain: sign-ins and sign-outs, every staff action it forwards, every refusal.

Records go to the hash chain `gateway_audit` (services/common/audit.py) in the gateway's own database.
What is recorded, by the `trail` middleware unless a view recorded it itself:

- every state-changing request of a signed-in person on an audited route, with its outcome
  (ok, failed, error, refused), the HTTP status and the reason when it did not succeed;
- every refusal on an audited route, whoever asked: 403, 401, a sign-in demanded by a staff page, and a
  wrong case number or query code on the applicant's lookups (404);
- sign-in (success and failure, never the password) and sign-out, written by the views.

A record names who (username, or "anonymous" with the client address), the role and center of the grant
they act under, what (the action and its subject: case number, task, extension or username) and why.
Anonymous refusals are throttled per address so that nobody can flood the chain for free.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web

from gateway.auth import PRINCIPAL, REFUSED, Principal
from gateway.clients import ServiceMissing, http_status
from gateway.keys import LIMITS, NOW, STORE
from gateway.security import SAFE_METHODS, client_ip
from gateway.store import audit as audit_tables
from services.common.audit import Verdict, verify_database
from services.common.logging import get_logger

log = get_logger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ANONYMOUS = "anonymous"
AUDITED = web.RequestKey("gateway.audited", bool)  # this request already has its record
NOTES = web.RequestKey("gateway.audit_notes", dict)  # details a view adds to the record
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")

TASK_ACTIONS = {
    "claim": "claim",
    "release": "release",
    "approve": "approve",
    "reject": "reject",
    "supplement": "request_supplement",
    "opinion": "add_opinion",
    "extension": "request_extension",
    "special-procedure": "start_special_procedure",
    "end-special-procedure": "end_special_procedure",
}
ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/staff/login"): "sign_in",
    ("POST", "/staff/logout"): "sign_out",
    ("POST", "/staff/role"): "switch_role",
    ("GET", "/staff/queue"): "view_queue",
    ("GET", "/api/v1/staff/queue"): "view_queue",
    ("GET", "/staff/cases/{number}"): "view_case",
    ("GET", "/staff/cases/{number}/notices/{kind}"): "print_notice",
    ("GET", "/staff/cases/{number}/documents/{digest}"): "view_document",
    ("POST", "/staff/cases/{number}/key-project"): "designate_key_project",
    ("POST", "/staff/tasks/{task_id}/{action}"): "task",  # named by TASK_ACTIONS
    ("GET", "/staff/questions"): "view_questions",
    ("POST", "/staff/questions/{question_id}/answer"): "answer_question",
    ("GET", "/staff/extensions"): "view_extensions",
    ("POST", "/staff/extensions/{extension_id}"): "decide_extension",
    ("GET", "/staff/key-projects"): "view_key_projects",
    ("GET", "/staff/warnings"): "view_warnings",
    ("GET", "/staff/accountability"): "view_accountability",
    ("GET", "/staff/dashboard"): "view_dashboard",
    ("GET", "/api/v1/statistics"): "view_statistics",
    ("GET", "/staff/admin/users"): "view_users",
    ("POST", "/staff/admin/users/{username}/password"): "reset_password",
    ("GET", "/staff/admin/catalogue"): "view_catalogue",
    ("GET", "/staff/admin/calendar"): "view_calendar",
    ("POST", "/staff/admin/catalogue"): "import_catalogue",
    ("POST", "/staff/admin/calendar"): "load_calendar_year",
    ("GET", "/staff/carried"): "view_carried",
    ("POST", "/staff/carried/assign"): "assign_agent",
    ("POST", "/staff/carried/deliver"): "record_delivery",
    ("GET", "/staff/carried/{case_id}/supplement"): "view_supplement_notice",
    ("POST", "/staff/carried/{case_id}/supplement"): "answer_supplement",
    ("GET", "/staff/fees"): "view_fees",
    ("POST", "/staff/fees/collect"): "collect_fee",
    ("POST", "/staff/fees/refund"): "refund_fee",
    ("POST", "/staff/fees/void"): "void_fee",
    ("POST", "/staff/fees/reconcile"): "reconcile_fees",
    ("GET", "/staff/fees/report"): "view_fee_report",
    ("GET", "/staff/interconnect"): "view_interconnect",
    ("POST", "/apply/{code}"): "submit_case",
    ("POST", "/apply/{code}/supplement"): "supplement_case",
    ("POST", "/api/v1/uploads"): "upload_document",
    ("GET", "/track"): "track_case",
    ("POST", "/track"): "track_case",
    ("POST", "/api/v1/cases/lookup"): "track_case",
    ("GET", "/track/{number}"): "track_case",
    ("GET", "/track/{number}/documents/{digest}"): "download_document",
    ("POST", "/track/{number}/supplement"): "supplement_case",
    ("POST", "/track/{number}/evaluation"): "evaluate",
    ("POST", "/track/{number}/withdraw"): "withdraw_case",
    ("GET", "/api/v1/cases/{number}/events"): "watch_case",
}
# a 404 there means a wrong case number, query code or document digest
LOOKUPS = frozenset({"track_case", "download_document"})
SUBJECT_KEYS = ("number", "task_id", "extension_id", "username", "question_id", "code", "case_id")


def clean(value: object, limit: int) -> str:
    """Text safe to chain and to show: no control characters or lone surrogates, length-limited."""
    return _CONTROL.sub("?", str(value))[:limit]


def action_of(request: web.Request) -> str | None:
    """The audited action of a request, or None when its route is not audited."""
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None:
        return None
    method = "GET" if request.method == "HEAD" else request.method
    action = ROUTES.get((method, resource.canonical))
    if action == "task":
        return TASK_ACTIONS.get(info.get("action", ""), "task_action")
    return action


def note(request: web.Request, **detail: object) -> None:
    """Add details (a case number, a verdict...) to the record this request will write."""
    notes = request.get(NOTES)
    if notes is None:
        notes = request[NOTES] = {}
    notes.update(detail)


def request_id(request: web.Request) -> str:
    """The caller's X-Request-Id when it is a plain token, else a new one (ties a record to a request)."""
    sent = request.headers.get("X-Request-Id", "")
    return sent if REQUEST_ID.match(sent) else uuid.uuid4().hex[:16]


def _subject(request: web.Request) -> str:
    for key in SUBJECT_KEYS:
        if request.match_info.get(key):
            return request.match_info[key]
    return ""


async def record(
    request: web.Request,
    action: str,
    *,
    outcome: str,
    status: int = 0,
    reason: str = "",
    actor: str | None = None,
    who: Principal | None = None,
    subject: str | None = None,
    **detail: object,
) -> None:
    """Chain one record about this request; a failure to write is logged, never shown to the visitor."""
    request[AUDITED] = True
    who = who if who is not None else request.get(PRINCIPAL)
    name = actor if actor is not None else (who.username if who is not None else ANONYMOUS)
    body: dict[str, Any] = {
        "outcome": outcome,
        "status": status,
        "center": who.center if who is not None else "",
        "department": who.department if who is not None else "",
        "service_point": who.service_point if who is not None else "",
        "method": request.method,
        "path": clean(request.path, 300),
        "ip": client_ip(request),
        "request_id": request_id(request),
    }
    if reason:
        body["reason"] = clean(reason, 500)
    body.update(request.get(NOTES) or {})
    body.update(detail)
    try:
        await request.app[STORE].append_audit(
            at=request.app[NOW](),
            actor=clean(name, 128) or "?",
            role=clean(who.role if who is not None else "", 64),
            action=action,
            subject=clean(subject if subject is not None else _subject(request), 128),
            detail=body,
        )
    except Exception:  # noqa: BLE001 - the action already happened; the log must say the record is missing
        log.exception("audit record not written", action=action, actor=name, outcome=outcome)


async def _settle(request: web.Request, action: str, status: int, reason: str) -> None:
    """Write the record a finished request calls for (raises 429 for an anonymous flood of refusals)."""
    if request.get(AUDITED):
        return
    who = request.get(PRINCIPAL)
    demanded = request.get(REFUSED)
    refused = status in (401, 403) or demanded is not None or (status == 404 and action in LOOKUPS)
    if not refused and (who is None or request.method in SAFE_METHODS):
        return
    if refused and who is None and request.app[LIMITS].refusals.take(client_ip(request)) > 0:
        raise web.HTTPTooManyRequests(
            headers={"Retry-After": "5"}, reason="Too many refused requests; please wait and try again"
        )
    if refused:
        outcome = "refused"
    elif status < 400:
        outcome = "ok"
    elif status >= 500:
        outcome = "error"
    else:
        outcome = "failed"
    await record(
        request,
        action,
        outcome=outcome,
        status=status,
        reason=demanded or ("" if outcome == "ok" else reason),
    )


@web.middleware
async def trail(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record audited requests after they finish, whichever way they finish."""
    action = action_of(request)
    if action is None:
        return await handler(request)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        await _settle(request, action, exc.status, exc.reason)
        raise
    except grpc.aio.AioRpcError as exc:
        await _settle(request, action, http_status(exc.code()), exc.details() or exc.code().name)
        raise
    except ServiceMissing as exc:
        await _settle(request, action, 503, str(exc))
        raise
    except Exception:
        await _settle(request, action, 500, "internal error")
        raise
    await _settle(request, action, response.status, "")
    return response


async def verify_chain(database_url: str) -> Verdict:
    """Recompute the gateway's audit chain in its database; names the first edited or missing record."""
    return await verify_database(database_url, audit_tables)
