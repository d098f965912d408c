"""Intake's event consumer: other services' facts about a case change its status and timeline."""

from __future__ import annotations

from collections.abc import Sequence

from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from services.common.clock import from_timestamp
from services.common.errors import NotFound
from services.common.events import kind
from services.common.outbox import UnitOfWork
from services.intake import federation, repository
from services.intake.convert import to_json
from services.intake.handlers import OPEN_STATUSES, IntakeContext, timeline_entry

CS = common_pb2

_STATUS_ON = {
    "case_routed": CS.CASE_STATUS_ROUTED,
    "case_forwarded": CS.CASE_STATUS_FORWARDED,
}


async def prefetch(uow: UnitOfWork, envelopes: Sequence[events_pb2.Envelope]) -> None:
    """Read the cases a batch of events is about in one statement (with whether each has an upload to a
    parent center, which a forwarding or a conclusion asks)."""
    uploads = await repository.preload_cases(uow, [env.case_id for env in envelopes])
    federation.know_uploads(uow, uploads)


async def on_event(uow: UnitOfWork, env: events_pb2.Envelope, *, ctx: IntakeContext) -> None:
    """Apply another service's fact to the case and its timeline (and tell the child that uploaded it)."""
    what = kind(env)
    # The row as this transaction knows it: an earlier event of the batch may have changed it.
    row = await repository.load_case(uow, env.case_id)
    if row is None:
        raise NotFound(
            f"event {env.event_id} names unknown case {env.case_id}", zh="该事件所涉及的报件在本中心不存在"
        )
    now = from_timestamp(env.occurred_at)
    if what == "case_forwarded" and await federation.on_forwarded(uow, ctx, env, row):
        return
    if what == "case_concluded" and await federation.on_preliminary_concluded(uow, ctx, env, row):
        return
    if what == "evaluation_submitted":
        await federation.on_evaluated(uow, ctx, env, row)
    await federation.feed_event(uow, ctx, env, row)
    if what in _STATUS_ON and row["status"] in (CS.CASE_STATUS_ACCEPTED, CS.CASE_STATUS_ROUTED):
        repository.update_case_later(uow, row, status=_STATUS_ON[what], updated_at=now)
    elif what == "supplement_round_opened" and row["status"] in OPEN_STATUSES:
        items = [to_json(i) for i in env.supplement_round_opened.items]
        repository.update_case_later(
            uow,
            row,
            status=CS.CASE_STATUS_SUPPLEMENT_REQUESTED,
            open_supplement=items,
            supplement_round=env.supplement_round_opened.round,
            updated_at=now,
        )
    elif what == "case_concluded" and row["status"] in OPEN_STATUSES:
        body = env.case_concluded
        repository.update_case_later(
            uow,
            row,
            status=CS.CASE_STATUS_CONCLUDED,
            outcome=body.outcome,
            reasons=list(body.reasons),
            concluded_at=now,
            updated_at=now,
            sealed=body.sealed.SerializeToString().hex(),
            open_supplement=[],
        )
    timeline_entry(uow, env, row["case_id"])
