"""Deemed approval (超时默许, R6): the call to approval and the accountability it leaves behind."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import grpc

from onestop.approval.v1 import approval_pb2, approval_pb2_grpc
from onestop.common.v1 import common_pb2
from services.common.logging import get_logger
from services.common.outbox import UnitOfWork
from services.common.rpc import insecure_channel
from services.supervision import repository, store
from services.supervision.clocks import SupervisionContext

log = get_logger(__name__)
MANAGEMENT_OFFICE = "management_office"
CALL_TIMEOUT_S = 10.0
PARALLEL_CALLS = 8


class DeemRefused(Exception):
    """Approval says there is nothing to deem (already decided, extended or unknown): the reason is kept."""


class GrpcApproval:
    """Calls ApprovalService.DeemApprove as the management office; the channel opens on first use."""

    def __init__(self, address: str) -> None:
        self._address = address
        self._stub: approval_pb2_grpc.ApprovalServiceStub | None = None

    async def deem_approve(self, task_id: str) -> bool:
        """True once approval has sealed the task as deemed approved; DeemRefused when it will not."""
        if self._stub is None:
            self._stub = approval_pb2_grpc.ApprovalServiceStub(insecure_channel(self._address))
        request = approval_pb2.DeemApproveRequest(
            task_id=task_id, by=common_pb2.Actor(username=MANAGEMENT_OFFICE, role="supervisor")
        )
        try:
            await self._stub.DeemApprove(request, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
                raise DeemRefused(f"{exc.code().name}: {exc.details()}") from None
            raise
        return True


def responsible_staff(row: dict[str, Any]) -> list[str]:
    """Who held the task: every claimant seen, else the window's chief representative (R15, R22)."""
    staff = [s for s in row["claimants"] or [] if s]
    if row["decided_by"] and row["decided_by"] not in staff:
        staff.append(row["decided_by"])
    return staff or [f"chief representative of window {row['window'] or row['department']}"]


async def settle(
    uow: UnitOfWork, ctx: SupervisionContext, row: dict[str, Any], *, deemed: bool, note: str, at: datetime
) -> bool:
    """Settle a task's pending deemed approval; accountability when deemed. False if already settled."""
    record = await repository.get_deemed(uow.conn, row["task_id"])
    if record is None:
        return False
    state = "deemed" if deemed else "refused"
    if not await repository.settle_deemed(
        uow.conn, row["task_id"], state=state, note=note[:500], deemed_at=at if deemed else None
    ):
        return False
    if deemed:
        await repository.add_accountability(
            uow.conn,
            {
                "task_id": row["task_id"],
                "case_number": row["case_number"],
                "department": row["department"],
                "window": row["window"],
                "staff": responsible_staff(row),
                "due_at": row["due_at"],
                "urged_at": row["urged_at"],
                "deemed_at": at,
            },
        )
    row.update(deem_state=state, next_action_at=None, updated_at=ctx.clock.now())
    store.save_clock(uow, row)
    log.info(
        "deemed approval settled",
        case_number=row["case_number"],
        task_id=row["task_id"],
        state=state,
        note=note,
    )
    return True


async def _ask(ctx: SupervisionContext, sem: asyncio.Semaphore, task_id: str) -> tuple[str, str]:
    async with sem:
        try:
            ok = await ctx.approval.deem_approve(task_id)
        except DeemRefused as exc:
            return "refused", str(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any other failure is retried by a later tick
            return "failed", repr(exc)
    if ok:
        return "deemed", "sealed by approval as deemed approved"
    return "refused", "approval refused: the task was already decided or extended"


async def call_approval(
    ctx: SupervisionContext, uow: Callable[[], UnitOfWork], rows: Sequence[dict[str, Any]]
) -> int:
    """Ask approval to deem each claimed task, outside any transaction; settle the answers. Deemed count."""
    if not rows:
        return 0
    sem = asyncio.Semaphore(PARALLEL_CALLS)
    answers = await asyncio.gather(*(_ask(ctx, sem, r["task_id"]) for r in rows))
    now = ctx.clock.now()
    async with uow() as work:
        for row, (outcome, note) in zip(rows, answers, strict=True):
            if outcome == "failed":
                log.warning("deemed approval call failed; will retry", task_id=row["task_id"], error=note)
                await repository.note_deem_attempt(work.conn, row["task_id"], note=note)
                continue
            fresh = await store.clock_row(work, row["clock_id"])
            if fresh is not None:
                await settle(work, ctx, fresh, deemed=outcome == "deemed", note=note, at=now)
        await work.commit()
    return sum(1 for outcome, _ in answers if outcome == "deemed")
