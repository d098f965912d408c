"""IntakeService over gRPC: protobuf in, command handlers, protobuf out."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import grpc

from onestop.common.v1 import common_pb2
from onestop.intake.v1 import intake_pb2
from services.common.batching import GroupCommitter
from services.common.errors import InvalidArgument, NotFound
from services.common.logging import get_logger
from services.common.outbox import UnitOfWork
from services.common.runtime import Runtime
from services.intake import download, handlers, repository
from services.intake.convert import case_message, timeline_message
from services.intake.documents import MAX_DOCUMENT_BYTES, DocumentStore, safe_filename

log = get_logger(__name__)


class IntakeApi:
    """Implements onestop.intake.v1.IntakeService."""

    def __init__(self, *, runtime: Runtime, ctx: handlers.IntakeContext, store: DocumentStore) -> None:
        self.rt = runtime
        self.ctx = ctx
        self.store = store
        # Submissions arriving together commit together (one transaction, one lock of the day's numbering),
        # their lookups made for all of them at once (`_prepare`, given the batch's keys).
        self.submissions = GroupCommitter(runtime.uow, prepare=self._prepare)
        self._waiting: dict[str, intake_pb2.SubmitCaseRequest] = {}
        self._keys = itertools.count()

    async def _prepare(self, uow: UnitOfWork, keys: Sequence[str]) -> None:
        await handlers.prepare_submissions(uow, [self._waiting[k] for k in keys if k in self._waiting])

    async def SubmitCase(self, req: intake_pb2.SubmitCaseRequest, _: Any) -> intake_pb2.SubmitCaseResponse:
        key = str(next(self._keys))
        self._waiting[key] = req
        try:
            row, shortfalls = await self.submissions.run(
                lambda uow: handlers.submit_case(uow, self.ctx, req), key=key
            )
        finally:
            del self._waiting[key]
        reply = intake_pb2.SubmitCaseResponse(case=case_message(row), query_code=row["query_code"])
        for s in shortfalls:
            reply.supplement.add(material_code=s.material_code, reason=s.reason)
        return reply

    async def SupplementCase(
        self, req: intake_pb2.SupplementCaseRequest, _: Any
    ) -> intake_pb2.SupplementCaseResponse:
        async with self.rt.uow() as uow:
            row, shortfalls = await handlers.supplement_case(uow, self.ctx, req)
            await uow.commit()
        reply = intake_pb2.SupplementCaseResponse(case=case_message(row))
        for s in shortfalls:
            reply.still_missing.add(material_code=s.material_code, reason=s.reason)
        return reply

    async def GetCase(self, req: intake_pb2.GetCaseRequest, _: Any) -> common_pb2.Case:
        return case_message(await self._get(req))

    async def _get(self, req: intake_pb2.GetCaseRequest) -> dict[str, Any]:
        if not req.case_id and not req.case_number:
            raise InvalidArgument(
                "case_id or case_number is required", field="case_id", zh="请提供报件编号（或报件标识）"
            )
        async with self.rt.engine.connect() as conn:
            row = await repository.get_case(conn, case_id=req.case_id, case_number=req.case_number)
        if row is None:
            raise NotFound(
                f"no case {req.case_id or req.case_number}",
                zh="未找到该报件" if req.case_id else f"未找到报件 {req.case_number}",
            )
        return row

    async def TrackCase(self, req: intake_pb2.TrackCaseRequest, _: Any) -> intake_pb2.TrackCaseResponse:
        async with self.rt.engine.connect() as conn:
            row = await handlers.track_case(conn, req.case_number, req.query_code)
            entries = await repository.timeline(conn, row["case_id"])
        return intake_pb2.TrackCaseResponse(case=case_message(row), timeline=timeline_message(entries))

    async def GetTimeline(self, req: intake_pb2.GetCaseRequest, _: Any) -> intake_pb2.Timeline:
        row = await self._get(req)
        async with self.rt.engine.connect() as conn:
            return timeline_message(await repository.timeline(conn, row["case_id"]))

    async def WithdrawCase(self, req: intake_pb2.WithdrawCaseRequest, _: Any) -> common_pb2.Case:
        async with self.rt.uow() as uow:
            row = await handlers.withdraw_case(uow, self.ctx, req)
            await uow.commit()
        return case_message(row)

    async def DesignateKeyProject(
        self, req: intake_pb2.DesignateKeyProjectRequest, _: Any
    ) -> common_pb2.Case:
        async with self.rt.uow() as uow:
            row = await handlers.designate_key_project(uow, self.ctx, req)
            await uow.commit()
        return case_message(row)

    async def ListCases(self, req: intake_pb2.ListCasesRequest, _: Any) -> intake_pb2.ListCasesResponse:
        size = min(max(req.page.page_size or 50, 1), 500)
        try:
            offset = int(req.page.page_token or 0)
        except ValueError:
            raise InvalidArgument(
                "page_token is not valid", field="page.page_token", zh="分页标记 (page_token) 无效"
            ) from None
        async with self.rt.engine.connect() as conn:
            rows = await repository.list_cases(
                conn, status=req.status, matter_code=req.matter_code, limit=size, offset=offset
            )
        reply = intake_pb2.ListCasesResponse(cases=[case_message(r) for r in rows])
        if len(rows) == size:
            reply.next_page_token = str(offset + size)
        return reply

    async def UploadDocument(
        self, requests: AsyncIterator[intake_pb2.DocumentChunk], _: grpc.aio.ServicerContext
    ) -> common_pb2.Document:
        first: intake_pb2.DocumentChunk | None = None

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal first
            async for chunk in requests:
                if first is None:
                    first = chunk
                yield chunk.data

        it = chunks()
        head = await anext(it, None)
        if first is None or head is None:
            raise InvalidArgument(
                "an upload needs at least one chunk", field="data", zh="上传的内容为空（至少需要一个数据块）"
            )
        meta: intake_pb2.DocumentChunk = first

        async def rest() -> AsyncIterator[bytes]:
            yield head
            async for data in it:
                yield data

        digest, size = await self.store.save(
            rest(), content_type=meta.content_type, max_bytes=MAX_DOCUMENT_BYTES
        )
        name = safe_filename(meta.filename)
        async with self.rt.uow() as uow:
            await repository.add_document(
                uow.conn,
                {
                    "digest": digest,
                    "filename": name,
                    "content_type": meta.content_type,
                    "size": size,
                    "stored_at": datetime.now(UTC),
                },
            )
            await uow.commit()
        return common_pb2.Document(
            material_code=meta.material_code,
            digest=digest,
            filename=name,
            content_type=meta.content_type,
            size=size,
        )

    async def DownloadDocument(
        self, req: intake_pb2.DownloadDocumentRequest, _: Any
    ) -> AsyncIterator[intake_pb2.DocumentChunk]:
        # Intake keeps no audit chain of its own: the gateway records who opened which document.
        doc = await download.find_document(self.rt.engine, req)
        log.info(
            "document served",
            case_number=doc["case_number"],
            digest=doc["digest"],
            by=req.by.username,
            applicant=bool(req.query_code),
        )
        async for chunk in download.stream_document(self.store, doc):
            yield chunk
