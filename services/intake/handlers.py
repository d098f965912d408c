"""Intake's command and event handlers: each runs in one unit of work."""

from __future__ import annotations

import functools
import hmac
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from onestop.intake.v1 import intake_pb2
from services.common.clock import from_timestamp
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.common.events import kind, new_event
from services.common.outbox import UnitOfWork
from services.intake import federation, model, orm, repository
from services.intake.convert import to_json
from services.intake.feed import Bells
from services.intake.timeline_text import describe

CS = common_pb2
OPEN_STATUSES = {
    CS.CASE_STATUS_SUBMITTED,
    CS.CASE_STATUS_SUPPLEMENT_REQUESTED,
    CS.CASE_STATUS_ACCEPTED,
    CS.CASE_STATUS_ROUTED,
    CS.CASE_STATUS_FORWARDED,
}


@dataclass(frozen=True)
class MatterView:
    """What intake needs to know of a matter."""

    code: str
    version: int
    on_the_spot: bool
    materials: tuple[model.MaterialRule, ...]


class MatterSource(Protocol):
    """Where intake looks matters up (routing, over gRPC)."""

    async def get(self, code: str) -> MatterView: ...


@dataclass
class IntakeContext:
    """Intake's collaborators, wired in bootstrap."""

    center: str
    matters: MatterSource
    clock: Any
    bells: Bells = field(default_factory=Bells)  # wake the uploader and the result feeds (interconnect)

    def event(self, body: Any, row: dict[str, Any], **extra: Any) -> events_pb2.Envelope:
        """A new event about the case in `row`."""
        return new_event(
            center=self.center,
            producer="intake",
            at=self.clock.now(),
            body=body,
            case_id=row["case_id"],
            case_number=row["case_number"] or "",
            **extra,
        )


async def _record(uow: UnitOfWork, ctx: IntakeContext, env: events_pb2.Envelope, row: dict[str, Any]) -> None:
    uow.emit(env)
    timeline_entry(uow, env, row["case_id"])


def timeline_entry(uow: UnitOfWork, env: events_pb2.Envelope, case_id: str) -> None:
    """The case's timeline entry for `env`, written at commit."""
    zh, en, actor, department = describe(env)
    repository.add_timeline_later(
        uow,
        case_id=case_id,
        event_id=env.event_id,
        at=from_timestamp(env.occurred_at),
        kind=kind(env),
        summary_zh=zh,
        summary_en=en,
        actor=actor,
        department=department,
    )


def _submitted(docs: Any, known: dict[str, dict[str, Any]]) -> list[model.Submitted]:
    return [
        model.Submitted(
            material_code=d.material_code,
            digest=d.digest,
            content_type=known[d.digest]["content_type"] if d.digest in known else d.content_type,
            size=int(known[d.digest]["size"]) if d.digest in known else d.size,
            known=d.digest in known,
        )
        for d in docs
    ]


def _doc_rows(docs: Any, known: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for d in docs:
        stored = known.get(d.digest, {})
        rows.append(
            to_json(
                CS.Document(
                    material_code=d.material_code,
                    digest=d.digest,
                    filename=stored.get("filename", d.filename),
                    content_type=stored.get("content_type", d.content_type),
                    size=int(stored.get("size", d.size)),
                )
            )
        )
    return rows


def _validate_submission(req: intake_pb2.SubmitCaseRequest) -> None:
    if not req.matter_code:
        raise InvalidArgument("matter_code is required", field="matter_code", zh="请选择要申请的事项")
    if not req.applicant.name.strip():
        raise InvalidArgument("applicant.name is required", field="applicant.name", zh="请填写申请人姓名")
    if req.channel == CS.CHANNEL_UNSPECIFIED:
        raise InvalidArgument("channel is required", field="channel", zh="请注明申请渠道")
    if len(req.client_request_id) > 128:
        raise InvalidArgument(
            "client_request_id is longer than 128 characters",
            field="client_request_id",
            zh="请求标识 (client_request_id) 不能超过 128 个字符",
        )
    if len(req.title) > 256:
        raise InvalidArgument(
            "title is longer than 256 characters", field="title", zh="报件标题不能超过 256 个字符"
        )
    for d in req.documents:
        if len(d.digest) != 64 or any(c not in "0123456789abcdef" for c in d.digest):
            raise InvalidArgument(
                f"document digest {d.digest[:80]!r} is not a SHA-256 hex",
                field="documents.digest",
                zh="材料摘要 (digest) 不是有效的 SHA-256 十六进制值",
            )


async def prepare_submissions(uow: UnitOfWork, requests: Sequence[intake_pb2.SubmitCaseRequest]) -> None:
    """Read what a group of submissions will look up, one statement for each kind: the cases of their
    client request ids and their stored documents."""
    await repository.preload_request_ids(uow, [r.client_request_id for r in requests])
    await uow.preload(orm.documents, [d.digest for r in requests for d in r.documents])


async def submit_case(
    uow: UnitOfWork,
    ctx: IntakeContext,
    req: intake_pb2.SubmitCaseRequest,
    *,
    origin: tuple[str, str] = ("", ""),
) -> tuple[dict[str, Any], list[model.Shortfall]]:
    """Pre-review a submission and accept it when complete; a retry returns the same case.

    `origin` is (child center, child case id) for a case a child node uploaded.
    """
    _validate_submission(req)
    if req.client_request_id:
        existing = await repository.case_by_request_id(uow, req.client_request_id)
        if existing:
            if existing["matter_code"] != req.matter_code:
                raise FailedPrecondition(
                    "client_request_id was already used for another matter",
                    field="client_request_id",
                    zh="该请求标识 (client_request_id) 已用于另一事项的申请",
                )
            return existing, [model.Shortfall(**i) for i in existing["open_supplement"]]
    matter = await ctx.matters.get(req.matter_code)
    now = ctx.clock.now()
    known = await repository.stored_documents(uow, [d.digest for d in req.documents])
    row: dict[str, Any] = {
        "case_id": str(uuid.uuid4()),
        "case_number": None,
        "client_request_id": req.client_request_id or None,
        "query_code": model.new_query_code(),
        "center": ctx.center,
        "matter_code": matter.code,
        "matter_version": matter.version,
        "status": CS.CASE_STATUS_SUBMITTED,
        "outcome": 0,
        "channel": req.channel,
        "applicant": to_json(req.applicant),
        "documents": _doc_rows(req.documents, known),
        "form": dict(req.form),
        "title": req.title,
        "submitted_by": to_json(req.submitted_by),
        "submitted_at": now,
        "accepted_at": None,
        "concluded_at": None,
        "key_project": False,
        "promised_deadline": None,
        "open_supplement": [],
        "supplement_round": 0,
        "reasons": [],
        "origin_center": origin[0],
        "origin_case_id": origin[1],
        "sealed": None,
        "updated_at": now,
    }
    repository.insert_case_later(uow, row)
    await _record(
        uow,
        ctx,
        ctx.event(
            events_pb2.CaseSubmitted(
                matter_code=matter.code, channel=req.channel, submitted_by=req.submitted_by
            ),
            row,
        ),
        row,
    )
    shortfalls = model.pre_review(rules=matter.materials, submitted=_submitted(req.documents, known))
    if shortfalls:
        await _request_supplement(uow, ctx, row, shortfalls)
    else:
        await _accept(uow, ctx, row, matter, req.submitted_by)
    return row, shortfalls


async def _request_supplement(
    uow: UnitOfWork, ctx: IntakeContext, row: dict[str, Any], shortfalls: list[model.Shortfall]
) -> None:
    items = [{"material_code": s.material_code, "reason": s.reason} for s in shortfalls]
    repository.update_case_later(
        uow,
        row,
        status=CS.CASE_STATUS_SUPPLEMENT_REQUESTED,
        open_supplement=items,
        supplement_round=row["supplement_round"] + 1,
        updated_at=ctx.clock.now(),
    )
    body = events_pb2.SupplementRequested(round=row["supplement_round"])
    for item in items:
        body.items.add(**item)
    await _record(uow, ctx, ctx.event(body, row), row)
    await federation.feed_supplement(uow, ctx, row, items)


@dataclass
class _Acceptance:
    row: dict[str, Any]
    matter: MatterView
    by: common_pb2.Actor
    at: datetime
    then: Callable[[], Awaitable[None]] | None


_ACCEPTED = "intake.accepted"  # uow.memo: the acceptances waiting for their numbers


async def _accept(
    uow: UnitOfWork,
    ctx: IntakeContext,
    row: dict[str, Any],
    matter: MatterView,
    by: common_pb2.Actor,
    *,
    then: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Accept the case. Its number is drawn just before commit, with those of the transaction's other
    acceptances (one statement a day, holding the day's numbering lock only briefly), and the
    acceptance is recorded then; `then` runs after that."""
    now = ctx.clock.now()
    repository.update_case_later(
        uow, row, status=CS.CASE_STATUS_ACCEPTED, accepted_at=now, open_supplement=[], updated_at=now
    )
    waiting = uow.memo.get(_ACCEPTED)
    if waiting is None:
        waiting = uow.memo[_ACCEPTED] = []
        uow.before_commit(functools.partial(_number_accepted, uow, ctx))
    waiting.append(_Acceptance(row, matter, by, now, then))


async def _number_accepted(uow: UnitOfWork, ctx: IntakeContext, conn: AsyncConnection) -> None:
    waiting: list[_Acceptance] = uow.memo.pop(_ACCEPTED)
    by_day: dict[str, list[_Acceptance]] = {}
    for a in waiting:
        by_day.setdefault(model.numbering_day(a.at), []).append(a)
    for day in sorted(by_day):  # one order for every transaction: two cannot wait on each other
        accepted = by_day[day]
        numbers = await repository.next_sequences(conn, center=ctx.center, day=day, count=len(accepted))
        for a, seq in zip(accepted, numbers, strict=True):
            number = model.case_number(center=ctx.center, accepted_at=a.at, seq=seq)
            repository.update_case_later(uow, a.row, case_number=number)
            await _record(uow, ctx, ctx.event(_accepted_body(a), a.row), a.row)
            if a.then is not None:
                await a.then()


def _accepted_body(a: _Acceptance) -> events_pb2.CaseAccepted:
    row, matter = a.row, a.matter
    applicant = row["applicant"]
    return events_pb2.CaseAccepted(
        matter_code=matter.code,
        matter_version=matter.version,
        channel=row["channel"],
        accepted_by=a.by,
        on_the_spot=matter.on_the_spot,
        applicant_name=applicant.get("name", ""),
        applicant_phone=applicant.get("phone", ""),
        applicant_email=applicant.get("email", ""),
        applicant_language=applicant.get("language", "") or "zh-CN",
        origin_center=row["origin_center"],
        origin_case_id=row["origin_case_id"],
        title=row["title"],
        # Supervision checks the applicant's evaluation against it. An uploaded case's code is this
        # node's own and never leaves it: its applicant evaluates at the child, where they applied.
        query_code_digest=model.query_code_digest(row["query_code"]),
    )


async def supplement_case(
    uow: UnitOfWork, ctx: IntakeContext, req: intake_pb2.SupplementCaseRequest
) -> tuple[dict[str, Any], list[model.Shortfall]]:
    """Answer the open supplement notice, before acceptance (pre-review) or during review."""
    row = await _load(uow, req.case_id)
    _check_code(row, req.query_code)
    if row["status"] != CS.CASE_STATUS_SUPPLEMENT_REQUESTED:
        raise FailedPrecondition(
            f"case {row['case_number'] or row['case_id']} has no open supplement notice",
            zh=f"{_case_zh(row)}当前没有待补正的一次性告知",
        )
    if not req.documents:
        raise InvalidArgument(
            "a supplement needs at least one document", field="documents", zh="补正须提交至少一份材料"
        )
    known = await repository.known_documents(uow.conn, [d.digest for d in req.documents])
    missing = [d.digest for d in req.documents if d.digest not in known]
    if missing:
        raise FailedPrecondition(
            f"document {missing[0]} was not uploaded",
            field="documents.digest",
            zh=f"有材料尚未上传成功（材料摘要 {missing[0][:12]}…）",
        )
    docs = model.merge_documents(row["documents"], _doc_rows(req.documents, known))
    repository.update_case_later(uow, row, documents=docs, updated_at=ctx.clock.now())
    body = events_pb2.CaseSupplemented(round=row["supplement_round"], by=req.by)
    for d in req.documents:
        body.documents.add().CopyFrom(d)
    await _record(uow, ctx, ctx.event(body, row), row)
    if row["case_number"] is None:  # still in pre-review: check everything again, at once
        matter = await ctx.matters.get(row["matter_code"])
        stored = await repository.known_documents(uow.conn, [str(d["digest"]) for d in docs])
        submitted = [
            model.Submitted(
                str(d["material_code"]),
                str(d["digest"]),
                str(d.get("content_type", "")),
                int(str(d.get("size", 0))),
                str(d["digest"]) in stored,
            )
            for d in docs
        ]
        shortfalls = model.pre_review(rules=matter.materials, submitted=submitted)
        if shortfalls:
            await _request_supplement(uow, ctx, row, shortfalls)
        else:
            # an upload accepted after its UploadCase call: the child hears the number
            await _accept(
                uow, ctx, row, matter, req.by, then=functools.partial(federation.feed_accepted, uow, ctx, row)
            )
        return row, shortfalls
    status = await federation.resume_after_supplement(uow, ctx, row, list(req.documents))
    repository.update_case_later(uow, row, status=status, open_supplement=[])
    return row, []


async def withdraw_case(
    uow: UnitOfWork, ctx: IntakeContext, req: intake_pb2.WithdrawCaseRequest
) -> dict[str, Any]:
    """The applicant withdraws a case before its conclusion."""
    row = await _load(uow, req.case_id)
    _check_code(row, req.query_code)
    if row["status"] not in OPEN_STATUSES:
        raise FailedPrecondition(
            f"case {row['case_number']} is already concluded and cannot be withdrawn",
            zh=f"{_case_zh(row)}已办结，不能撤回",
        )
    now = ctx.clock.now()
    repository.update_case_later(
        uow,
        row,
        status=CS.CASE_STATUS_CONCLUDED,
        outcome=CS.OUTCOME_WITHDRAWN,
        concluded_at=now,
        updated_at=now,
        open_supplement=[],
    )
    await _record(uow, ctx, ctx.event(events_pb2.CaseWithdrawn(reason=req.reason, by=req.by), row), row)
    await federation.after_withdraw(uow, ctx, row, req.reason)
    return row


async def designate_key_project(
    uow: UnitOfWork, ctx: IntakeContext, req: intake_pb2.DesignateKeyProjectRequest
) -> dict[str, Any]:
    """An authorized department designates a case a key project with a promised deadline (R1)."""
    row = await _load(uow, req.case_id)
    if row["status"] not in OPEN_STATUSES:
        raise FailedPrecondition(
            "only an open case can become a key project", zh="只有尚未办结的报件才能列为重点项目"
        )
    if req.designated_by.role not in ("department_head", "chief_representative", "center_director"):
        raise PermissionDenied(
            "only an authorized department's head or chief representative may designate",
            zh="只有经授权部门的部门负责人或首席代表可以将报件列为重点项目",
        )
    if not req.HasField("promised_deadline"):
        raise InvalidArgument(
            "promised_deadline is required", field="promised_deadline", zh="请填写重点项目的承诺时限"
        )
    deadline = from_timestamp(req.promised_deadline)
    repository.update_case_later(uow, row, key_project=True, promised_deadline=deadline)
    body = events_pb2.KeyProjectDesignated(designated_by=req.designated_by, tracker=req.tracker)
    body.promised_deadline.CopyFrom(req.promised_deadline)
    await _record(uow, ctx, ctx.event(body, row), row)
    return row


async def _load(uow: UnitOfWork, case_id: str) -> dict[str, Any]:
    if not case_id:
        raise InvalidArgument("case_id is required", field="case_id", zh="缺少报件标识 (case_id)")
    row = await repository.load_case(uow, case_id)
    if row is None:
        raise NotFound(f"no case {case_id}", zh="未找到该报件")
    return row


def _case_zh(row: dict[str, Any]) -> str:
    """The case as a Chinese refusal names it: by its number once it has one (its id is internal)."""
    return f"报件 {row['case_number']} " if row["case_number"] else "该报件"


def _check_code(row: dict[str, Any], code: str) -> None:
    if code and not hmac.compare_digest(code.upper(), row["query_code"]):
        raise PermissionDenied("the query code does not match this case", zh="查询码与该报件不符")


async def track_case(conn: AsyncConnection, case_number: str, query_code: str) -> dict[str, Any]:
    """The applicant's lookup: number plus query code, or the same NOT_FOUND either way."""
    row = await repository.get_case(conn, case_number=case_number) if case_number else None
    if row is None or not hmac.compare_digest(query_code.strip().upper(), row["query_code"]):
        raise NotFound("no case with this number and query code", zh="未找到报件编号与查询码相符的报件")
    return row
