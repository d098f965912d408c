"""Live updates for open case pages: an in-process fan-out fed after the consumer's commit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.common import special_procedures
from services.common.outbox import UnitOfWork
from services.notification.audience import get
from services.notification.model import DEFAULT_LANGUAGE, Fact

QUEUE_SIZE = 64
_AFTER_COMMIT = "_notification_after_commit"

_OUTCOME = {
    "OUTCOME_APPROVED": ("准予许可", "approved"),
    "OUTCOME_REJECTED": ("不予许可", "rejected"),
    "OUTCOME_DEEMED_APPROVED": ("超时默许,视为准予许可", "deemed approved"),
    "OUTCOME_WITHDRAWN": ("已撤回", "withdrawn"),
}
_TASK = {
    "TASK_STATUS_APPROVED": ("同意", "approved"),
    "TASK_STATUS_REJECTED": ("不同意", "rejected"),
    "TASK_STATUS_SUPPLEMENT_REQUESTED": ("要求补正", "asked for a supplement"),
    "TASK_STATUS_DEEMED_APPROVED": ("超时默许", "deemed approved"),
}


@dataclass(frozen=True)
class LiveUpdate:
    """One line on an open case page. Carries no personal data: the page is reachable by number."""

    case_number: str
    kind: str
    summary: str
    at: datetime
    department: str = ""  # the department it is about (a code): the page names it


def _texts(fact: Fact) -> tuple[str, str] | None:
    d = fact.data
    k = fact.kind
    if k == "case_accepted":
        return f"已正式受理,报件编号 {fact.case_number}", f"accepted as {fact.case_number}"
    if k in ("supplement_requested", "supplement_round_opened"):
        n = len(get(d, "items", default=[]))
        return f"一次性告知:需补正 {n} 项材料", f"one-time supplement notice: {n} item(s) to supplement"
    if k == "case_supplemented":
        return "已补正材料", "materials supplemented"
    if k == "case_routed":
        n = len(get(d, "tasks", default=[]))
        return f"已分送 {n} 个部门窗口并联审批", f"sent to {n} department window(s) for parallel approval"
    if k == "case_forwarded":
        return "已上报上级中心审批", "forwarded to the upper-level center"
    if k == "task_opened":
        return "部门窗口已接件", "the department window received the case"
    if k == "task_decided":
        zh, en = _TASK.get(get(d, "status"), ("已处理", "handled"))
        return f"部门审批意见:{zh}", f"department decision: {en}"
    if k == "extension_decided":
        if not get(d, "approved", default=False):
            return None
        days = get(d, "days", default=0)
        return f"办理期限延长 {days} 个工作日", f"time limit extended by {days} working day(s)"
    if k == "special_procedure_started":
        zh, en = special_procedures.NAMES.get(get(d, "procedure"), ("特别程序", "special procedure"))
        days = get(d, "expected_days", default=0)
        return (
            f"启动特别程序:{zh},预计 {days} 个工作日,不计入办理期限",
            f"special procedure: {en}, expected {days} working day(s), not counted in the time limit",
        )
    if k == "task_deemed_approved":
        return "超时默许,视为同意", "deemed approved (no decision in time)"
    if k == "case_concluded":
        zh, en = _OUTCOME.get(get(d, "outcome"), ("已办结", "concluded"))
        if get(d, "preliminary_review", default=False):
            return f"初审结论:{zh}", f"preliminary review: {en}"
        return f"已办结:{zh}", f"concluded: {en}"
    if k == "case_withdrawn":
        return "申请已撤回", "application withdrawn"
    if k == "case_delivered":
        return "办理结果已送达", "result delivered"
    if k == "parent_notice_received":
        return _parent_notice_texts(d)
    if k == "parent_result_received":
        zh, en = _OUTCOME.get(get(d, "outcome"), ("已办结", "concluded"))
        return f"上级中心审批结果:{zh}", f"result from the upper-level center: {en}"
    return None


def _parent_notice_texts(d: Any) -> tuple[str, str] | None:
    what = get(d, "kind")
    if what == "extension_approved":
        days = get(d, "days", default=0)
        return (
            f"上级中心批准办理期限延长 {days} 个工作日",
            f"the upper-level center extended the time limit by {days} working day(s)",
        )
    if what in ("special_procedure_started", "special_procedure_ended"):
        zh, en = special_procedures.NAMES.get(get(d, "procedure"), ("特别程序", "special procedure"))
        if what == "special_procedure_started":
            return f"上级中心启动特别程序:{zh}", f"the upper-level center started a special procedure: {en}"
        return f"上级中心特别程序结束:{zh}", f"the upper-level center ended the special procedure: {en}"
    if what == "task_deemed_approved":
        return "上级中心超时默许,视为同意", "deemed approved at the upper-level center"
    return None


# Facts that only move the case page (the messages they cause, if any, come from audience.PLANNERS).
LIVE_ONLY = (
    "case_supplemented",
    "case_routed",
    "case_forwarded",
    "task_decided",
    "case_withdrawn",
)


def live_update(fact: Fact, *, language: str = DEFAULT_LANGUAGE) -> LiveUpdate | None:
    """The case-page line for `fact` in `language`, or None when the page need not move."""
    if not fact.case_number:
        return None
    texts = _texts(fact)
    if texts is None:
        return None
    d = fact.data
    department = get(d, "department") or get(d, "task", "department")
    summary = texts[1] if language == "en" else texts[0]
    return LiveUpdate(fact.case_number, fact.kind, summary, fact.at, str(department or ""))


class CaseHub:
    """Watchers of open case pages, per case number; a slow watcher loses its oldest lines."""

    def __init__(self, *, queue_size: int = QUEUE_SIZE) -> None:
        self._watchers: dict[str, set[asyncio.Queue[LiveUpdate]]] = {}
        self._queue_size = queue_size

    @contextlib.contextmanager
    def watch(self, case_number: str) -> Iterator[asyncio.Queue[LiveUpdate]]:
        """A queue receiving the case's updates for as long as the `with` block runs."""
        queue: asyncio.Queue[LiveUpdate] = asyncio.Queue(self._queue_size)
        self._watchers.setdefault(case_number, set()).add(queue)
        try:
            yield queue
        finally:
            watchers = self._watchers.get(case_number)
            if watchers is not None:
                watchers.discard(queue)
                if not watchers:
                    del self._watchers[case_number]

    def publish(self, update: LiveUpdate) -> int:
        """Hand `update` to every watcher of its case; the number of watchers reached."""
        watchers = self._watchers.get(update.case_number, set())
        for queue in watchers:
            if queue.full():
                # A page that stopped reading gets the newest lines; it reloads the rest anyway.
                queue.get_nowait()
            queue.put_nowait(update)
        return len(watchers)

    def watching(self, case_number: str) -> int:
        """How many pages watch the case."""
        return len(self._watchers.get(case_number, ()))


def after_commit(uow: UnitOfWork, callback: Callable[[], None]) -> None:
    """Run `callback` right after `uow` commits, never when it rolls back.

    services.common.outbox.UnitOfWork has no commit hook yet (requested as `on_commit`); until it
    has, wrap this instance's commit, so a page never shows a fact the database does not hold.
    """
    hook = getattr(uow, "on_commit", None)
    if callable(hook):
        hook(callback)
        return
    pending: list[Callable[[], None]] | None = uow.__dict__.get(_AFTER_COMMIT)
    if pending is None:
        pending = []
        uow.__dict__[_AFTER_COMMIT] = pending
        original = uow.commit
        callbacks = pending

        async def commit() -> None:
            await original()
            for cb in callbacks:
                cb()

        uow.commit = commit  # type: ignore[method-assign]
    pending.append(callback)
