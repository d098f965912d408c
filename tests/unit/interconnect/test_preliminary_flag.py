"""A preliminary review (a city reviewing before the province decides) is marked as such on its events,
so the timeline, the applicant's messages and supervision never take it for the final decision."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

import services.routing
from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from services.common.clock import ManualClock
from services.common.db import create_engine
from services.common.events import decode, kind, new_event
from services.common.outbox import Outbox, UnitOfWork
from services.intake.timeline_text import describe
from services.notification.audience import plan
from services.routing import handlers as routing_handlers
from services.routing import orm as routing_orm
from services.routing.catalogue import load_catalogue
from services.routing.handlers import RoutingContext
from services.routing.org import load_org
from tests.unit.notification.factories import BOTH, applicant, fact, templates
from tests.unit.supervision.harness import at

DATA = Path(services.routing.__file__).parent / "data"
APPROVED = common_pb2.OUTCOME_APPROVED


async def _route(tmp_path: Path, matter: str) -> events_pb2.Envelope:
    """Routing at the city (which has a parent) accepts one case of `matter`; its case_routed."""
    org = load_org(DATA / "demo_org.yaml")
    catalogue = load_catalogue(DATA / "demo_catalogue.yaml", departments=set(org.departments))
    clock = ManualClock(at(2025, 9, 22))
    ctx = RoutingContext(center="210200", clock=clock, org=org, versions={1: catalogue}, has_parent=True)
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'routing.sqlite'}")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(routing_orm.metadata.create_all)
        outbox = Outbox(routing_orm.outbox)
        env = new_event(
            center="210200",
            producer="intake",
            at=clock.now(),
            body=events_pb2.CaseAccepted(matter_code=matter, matter_version=1),
            case_id="c-1",
            case_number="210200-20250922-0001",
        )
        async with UnitOfWork(engine, outbox) as uow:
            await routing_handlers.on_case_accepted(uow, ctx, env)
            await uow.commit()
        async with engine.connect() as conn:
            payloads = (await conn.execute(select(routing_orm.outbox.c.payload))).scalars().all()
    finally:
        await engine.dispose()
    [routed] = [e for e in (decode(bytes(p)) for p in payloads) if kind(e) == "case_routed"]
    return routed


async def test_routing_marks_the_citys_review_of_a_province_matter_as_preliminary(tmp_path: Path) -> None:
    routed = await _route(tmp_path, "KP-002")
    assert routed.case_routed.preliminary_review
    zh, en, _, _ = describe(routed)
    assert zh.startswith("本中心初审") and "preliminary review here" in en


async def test_a_matter_decided_here_is_not_preliminary(tmp_path: Path) -> None:
    routed = await _route(tmp_path, "TR-001")
    assert not routed.case_routed.preliminary_review
    assert describe(routed)[0].startswith("分送部门窗口并联审批")


def _concluded(outcome: int, *, preliminary: bool) -> events_pb2.Envelope:
    body = events_pb2.CaseConcluded(outcome=outcome, preliminary_review=preliminary)  # type: ignore[arg-type]
    return new_event(center="210200", producer="approval", at=at(2025, 9, 24), body=body, case_id="c-1")


@pytest.mark.parametrize(
    ("outcome", "preliminary", "zh", "en"),
    [
        (APPROVED, True, "初审结论:准予许可", "preliminary review: approved"),
        (common_pb2.OUTCOME_REJECTED, True, "初审结论:不予许可", "preliminary review: rejected"),
        (APPROVED, False, "办结:准予许可", "concluded: approved"),
    ],
)
def test_timeline_tells_a_preliminary_review_from_the_decision(
    outcome: int, preliminary: bool, zh: str, en: str
) -> None:
    assert describe(_concluded(outcome, preliminary=preliminary))[:2] == (zh, en)


def test_applicant_is_told_the_review_passed_not_that_the_licence_is_granted() -> None:
    data = {"outcome": "OUTCOME_APPROVED", "preliminary_review": True}
    outs = plan(fact("case_concluded", data), recipient=applicant(), task=None, channels=BOTH)
    assert {o.kind for o in outs} == {"preliminary_review_passed"}
    assert not [o for o in outs if o.notice_kind]  # no decision letter, no evaluation yet
    sms = next(o for o in outs if o.channel == "sms")
    text = templates().message(kind=sms.kind, language="zh-CN", context=sms.context).sms
    assert "通过本中心初审" in text and "上报上级中心" in text
    english = templates().message(kind=sms.kind, language="en", context=sms.context).sms
    assert "preliminary review" in english
    # A refused preliminary review is the applicant's answer: the decision letter with its reasons.
    refused = {"outcome": "OUTCOME_REJECTED", "preliminary_review": True, "reasons": ["x"]}
    outs = plan(fact("case_concluded", refused), recipient=applicant(), task=None, channels=BOTH)
    assert "decision" in {o.kind for o in outs}
