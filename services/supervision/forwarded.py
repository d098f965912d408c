"""Cases decided above this node: the deciding node runs their clocks; this node keeps their state.

Routing forwards a case whose matter is decided by the parent (`case_forwarded`). With reason
`decided_above` nothing is decided here, so no working-day clock runs here (a clock that started
anyway, e.g. from an event that overtook the forwarding, stops with cause `forwarded`). With reason
`preliminary_review` this center reviews first (R3: within the matter's preliminary days): those
clocks run here and stop when the review concludes; an approving review leaves the case `forwarded`,
not concluded. Either way the case's state stays visible (`GetClocks` answers `case_status`,
`forwarded_to`, `outcome`), and the parent's result (`parent_result_received`) concludes it here.

`forwarded_at` records when the case went up (the forwarding; for a preliminary review, its approving
conclusion): the statistics count such cases in figures of their own (stats.py), never in this node's
on-time figures. Events may come in any order, so the parent's result sets it too when nothing had.
"""

from __future__ import annotations

from typing import Any

from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from services.common.clock import from_timestamp
from services.common.outbox import UnitOfWork
from services.supervision import clocks, store
from services.supervision.clocks import SupervisionContext

# CaseForwarded.reason values (routing/forwarding.py).
DECIDED_ABOVE = "decided_above"
PRELIMINARY_REVIEW = "preliminary_review"
APPROVING = {common_pb2.OUTCOME_APPROVED, common_pb2.OUTCOME_DEEMED_APPROVED}
CLOSED = ("concluded", "withdrawn")


def decided_above(case: dict[str, Any] | None) -> bool:
    """True for a case this node only passed up: no clock of it runs here."""
    return case is not None and case.get("forward_reason") == DECIDED_ABOVE


async def on_case_forwarded(uow: UnitOfWork, ctx: SupervisionContext, env: events_pb2.Envelope) -> None:
    """Remember where the case is decided; a case decided above stops whatever clock it has here."""
    body = env.case_forwarded
    now = ctx.clock.now()
    above = (body.reason or DECIDED_ABOVE) == DECIDED_ABOVE
    at = from_timestamp(env.occurred_at)
    await store.update_case(
        uow,
        case_id=env.case_id,
        now=now,
        advance_to="forwarded" if above else "",
        forwarded_to=body.parent_center,
        forward_reason=body.reason or DECIDED_ABOVE,
        **({"forwarded_at": at} if above else {}),
    )
    if not above:
        return  # the preliminary review runs here first; its clocks start with case_routed
    for row in await store.clocks_of(uow, env.case_id, open_only=True):
        await clocks.stop(uow, ctx, row, at=at, outcome=0, cause="forwarded", event_id=env.event_id)


async def preliminary_concluded(
    uow: UnitOfWork,
    ctx: SupervisionContext,
    env: events_pb2.Envelope,
    case: dict[str, Any] | None,
) -> bool:
    """The preliminary review here ended approving: stop its clocks, the case goes up (True when handled)."""
    body = env.case_concluded
    preliminary = body.preliminary_review or (
        case is not None and case["forward_reason"] == PRELIMINARY_REVIEW
    )
    if not preliminary or body.outcome not in APPROVING:
        return False  # a refused preliminary review concludes the case here
    at = from_timestamp(env.occurred_at)
    for row in await store.clocks_of(uow, env.case_id, open_only=True):
        outcome = 0 if row["task_id"] else body.outcome
        await clocks.stop(
            uow, ctx, row, at=at, outcome=outcome, cause="preliminary_review", event_id=env.event_id
        )
    # The case went up now (also when its withdrawal or the parent's result overtook this event).
    closed = case is not None and case["status"] in CLOSED
    await store.update_case(
        uow,
        case_id=env.case_id,
        now=ctx.clock.now(),
        forward_reason=PRELIMINARY_REVIEW,
        forwarded_at=at,
        **({} if closed else {"status": "forwarded"}),
    )
    return True


async def on_parent_result_received(
    uow: UnitOfWork, ctx: SupervisionContext, env: events_pb2.Envelope
) -> None:
    """The parent decided a case this node forwarded: the case is concluded here with its outcome."""
    body = env.parent_result_received
    case = await store.case_row(uow, env.case_id)
    if case is not None and case["status"] in CLOSED:
        return
    at = from_timestamp(env.occurred_at)
    await store.update_case(
        uow,
        case_id=env.case_id,
        now=ctx.clock.now(),
        status="concluded",
        outcome=body.outcome,
        concluded_at=at,
        forwarded_to=(case or {}).get("forwarded_to") or body.parent_center,
        # It went up by now; the forwarding, when it arrives late, sets the exact instant.
        forwarded_at=(case or {}).get("forwarded_at") or at,
    )
    for row in await store.clocks_of(uow, env.case_id, open_only=True):
        await clocks.stop(uow, ctx, row, at=at, outcome=0, cause="parent_result", event_id=env.event_id)
