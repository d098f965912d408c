"""The loop a process runs on follows its setting."""

from __future__ import annotations

import asyncio

import uvloop

from services.common.loop import run


async def _loop_type() -> type:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop())


def test_a_process_runs_on_uvloop_by_setting_and_on_the_standard_loop_on_request() -> None:
    assert run(_loop_type(), kind="uvloop") is uvloop.Loop
    assert not issubclass(run(_loop_type(), kind="asyncio"), uvloop.Loop)
