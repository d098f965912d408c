"""python -m services.fakesms --port P --log FILE: a fake HTTP SMS gateway that records what it gets.

POST / (or /send) {"to": phone, "text": ...} → 200 and one JSON line in the log; while "down"
(POST /control {"mode": "down"}, or before --fail-until) → 503; numbers marked blocked → 400.
GET /messages lists what was received. Demo and test use only.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web


@dataclass
class Gateway:
    """The fake gateway's state: what it received and whether it is up."""

    log_path: Path | None
    fail_until: float = 0.0
    down: bool = False
    blocked: set[str] = field(default_factory=set)
    messages: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0

    def is_down(self) -> bool:
        """Down by switch or until the configured instant."""
        return self.down or time.time() < self.fail_until

    def record(self, entry: dict[str, Any]) -> None:
        """Keep a message in memory and append it to the log as one JSON line."""
        self.messages.append(entry)
        if self.log_path is not None:
            with self.log_path.open("a", encoding="utf-8") as log:
                log.write(json.dumps(entry, ensure_ascii=False) + "\n")


GATEWAY = web.AppKey("gateway", Gateway)


async def send(request: web.Request) -> web.Response:
    """Accept one message, unless down (503) or malformed/blocked (400)."""
    gw = request.app[GATEWAY]
    if gw.is_down():
        gw.refused += 1
        return web.json_response({"error": "gateway temporarily unavailable"}, status=503)
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": "body is not JSON"}, status=400)
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("to"), str)
        or not isinstance(body.get("text"), str)
    ):
        return web.json_response({"error": 'expected {"to": str, "text": str}'}, status=400)
    if body["to"] in gw.blocked:
        return web.json_response({"error": "number unreachable"}, status=400)
    entry = {
        "seq": len(gw.messages) + 1,
        "received_at": time.time(),
        "to": body["to"],
        "text": body["text"],
        "id": str(body.get("id", "")),
        "idempotency_key": request.headers.get("Idempotency-Key", ""),
    }
    gw.record(entry)
    return web.json_response({"ok": True, "seq": entry["seq"]})


async def control(request: web.Request) -> web.Response:
    """Switch the gateway: {"mode": "down"|"up", "blocked": [numbers]}."""
    gw = request.app[GATEWAY]
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": "body is not JSON"}, status=400)
    if not isinstance(body, dict):
        return web.json_response({"error": "expected a JSON object"}, status=400)
    mode = body.get("mode")
    if mode not in (None, "down", "up"):
        return web.json_response({"error": "mode must be down or up"}, status=400)
    if mode is not None:
        gw.down = mode == "down"
        gw.fail_until = 0.0 if mode == "up" else gw.fail_until
    if "blocked" in body:
        gw.blocked = {str(n) for n in body["blocked"]}
    return web.json_response({"down": gw.is_down(), "blocked": sorted(gw.blocked)})


async def messages(request: web.Request) -> web.Response:
    """Everything received so far, plus how many requests were refused while down."""
    gw = request.app[GATEWAY]
    return web.json_response({"messages": gw.messages, "refused": gw.refused, "down": gw.is_down()})


async def healthz(_: web.Request) -> web.Response:
    """Liveness for scripts that wait for the process."""
    return web.Response(text="ok")


def create_app(gateway: Gateway) -> web.Application:
    """The aiohttp application around `gateway`."""
    app = web.Application()
    app[GATEWAY] = gateway
    app.router.add_post("/", send)
    app.router.add_post("/send", send)
    app.router.add_post("/control", control)
    app.router.add_get("/messages", messages)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    """Parse arguments and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m services.fakesms", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, default=None, help="append each accepted message as a JSON line")
    parser.add_argument("--fail-until", type=float, default=0.0, help="answer 503 until this unix time")
    args = parser.parse_args()
    gateway = Gateway(log_path=args.log, fail_until=args.fail_until)
    web.run_app(create_app(gateway), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
