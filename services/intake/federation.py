"""Intake's side of multi-level interconnection, called from its handlers in the same unit of work.

Child side: a case routing decided above gets an upload operation in the forwarding outbox (held
while this center's own preliminary review runs); the applicant's supplement and withdrawal of a
forwarded case queue operations behind it. Parent side: what happens to a case a child uploaded
is appended to that child's result feed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any, cast

from google.protobuf.message import Message

from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from onestop.interconnect.v1 import interconnect_pb2
from services.common.events import kind, timestamp
from services.common.outbox import UnitOfWork
from services.intake import feed, outbound, repository
from services.intake.convert import to_json
from services.intake.timeline_text import describe

CS = common_pb2
# CaseForwarded.reason when routing wants this center's preliminary review first (routing/forwarding.py).
AFTER_PRELIMINARY_REVIEW = "preliminary_review"
OPEN = {
    CS.CASE_STATUS_SUBMITTED,
    CS.CASE_STATUS_SUPPLEMENT_REQUESTED,
    CS.CASE_STATUS_ACCEPTED,
    CS.CASE_STATUS_ROUTED,
    CS.CASE_STATUS_FORWARDED,
}
APPROVING = {CS.OUTCOME_APPROVED, CS.OUTCOME_DEEMED_APPROVED}
_ENTRY_NS = uuid.UUID("0d7c1b6e-3f7a-4a8e-9a44-5b1f2b7e9c10")


# Updates about a case decided above that the applicant must be told in writing; the parent leaves that
# to the child that uploaded the case (its notification skips applicants it did not take in).
NOTICE_KINDS = (
    "extension_approved",
    "special_procedure_started",
    "special_procedure_ended",
    "task_deemed_approved",
)


# The notice a parent's update carries: (ResultUpdate field, ParentNoticeReceived field).
NOTICE_FIELDS: tuple[tuple[str, str], ...] = (
    ("extension_days", "days"),
    ("reason", "reason"),
    ("decided_by", "decided_by"),
    ("procedure", "procedure"),
    ("expected_days", "expected_days"),
    ("procedure_result", "result"),
    ("expected_end", "expected_end"),
    ("urged_at", "urged_at"),
)


def copy_notice(upd: Message, into: Message, *, same_names: bool = False) -> None:
    """Copy the notice fields of `upd` (a ResultUpdate) into `into` (another one when `same_names`, else
    the ParentNoticeReceived event)."""
    for source, target in NOTICE_FIELDS:
        name = source if same_names else target
        if upd.DESCRIPTOR.fields_by_name[source].message_type is None:
            setattr(into, name, getattr(upd, source))
        elif upd.HasField(source):
            getattr(into, name).CopyFrom(getattr(upd, source))


def notice_details(upd: interconnect_pb2.ResultUpdate) -> interconnect_pb2.ResultUpdate:
    """The notice fields of `upd` alone (to relay them further down, unchanged)."""
    out = interconnect_pb2.ResultUpdate()
    copy_notice(upd, out, same_names=True)
    return out


_UPLOADED = "intake.has_upload"  # uow.memo: case id -> whether it has an upload operation


def know_uploads(uow: UnitOfWork, uploads: dict[str, bool]) -> None:
    """Remember which cases have an upload operation (read with them ahead of a batch), so that
    `_upload_of` need not ask for each of them: most have none."""
    uow.memo.setdefault(_UPLOADED, {}).update(uploads)


async def _upload_of(uow: UnitOfWork, case_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    if uow.memo.get(_UPLOADED, {}).get(case_id) is False:
        return None
    await outbound.flush_enqueued(uow)  # operations queued earlier in this transaction are read too
    return await outbound.upload_of(uow.conn, case_id, lock=lock)


def entry_id(*parts: object) -> str:
    """A stable timeline entry id for something that is not an event of this node."""
    return str(uuid.uuid5(_ENTRY_NS, "/".join(str(p) for p in parts)))


async def note(
    uow: UnitOfWork,
    ctx: Any,
    *,
    case_id: str,
    key: str,
    what: str,
    zh: str,
    en: str,
    actor: str = "",
    department: str = "",
) -> None:
    """Add a timeline entry (once per key)."""
    repository.add_timeline_later(
        uow,
        case_id=case_id,
        event_id=key,
        at=ctx.clock.now(),
        kind=what,
        summary_zh=zh,
        summary_en=en,
        actor=actor,
        department=department,
    )


async def feed_update(
    uow: UnitOfWork,
    ctx: Any,
    row: dict[str, Any],
    *,
    what: str,
    zh: str,
    en: str,
    outcome: int = 0,
    reasons: Iterable[str] = (),
    sealed: common_pb2.SealedDecision | None = None,
    items: Iterable[Any] = (),
    supplement_round: int = 0,
    department: str = "",
    raised_at: str = "",
    details: interconnect_pb2.ResultUpdate | None = None,
) -> None:
    """Tell the child that uploaded `row` what happened to it (nothing for a case of our own).

    `raised_at`: the center where it happened when that is not this one (an update relayed from above).
    `details`: the notice fields (see `notice_details`) of an update of the NOTICE_KINDS.
    """
    if not row["origin_center"]:
        return
    msg = interconnect_pb2.ResultUpdate()
    if details is not None:
        msg.CopyFrom(details)
    msg.MergeFrom(
        interconnect_pb2.ResultUpdate(
            child_case_id=row["origin_case_id"],
            parent_case_number=row["case_number"] or "",
            parent_case_id=row["case_id"],
            kind=what,
            outcome=cast(Any, outcome),
            reasons=list(reasons),
            supplement_round=supplement_round,
            department=department,
            parent_center=ctx.center,
            raised_at_center=raised_at or ctx.center,
            summary_zh=zh,
            summary_en=en,
        )
    )
    msg.at.CopyFrom(timestamp(ctx.clock.now()))
    if sealed is not None and sealed.ByteSize():
        msg.sealed.CopyFrom(sealed)
    for item in items:
        if isinstance(item, dict):
            msg.supplement.add(
                material_code=str(item.get("material_code", "")),
                reason=str(item.get("reason", "")),
                department=str(item.get("department", "")),
            )
        else:
            msg.supplement.add().CopyFrom(item)
    feed.append_later(uow, child_center=row["origin_center"], update_msg=msg)
    ctx.bells.feed(row["origin_center"]).ring_after(uow)


async def on_forwarded(uow: UnitOfWork, ctx: Any, env: events_pb2.Envelope, row: dict[str, Any]) -> bool:
    """Queue the upload of a case decided above; True when it first waits for the preliminary review here."""
    body = env.case_forwarded
    if await _upload_of(uow, row["case_id"]) is not None:
        return False
    held = body.reason == AFTER_PRELIMINARY_REVIEW
    outbound.enqueue_later(
        uow,
        case_id=row["case_id"],
        op=outbound.UPLOAD,
        parent_center=body.parent_center,
        state=outbound.HELD if held else outbound.PENDING,
    )
    uow.memo.get(_UPLOADED, {}).pop(row["case_id"], None)  # it has one now: read it when asked
    if not held:
        ctx.bells.uploads.ring_after(uow)
        return False
    await note(
        uow,
        ctx,
        case_id=row["case_id"],
        key=env.event_id,
        what="preliminary_review_started",
        zh=f"本中心初审，通过后上报上级中心 {body.parent_center}",
        en=f"preliminary review here, then upload to {body.parent_center}",
    )
    return True


async def on_preliminary_concluded(
    uow: UnitOfWork, ctx: Any, env: events_pb2.Envelope, row: dict[str, Any]
) -> bool:
    """This center's preliminary review ended; if it approved, the case goes up (True: the case stays open)."""
    op = await _upload_of(uow, row["case_id"], lock=True)
    if op is None or op["state"] != outbound.HELD:
        return False
    body = env.case_concluded
    now = ctx.clock.now()
    if body.outcome not in APPROVING:
        await outbound.finish(
            uow.conn, op["seq"], state=outbound.CANCELLED, error="the preliminary review refused it"
        )
        return False
    await outbound.release(
        uow.conn, op["seq"], payload={"preliminary_opinion": body.sealed.SerializeToString().hex()}
    )
    repository.update_case_later(uow, row, status=CS.CASE_STATUS_FORWARDED, updated_at=now)
    zh = f"初审通过，上报上级中心 {op['parent_center']}"
    en = f"preliminary review passed; reported to {op['parent_center']}"
    await note(
        uow, ctx, case_id=row["case_id"], key=env.event_id, what="preliminary_review_passed", zh=zh, en=en
    )
    await feed_update(uow, ctx, row, what="preliminary_review_passed", zh=zh, en=en)
    ctx.bells.uploads.ring_after(uow)
    return True


async def feed_event(uow: UnitOfWork, ctx: Any, env: events_pb2.Envelope, row: dict[str, Any]) -> None:
    """Append what the child must hear about one of its uploaded cases (`row` as before the event)."""
    if not row["origin_center"]:
        return
    what = kind(env)
    zh, en, _, department = describe(env)
    if what == "supplement_round_opened" and row["status"] in OPEN:
        opened = env.supplement_round_opened
        await feed_update(
            uow,
            ctx,
            row,
            what="supplement_requested",
            zh=zh,
            en=en,
            items=opened.items,
            supplement_round=opened.round,
        )
    elif what == "case_concluded" and row["status"] in OPEN:
        concluded = env.case_concluded
        await feed_update(
            uow,
            ctx,
            row,
            what="concluded",
            zh=zh,
            en=en,
            outcome=concluded.outcome,
            reasons=concluded.reasons,
            sealed=concluded.sealed,
        )
    elif what == "task_deemed_approved":
        details = interconnect_pb2.ResultUpdate()
        if env.task_deemed_approved.HasField("urged_at"):
            details.urged_at.CopyFrom(env.task_deemed_approved.urged_at)
        await feed_update(
            uow, ctx, row, what="task_deemed_approved", zh=zh, en=en, department=department, details=details
        )
    elif what == "extension_decided" and env.extension_decided.approved and row["status"] in OPEN:
        ext = env.extension_decided
        details = interconnect_pb2.ResultUpdate(
            extension_days=ext.days, reason=ext.reason, decided_by=ext.by.display_name or ext.by.username
        )
        await feed_update(
            uow,
            ctx,
            row,
            what="extension_approved",
            zh=zh,
            en=en,
            department=ext.by.department,
            details=details,
        )
    elif what == "special_procedure_started" and row["status"] in OPEN:
        started = env.special_procedure_started
        details = interconnect_pb2.ResultUpdate(
            procedure=started.procedure, reason=started.reason, expected_days=started.expected_days
        )
        if started.HasField("expected_end"):
            details.expected_end.CopyFrom(started.expected_end)
        await feed_update(
            uow, ctx, row, what=what, zh=zh, en=en, department=started.department, details=details
        )
    elif what == "special_procedure_ended" and row["status"] in OPEN:
        ended = env.special_procedure_ended
        details = interconnect_pb2.ResultUpdate(procedure=ended.procedure, procedure_result=ended.result)
        await feed_update(
            uow, ctx, row, what=what, zh=zh, en=en, department=ended.department, details=details
        )
    elif what == "case_forwarded":
        await feed_update(uow, ctx, row, what="forwarded", zh=zh, en=en)


async def feed_accepted(uow: UnitOfWork, ctx: Any, row: dict[str, Any]) -> None:
    """An uploaded case passed pre-review here and has its number."""
    await feed_update(
        uow,
        ctx,
        row,
        what="accepted",
        zh=f"上级中心 {ctx.center} 已受理，编号 {row['case_number']}",
        en=f"accepted by {ctx.center} as {row['case_number']}",
    )


async def feed_supplement(
    uow: UnitOfWork, ctx: Any, row: dict[str, Any], items: Sequence[dict[str, Any]]
) -> None:
    """Pre-review here found shortfalls in an uploaded case."""
    await feed_update(
        uow,
        ctx,
        row,
        what="supplement_requested",
        items=items,
        supplement_round=row["supplement_round"],
        zh="上级中心一次性告知补正：" + "; ".join(str(i.get("reason", "")) for i in items),
        en=f"the parent center asks for a supplement ({len(items)} item(s))",
    )


async def resume_after_supplement(
    uow: UnitOfWork, ctx: Any, row: dict[str, Any], documents: Sequence[common_pb2.Document]
) -> int:
    """The status a supplemented case returns to; for a case away at the parent, the answer goes up."""
    op = await _upload_of(uow, row["case_id"])
    if op is None or op["state"] in (outbound.HELD, outbound.CANCELLED):
        return CS.CASE_STATUS_ROUTED
    outbound.enqueue_later(
        uow,
        case_id=row["case_id"],
        op=outbound.SUPPLEMENT,
        parent_center=op["parent_center"],
        payload={"documents": [to_json(d) for d in documents]},
    )
    ctx.bells.uploads.ring_after(uow)
    return CS.CASE_STATUS_FORWARDED


async def after_withdraw(uow: UnitOfWork, ctx: Any, row: dict[str, Any], reason: str) -> None:
    """A withdrawn case that went (or may have gone) up is withdrawn at the parent too."""
    op = await _upload_of(uow, row["case_id"], lock=True)
    if op is None or op["state"] == outbound.CANCELLED:
        return
    if op["state"] in (outbound.HELD, outbound.FAILED):  # never reached the parent
        await outbound.finish(uow.conn, op["seq"], state=outbound.CANCELLED, error="withdrawn before upload")
        return
    outbound.enqueue_later(
        uow,
        case_id=row["case_id"],
        op=outbound.WITHDRAW,
        parent_center=op["parent_center"],
        payload={"reason": reason},
    )
    ctx.bells.uploads.ring_after(uow)


async def on_evaluated(uow: UnitOfWork, ctx: Any, env: events_pb2.Envelope, row: dict[str, Any]) -> None:
    """The applicant rated a case that went up: the rating goes up too, for the parent's windows that
    decided it (R16). A case whose upload never reached the parent keeps its rating here only."""
    op = await _upload_of(uow, row["case_id"])
    if op is None or op["state"] in (outbound.HELD, outbound.FAILED, outbound.CANCELLED):
        return
    body = env.evaluation_submitted
    outbound.enqueue_later(
        uow,
        case_id=row["case_id"],
        op=outbound.EVALUATE,
        parent_center=op["parent_center"],
        payload={
            "rating": body.rating,
            "tags": list(body.tags),
            "text": body.text,
            "follow_up": body.follow_up,
        },
    )
    ctx.bells.uploads.ring_after(uow)
