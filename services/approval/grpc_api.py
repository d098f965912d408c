"""ApprovalService over gRPC."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from cryptography.hazmat.primitives import serialization

from onestop.approval.v1 import approval_pb2
from onestop.common.v1 import common_pb2
from services.approval import extensions, handlers, model, repository, special_procedures
from services.approval.convert import task_message
from services.approval.handlers import ApprovalContext
from services.common.batching import GroupCommitter
from services.common.errors import InvalidArgument, NotFound
from services.common.events import timestamp
from services.common.outbox import UnitOfWork, transact
from services.common.runtime import Runtime
from services.common.seal import key_id, public_pem, verify

OPEN_QUEUE = (model.PENDING, model.CLAIMED)
ALL_STATES = (
    model.WAITING,
    model.PENDING,
    model.CLAIMED,
    model.SUPPLEMENT,
    model.APPROVED,
    model.REJECTED,
    model.DEEMED,
    model.CANCELLED,
)


class ApprovalApi:
    """Implements onestop.approval.v1.ApprovalService."""

    def __init__(self, *, runtime: Runtime, ctx: ApprovalContext) -> None:
        self.rt = runtime
        self.ctx = ctx
        # Reads outside a unit of work run in autocommit: no BEGIN and ROLLBACK around their statements
        # (each statement sees the committed state, as it does in a READ COMMITTED transaction). The
        # window bots and the gateway poll ListQueue: this is its most frequent call.
        self.reads = runtime.engine.execution_options(isolation_level="AUTOCOMMIT")
        # Decisions arriving together commit together (the hot path: one transaction per batch), their
        # cases locked and read in two statements first.
        self.decisions = GroupCommitter(
            runtime.uow, prepare=lambda uow, task_ids: repository.load_cases(uow, task_ids=task_ids)
        )

    async def _in_uow(self, fn: Callable[[UnitOfWork], Awaitable[Any]]) -> Any:
        return await transact(self.rt.uow, fn)

    async def ListQueue(self, req: approval_pb2.ListQueueRequest, _: Any) -> approval_pb2.ListQueueResponse:
        limit = min(max(req.limit or 100, 1), 1000)
        async with self.reads.connect() as conn:
            rows = await repository.queue(
                conn,
                department=req.department,
                statuses=ALL_STATES if req.include_closed else OPEN_QUEUE,
                limit=limit,
            )
        return approval_pb2.ListQueueResponse(tasks=[task_message(r) for r in rows])

    async def ListCaseTasks(
        self, req: approval_pb2.ListCaseTasksRequest, _: Any
    ) -> approval_pb2.ListQueueResponse:
        async with self.reads.connect() as conn:
            plan = await repository.get_plan(conn, case_id=req.case_id, case_number=req.case_number)
            rows = await repository.case_tasks(conn, plan["case_id"]) if plan else []
        return approval_pb2.ListQueueResponse(tasks=[task_message(r) for r in rows])

    async def GetTask(self, req: approval_pb2.GetTaskRequest, _: Any) -> common_pb2.Task:
        async with self.reads.connect() as conn:
            return task_message(await repository.get_task(conn, req.task_id))

    async def ClaimTask(self, req: approval_pb2.ClaimTaskRequest, _: Any) -> common_pb2.Task:
        return task_message(await self._in_uow(lambda uow: handlers.claim(uow, self.ctx, req, release=False)))

    async def ReleaseTask(self, req: approval_pb2.ClaimTaskRequest, _: Any) -> common_pb2.Task:
        return task_message(await self._in_uow(lambda uow: handlers.claim(uow, self.ctx, req, release=True)))

    async def DecideTask(self, req: approval_pb2.DecideTaskRequest, _: Any) -> common_pb2.Task:
        row = await self.decisions.run(lambda uow: handlers.decide(uow, self.ctx, req), key=req.task_id)
        return task_message(row)

    async def DeemApprove(self, req: approval_pb2.DeemApproveRequest, _: Any) -> common_pb2.Task:
        return task_message(await self._in_uow(lambda uow: handlers.deem_approve(uow, self.ctx, req)))

    async def AddOpinion(self, req: approval_pb2.AddOpinionRequest, _: Any) -> common_pb2.Task:
        return task_message(await self._in_uow(lambda uow: extensions.add_opinion(uow, self.ctx, req)))

    async def ListOpinions(
        self, req: approval_pb2.ListCaseTasksRequest, _: Any
    ) -> approval_pb2.ListOpinionsResponse:
        async with self.reads.connect() as conn:
            plan = await repository.get_plan(conn, case_id=req.case_id, case_number=req.case_number)
            rows = await repository.opinions(conn, plan["case_id"]) if plan else []
        out = approval_pb2.ListOpinionsResponse()
        for row in rows:
            op = out.opinions.add(task_id=row["task_id"], text=row["text"], department=row["department"])
            op.author.CopyFrom(common_pb2.Actor(**(row["author"] or {})))
            op.at.CopyFrom(timestamp(row["at"]))
        return out

    async def RequestExtension(
        self, req: approval_pb2.RequestExtensionRequest, _: Any
    ) -> approval_pb2.Extension:
        ext = await self._in_uow(lambda uow: extensions.request_extension(uow, self.ctx, req))
        return extensions.extension_message(ext)

    async def DecideExtension(
        self, req: approval_pb2.DecideExtensionRequest, _: Any
    ) -> approval_pb2.Extension:
        ext = await self._in_uow(lambda uow: extensions.decide_extension(uow, self.ctx, req))
        return extensions.extension_message(ext)

    async def ListExtensions(
        self, req: approval_pb2.ListExtensionsRequest, _: Any
    ) -> approval_pb2.ListExtensionsResponse:
        async with self.reads.connect() as conn:
            rows = await repository.extensions(conn, department=req.department, state=req.state)
        return approval_pb2.ListExtensionsResponse(extensions=[extensions.extension_message(r) for r in rows])

    async def StartSpecialProcedure(
        self, req: approval_pb2.StartSpecialProcedureRequest, _: Any
    ) -> approval_pb2.SpecialProcedure:
        proc = await self._in_uow(lambda uow: special_procedures.start(uow, self.ctx, req))
        return special_procedures.message(proc)

    async def EndSpecialProcedure(
        self, req: approval_pb2.EndSpecialProcedureRequest, _: Any
    ) -> approval_pb2.SpecialProcedure:
        proc = await self._in_uow(lambda uow: special_procedures.end(uow, self.ctx, req))
        return special_procedures.message(proc)

    async def ListSpecialProcedures(
        self, req: approval_pb2.ListSpecialProceduresRequest, _: Any
    ) -> approval_pb2.ListSpecialProceduresResponse:
        async with self.reads.connect() as conn:
            rows = await special_procedures.listed(conn, case_number=req.case_number, task_id=req.task_id)
        return approval_pb2.ListSpecialProceduresResponse(
            procedures=[special_procedures.message(r) for r in rows]
        )

    async def GetCaseDecision(
        self, req: approval_pb2.GetCaseDecisionRequest, _: Any
    ) -> common_pb2.SealedDecision:
        if not req.case_number:
            raise InvalidArgument("case_number is required", field="case_number", zh="请填写报件编号")
        async with self.reads.connect() as conn:
            data = await repository.case_decision(conn, req.case_number)
        if data is None:
            raise NotFound(
                f"case {req.case_number} has no decision yet", zh=f"报件 {req.case_number} 尚未作出审批决定"
            )
        return common_pb2.SealedDecision.FromString(data)

    async def VerifySeal(
        self, req: approval_pb2.VerifySealRequest, _: Any
    ) -> approval_pb2.VerifySealResponse:
        valid, reason = verify(req.sealed, self.ctx.key.public_key())
        return approval_pb2.VerifySealResponse(valid=valid, reason=reason)

    async def GetSealKey(self, req: approval_pb2.GetSealKeyRequest, _: Any) -> approval_pb2.SealKey:
        public = self.ctx.key.public_key()
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return approval_pb2.SealKey(
            center=self.ctx.center, key_id=key_id(public), public_key=raw, public_key_pem=public_pem(public)
        )
