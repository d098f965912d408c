"""Open case pages see each fact once it is committed, and never a rolled-back one."""

from __future__ import annotations

import asyncio
from typing import Any

from services.notification.live import CaseHub, LiveUpdate, after_commit, live_update
from tests.unit.notification.factories import AT, fact


class FakeUow:
    """Stands in for UnitOfWork: only commit matters here."""

    def __init__(self) -> None:
        self.committed = False

    async def commit(self) -> None:
        self.committed = True


def _update(case: str, n: int) -> LiveUpdate:
    return LiveUpdate(case, "case_routed", f"line {n}", AT)


async def test_watchers_of_a_case_get_its_updates_and_only_its_updates() -> None:
    hub = CaseHub()
    with hub.watch("C-1") as mine, hub.watch("C-2") as other:
        assert hub.publish(_update("C-1", 1)) == 1
        assert (await asyncio.wait_for(mine.get(), 1)).summary == "line 1"
        assert other.empty()
    assert hub.watching("C-1") == 0


async def test_a_slow_page_keeps_the_newest_lines() -> None:
    hub = CaseHub(queue_size=2)
    with hub.watch("C-1") as queue:
        for n in range(1, 5):
            hub.publish(_update("C-1", n))
        assert [queue.get_nowait().summary for _ in range(2)] == ["line 3", "line 4"]


async def test_updates_wait_for_the_commit() -> None:
    uow: Any = FakeUow()
    seen: list[str] = []
    after_commit(uow, lambda: seen.append("first"))
    after_commit(uow, lambda: seen.append("second"))
    assert seen == []
    await uow.commit()
    assert uow.committed and seen == ["first", "second"]


def test_case_page_lines_follow_the_applicants_language_and_skip_non_events() -> None:
    concluded = fact("case_concluded", {"outcome": "OUTCOME_APPROVED"})
    assert live_update(concluded).summary == "已办结:准予许可"  # type: ignore[union-attr]
    assert live_update(concluded, language="en").summary == "concluded: approved"  # type: ignore[union-attr]
    assert live_update(fact("extension_decided", {"approved": False})) is None
    assert live_update(fact("case_routed", {"tasks": [{}, {}]}), language="en").summary == (  # type: ignore[union-attr]
        "sent to 2 department window(s) for parallel approval"
    )


def test_a_line_about_a_department_carries_its_code_for_the_page_to_name() -> None:
    opened = live_update(fact("task_opened", {"task": {"department": "FIRE"}}))
    decided = live_update(fact("task_decided", {"status": "TASK_STATUS_APPROVED", "department": "PLAN"}))
    assert opened is not None and (opened.summary, opened.department) == ("部门窗口已接件", "FIRE")
    assert decided is not None and (decided.summary, decided.department) == ("部门审批意见:同意", "PLAN")
    concluded = live_update(fact("case_concluded", {"outcome": "OUTCOME_APPROVED"}))
    assert concluded is not None and concluded.department == ""
    review = live_update(
        fact("parent_notice_received", {"kind": "special_procedure_started", "procedure": "expert_review"})
    )
    assert review is not None and review.summary == "上级中心启动特别程序:专家评审"
