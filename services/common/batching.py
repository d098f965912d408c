"""Group commit: concurrent commands share one transaction, with a serial fallback that keeps each
command's outcome exactly what it would have been alone.

While a batch is running, new commands queue; when it ends, everything queued runs as the next batch
in one unit of work (one BEGIN, one audit-chain append, one outbox insert, one COMMIT and fsync). If any
command of a batch fails, the whole batch rolls back and each of its commands runs again in its own
transaction (`transact`), so a bad command never takes the others down and every caller gets its own
result or error. Commands must keep every effect inside the unit of work (events, audit records and
after-commit callbacks are), which is what makes the rollback and replay safe.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from services.common.logging import get_logger
from services.common.outbox import UnitOfWork, transact

log = get_logger(__name__)

Command = Callable[[UnitOfWork], Awaitable[Any]]
# Called first in a batch's transaction with the batch's keys, e.g. to take its locks in one fixed order
# (two batches then cannot deadlock on each other).
Prepare = Callable[[UnitOfWork, Sequence[str]], Awaitable[None]]


class GroupCommitter:
    """Runs commands in shared transactions, one batch at a time."""

    def __init__(
        self, make_uow: Callable[[], UnitOfWork], *, prepare: Prepare | None = None, max_batch: int = 64
    ) -> None:
        self._make_uow = make_uow
        self._prepare = prepare
        self._max_batch = max_batch
        self._queue: list[tuple[Command, str, asyncio.Future[Any]]] = []
        self._runner: asyncio.Task[None] | None = None
        self.batches = 0
        self.fallbacks = 0

    async def run(self, fn: Command, *, key: str = "") -> Any:
        """Run `fn` in a (shared) unit of work that commits; its result, or the error it raised alone."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((fn, key, future))
        if self._runner is None:
            self._runner = asyncio.create_task(self._drain(), name="group-commit")
        # A cancelled caller does not cancel the batch: its command may still commit (as a command whose
        # reply was lost would), and the others in the batch are not disturbed.
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        batch: list[tuple[Command, str, asyncio.Future[Any]]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
                await self._run_batch(batch)
        except asyncio.CancelledError:  # shutting down: no caller may wait forever
            for _, _, future in [*batch, *self._queue]:
                future.cancel()
            self._queue = []
            raise
        finally:
            self._runner = None

    async def _run_batch(self, batch: list[tuple[Command, str, asyncio.Future[Any]]]) -> None:
        if len(batch) > 1:
            try:
                results = await self._together(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - replayed one by one, where each error is its own
                self.fallbacks += 1
                log.debug("batch failed; running its commands one by one", size=len(batch), error=repr(exc))
            else:
                self.batches += 1
                for (_, _, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
                return
        for fn, _, future in batch:
            try:
                result = await transact(self._make_uow, fn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - handed to the caller
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(result)

    async def _together(self, batch: list[tuple[Command, str, asyncio.Future[Any]]]) -> list[Any]:
        async with self._make_uow() as uow:
            if self._prepare is not None:
                await self._prepare(uow, sorted({key for _, key, _ in batch if key}))
            results = [await fn(uow) for fn, _, _ in batch]
            await uow.commit()
        return results
