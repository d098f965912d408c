"""Live case updates as server-sent events: notification.WatchCase relayed, else intake's timeline polled."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import grpc
from aiohttp import web

from gateway.clients import DEGRADED_CODES, ServiceMissing
from gateway.i18n import language_of, refusal, translator
from gateway.keys import CLOSING, clients
from gateway.labels import when
from gateway.views.citizen import tracked
from gateway.views.common import departments
from onestop.intake.v1 import intake_pb2
from onestop.notification.v1 import notification_pb2

routes = web.RouteTableDef()
PING_SECONDS = 15.0
POLL_SECONDS = 2.0
MAX_STREAM_SECONDS = 30 * 60  # the browser reconnects on its own
SUBSCRIBED = "subscribed"  # notification's first CaseUpdate of a WatchCase stream


async def _send(response: web.StreamResponse, event: str, data: dict[str, Any]) -> None:
    payload = json.dumps(data, ensure_ascii=False)
    await response.write(f"event: {event}\ndata: {payload}\n\n".encode())


async def _watch(request: web.Request, response: web.StreamResponse, number: str, deadline: float) -> bool:
    """Relay WatchCase; False when the notification service cannot serve it (then we poll)."""
    closing = request.app[CLOSING]
    try:
        call = clients(request).notification.WatchCase(notification_pb2.WatchCaseRequest(case_number=number))
    except ServiceMissing:
        return False
    read: asyncio.Future[Any] = asyncio.ensure_future(call.read())
    stop = asyncio.ensure_future(closing.wait())
    sent = False
    try:
        while time.monotonic() < deadline:
            done, _ = await asyncio.wait(
                {read, stop}, timeout=PING_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
            if stop in done:
                return True
            if read not in done:
                await response.write(b": ping\n\n")
                continue
            try:
                update = read.result()
            except grpc.aio.AioRpcError as exc:
                if exc.code() in DEGRADED_CODES or exc.code() == grpc.StatusCode.CANCELLED:
                    if sent:
                        await _send(response, "mode", {"mode": "poll"})
                    return False
                raise
            if update is grpc.aio.EOF:
                return True
            if not sent:
                await _send(response, "mode", {"mode": "watch"})
                sent = True
            if update.kind != SUBSCRIBED:  # the stream's opening handshake, not a change of the case
                summary = await _with_department(request, update.department, update.summary)
                await _send(
                    response, "update", {"kind": update.kind, "summary": summary, "at": when(update.at)}
                )
            read = asyncio.ensure_future(call.read())
        return True
    finally:
        stop.cancel()
        read.cancel()
        call.cancel()


async def _with_department(request: web.Request, code: str, summary: str) -> str:
    """A line as the case page shows it: the department's name first, when it is about one."""
    if not code:
        return summary
    try:
        names = await departments(request)
    except (grpc.aio.AioRpcError, ServiceMissing):  # routing down: the code still says which one
        names = {}
    zh, en = names.get(code, (code, code))
    return f"{translator(language_of(request))(zh, en)} · {summary}"


async def _poll(
    request: web.Request, response: web.StreamResponse, number: str, code: str, deadline: float
) -> None:
    """Poll the case's timeline and send what is new (works while notification is down)."""
    t = translator(language_of(request))
    closing = request.app[CLOSING]
    seen = int(request.query.get("seen", "0") or 0) if request.query.get("seen", "0").isdigit() else 0
    await _send(response, "mode", {"mode": "poll"})
    last_ping = time.monotonic()
    while time.monotonic() < deadline and not closing.is_set():
        reply = await clients(request).intake.TrackCase(
            intake_pb2.TrackCaseRequest(case_number=number, query_code=code), timeout=5
        )
        entries = list(reply.timeline.entries)
        for entry in entries[seen:]:
            summary = await _with_department(request, entry.department, t(entry.summary_zh, entry.summary_en))
            await _send(response, "update", {"kind": entry.kind, "summary": summary, "at": when(entry.at)})
        seen = max(seen, len(entries))
        if time.monotonic() - last_ping > PING_SECONDS:
            await response.write(b": ping\n\n")
            last_ping = time.monotonic()
        try:
            await asyncio.wait_for(closing.wait(), timeout=POLL_SECONDS)
        except TimeoutError:
            pass


@routes.get("/api/v1/cases/{number}/events", name="case_events")
async def case_events(request: web.Request) -> web.StreamResponse:
    """text/event-stream of a case this browser unlocked with its query code."""
    number = request.match_info["number"]
    code = tracked(request).get(number)
    if not code:
        raise refusal(
            web.HTTPForbidden, "请先用查询码查询该办件", "Look the case up with its query code first"
        )
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    await response.write(b"retry: 3000\n\n")
    deadline = time.monotonic() + MAX_STREAM_SECONDS
    try:
        if not await _watch(request, response, number, deadline):
            await _poll(request, response, number, code, deadline)
    except ConnectionResetError:
        pass
    except grpc.aio.AioRpcError as exc:
        try:
            await _send(response, "unavailable", {"message": exc.details() or exc.code().name})
        except ConnectionResetError:
            pass
    return response
