"""The event loop a process runs on: uvloop by default, the standard library's on request.

uvloop (libuv) does the socket reads and writes, timers and callbacks of the loop in C. Every service
is a loop of many small socket writes (a statement to PostgreSQL, a publish or an ack to NATS, a gRPC
frame), and on the single-node benchmark uvloop took ~8-10 % off the services' CPU per case
(docs/PERFORMANCE.md). `ONESTOP_EVENT_LOOP=asyncio` falls back to the standard loop, e.g. to rule
uvloop out while chasing a bug.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """A fresh loop of `kind` ("uvloop" or "asyncio")."""
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:  # not installed where it has no build (Windows): the standard loop
            return asyncio.new_event_loop()
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T], *, kind: str) -> T:
    """Run `main` to completion on a new loop of `kind`, like `asyncio.run`."""
    with asyncio.Runner(loop_factory=lambda: new_event_loop(kind)) as runner:
        return runner.run(main)
