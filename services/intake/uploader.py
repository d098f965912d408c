"""The child's link to its parent node and the uploader that drains the forwarding outbox over it.

Every operation is retried with exponential backoff until the parent answers; the parent makes
each one idempotent (UploadCase on the child case id, the others on an operation id), so a case
is delivered exactly once however often the link fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from onestop.common.v1 import common_pb2
from onestop.interconnect.v1 import interconnect_pb2, interconnect_pb2_grpc
from services.common.batching import GroupCommitter
from services.common.clock import aware
from services.common.events import timestamp
from services.common.logging import get_logger
from services.common.outbox import UnitOfWork
from services.common.runtime import Runtime
from services.common.tls import TlsFiles, secure_channel
from services.intake import federation, outbound
from services.intake.documents import DocumentNotStored, DocumentStore

log = get_logger(__name__)
M = TypeVar("M", bound=Message)
CHUNK_BYTES = 256 * 1024
CONCURRENCY = 32
REFILL = 8  # free delivery slots worth a query of the forwarding outbox
KNOWN_DIGESTS = 100_000  # documents the parent confirmed holding (forms shared by many cases)
IDLE_POLL_S = 0.5
PERMANENT = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNIMPLEMENTED,
}


class MissingDocument(RuntimeError):
    """A document of the case is not in this node's store: a retry cannot help."""


class RetryLater(RuntimeError):
    """The parent has not got everything yet: try again after the backoff."""


class ParentLink:
    """The mTLS channel to the parent, rebuilt when the certificate files are rotated."""

    def __init__(
        self, *, address: str, files: TlsFiles, resolve_parent: Callable[[], Awaitable[str]]
    ) -> None:
        self.address = address
        self.files = files
        self.parent_center = ""
        self.connected = False
        self.last_error = ""
        self._resolve = resolve_parent
        self._channel: grpc.aio.Channel | None = None
        self._stub: interconnect_pb2_grpc.InterconnectStub | None = None
        self._stamp: tuple[float, ...] = ()

    async def ready(self) -> str:
        """The parent's center code (asked of routing's organisation, retried until it answers)."""
        delay = 0.2
        while not self.parent_center:
            try:
                self.parent_center = await self._resolve()
            except Exception as exc:  # noqa: BLE001 - routing may start after us
                self.last_error = f"parent center unknown: {exc}"
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        return self.parent_center

    def stub(self) -> interconnect_pb2_grpc.InterconnectStub:
        """A stub on the current channel (a new one after the certificates changed)."""
        stamp = self.files.stamp()
        if self._stub is None or stamp != self._stamp:
            old = self._channel
            self._channel = secure_channel(self.address, self.files, server_center=self.parent_center)
            self._stub = interconnect_pb2_grpc.InterconnectStub(self._channel)
            self._stamp = stamp
            if old is not None:
                asyncio.get_running_loop().call_later(30.0, lambda: asyncio.ensure_future(old.close()))
        return self._stub


_SCALARS = {FieldDescriptor.CPPTYPE_STRING, FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_INT64}
_INTEGERS = {FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_INT64}


def flat_message(cls: type[M], stored: dict[str, Any] | None) -> M:
    """A message of strings, integers and enums back from its stored JSON form (`to_json`: int64 as a
    string, an enum by name), unknown keys ignored; as `json_format.ParseDict` reads it, at a fraction of
    its cost. Anything else (a nested message, a list) goes to `ParseDict`."""
    fields = cls.DESCRIPTOR.fields_by_name
    values: dict[str, Any] = {}
    for name, value in (stored or {}).items():
        field = fields.get(name)
        if field is None:
            continue
        enum = field.enum_type
        if (
            (field.cpp_type not in _SCALARS and enum is None)
            or isinstance(value, (dict, list))
            or (enum is not None and isinstance(value, str) and value not in enum.values_by_name)
        ):
            return json_format.ParseDict(stored or {}, cls(), ignore_unknown_fields=True)
        if enum is not None:
            values[name] = enum.values_by_name[value].number if isinstance(value, str) else int(value)
        elif field.cpp_type in _INTEGERS:
            values[name] = int(value)
        else:
            values[name] = value
    return cls(**values)


def _documents(items: Any) -> list[common_pb2.Document]:
    return [flat_message(common_pb2.Document, d) for d in items or []]


class Uploader:
    """Delivers due operations of the forwarding outbox, many at a time, in order within each case."""

    def __init__(self, *, runtime: Runtime, ctx: Any, link: ParentLink, store: DocumentStore) -> None:
        self.rt = runtime
        self.ctx = ctx
        self.link = link
        self.store = store
        self.delivered = 0
        self._parent_has: dict[str, None] = {}
        self._finishes = GroupCommitter(runtime.uow)

    async def run(self) -> None:
        """Deliver forever."""
        await self.link.ready()
        bell = self.ctx.bells.uploads
        inflight: dict[int, asyncio.Task[None]] = {}

        def done(seq: int) -> Callable[[asyncio.Task[None]], None]:
            def callback(_: asyncio.Task[None]) -> None:
                inflight.pop(seq, None)
                bell.ring_now()

            return callback

        delay = IDLE_POLL_S
        while True:
            free = CONCURRENCY - len(inflight)
            try:
                # Ask again once a few slots are free, not after every single delivery.
                ops, cases = (
                    await outbound.due(self.rt.engine, limit=free, exclude=set(inflight))
                    if free >= REFILL
                    else ([], {})
                )
                delay = IDLE_POLL_S
            except Exception as exc:  # noqa: BLE001 - the database is away: the outbox waits for it
                log.warning("forwarding outbox unreadable; will retry", error=repr(exc), retry_in=delay)
                ops, cases, delay = [], {}, min(delay * 2, 10.0)
                await asyncio.sleep(delay)
            for op in ops:
                task = asyncio.create_task(self._deliver(op, cases.get(op.case_id)), name=f"deliver-{op.seq}")
                inflight[op.seq] = task
                task.add_done_callback(done(op.seq))
            await bell.wait(IDLE_POLL_S)

    async def _deliver(self, op: outbound.Operation, case: dict[str, Any] | None) -> None:
        try:
            await self._attempt(op, case)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - not even the failure could be recorded; the row is still pending
            log.warning(
                "forwarding attempt not recorded; it will be retried",
                op=op.op,
                case_id=op.case_id,
                error=repr(exc),
            )

    async def _attempt(self, op: outbound.Operation, case: dict[str, Any] | None) -> None:
        try:
            stub = self.link.stub()
            if op.op == outbound.UPLOAD:
                await self._upload(stub, op, case)
            elif op.op == outbound.SUPPLEMENT:
                await self._supplement(stub, op)
            elif op.op == outbound.EVALUATE:
                await self._evaluate(stub, op)
            else:
                await self._withdraw(stub, op)
            self.delivered += 1
        except grpc.aio.AioRpcError as exc:
            error = f"{exc.code().name}: {exc.details()}"
            self.link.last_error = error
            log.info(
                "forwarding attempt failed",
                op=op.op,
                case_id=op.case_id,
                attempts=op.attempts + 1,
                error=error,
            )
            await outbound.retry_later(self.rt.engine, op, error=error, permanent=exc.code() in PERMANENT)
        except (MissingDocument, RetryLater) as exc:
            await outbound.retry_later(
                self.rt.engine, op, error=str(exc), permanent=isinstance(exc, MissingDocument)
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - kept in the outbox and retried
            log.warning("forwarding attempt crashed", op=op.op, case_id=op.case_id, error=repr(exc))
            await outbound.retry_later(self.rt.engine, op, error=repr(exc), permanent=False)

    async def _send_documents(self, stub: Any, docs: list[common_pb2.Document], *, resume: bool) -> None:
        for doc in {d.digest: d for d in docs}.values():
            if doc.digest in self._parent_has:
                continue
            size = await self.store.size(doc.digest)
            if size is None:
                raise MissingDocument(f"document {doc.digest} is not stored at this center")
            offset = 0
            if resume:  # a retry: ask what the parent already holds and go on from there
                status = await stub.GetDocumentStatus(
                    interconnect_pb2.GetDocumentStatusRequest(digest=doc.digest), timeout=10
                )
                if status.complete:
                    self._remember(doc.digest)
                    continue
                offset = status.received
            status = await stub.UploadDocument(
                _chunks(self.store, doc, offset, size), timeout=60 + size / 1_000_000
            )
            if not status.complete:
                raise RetryLater(
                    f"document {doc.digest} incomplete at the parent ({status.received}/{size} bytes)"
                )
            self._remember(doc.digest)

    def _remember(self, digest: str) -> None:
        if len(self._parent_has) >= KNOWN_DIGESTS:
            self._parent_has.pop(next(iter(self._parent_has)))
        self._parent_has[digest] = None

    async def _upload(self, stub: Any, op: outbound.Operation, row: dict[str, Any] | None) -> None:
        if row is None:
            raise MissingDocument(f"case {op.case_id} is gone")
        docs = _documents(row["documents"])
        await self._send_documents(stub, docs, resume=op.attempts > 0)
        req = interconnect_pb2.UploadCaseRequest(
            child_case_id=row["case_id"],
            child_case_number=row["case_number"] or "",
            matter_code=row["matter_code"],
            applicant=flat_message(common_pb2.Applicant, row["applicant"]),
            documents=docs,
            title=row["title"] or "",
            form=dict(row["form"] or {}),
            preliminary_reviewer=flat_message(common_pb2.Actor, row["submitted_by"]),
        )
        accepted = aware(row["accepted_at"])
        if accepted is not None:
            req.accepted_at_child.CopyFrom(timestamp(accepted))
        if op.payload.get("preliminary_opinion"):
            req.preliminary_opinion.ParseFromString(bytes.fromhex(op.payload["preliminary_opinion"]))
        reply = await stub.UploadCase(req, timeout=30)
        number = reply.parent_case_number

        async def finish(uow: UnitOfWork) -> None:
            outbound.finish_upload_later(
                uow, op.seq, parent_case_id=reply.parent_case_id, parent_case_number=number
            )
            await federation.note(
                uow,
                self.ctx,
                case_id=op.case_id,
                key=federation.entry_id("uploaded", op.seq),
                what="case_uploaded",
                zh=f"已上报上级中心 {op.parent_center}" + (f"，上级编号 {number}" if number else ""),
                en=f"uploaded to {op.parent_center}" + (f" as {number}" if number else ""),
            )

        # Uploads finishing together share one transaction (one UPDATE, one timeline INSERT, one COMMIT).
        await self._finishes.run(finish)

    async def _supplement(self, stub: Any, op: outbound.Operation) -> None:
        docs = _documents(op.payload.get("documents"))
        await self._send_documents(stub, docs, resume=op.attempts > 0)
        await stub.SupplementCase(
            interconnect_pb2.SupplementCaseRequest(
                child_case_id=op.case_id, documents=docs, operation_id=op.operation_id
            ),
            timeout=30,
        )
        await self._done(
            op,
            what="supplement_uploaded",
            zh=f"补正材料已报送上级中心 {op.parent_center}",
            en=f"supplement sent to {op.parent_center}",
        )

    async def _done(self, op: outbound.Operation, *, what: str, zh: str, en: str) -> None:
        """Close a delivered operation and note it on the case's timeline, in one transaction."""
        async with self.rt.uow() as uow:
            await outbound.finish(uow.conn, op.seq, state=outbound.DONE)
            key = federation.entry_id(op.op, op.seq)
            await federation.note(uow, self.ctx, case_id=op.case_id, key=key, what=what, zh=zh, en=en)
            await uow.commit()

    async def _withdraw(self, stub: Any, op: outbound.Operation) -> None:
        await stub.WithdrawCase(
            interconnect_pb2.WithdrawCaseRequest(
                child_case_id=op.case_id,
                reason=str(op.payload.get("reason", "")),
                operation_id=op.operation_id,
            ),
            timeout=30,
        )
        async with self.rt.engine.begin() as conn:
            await outbound.finish(conn, op.seq, state=outbound.DONE)

    async def _evaluate(self, stub: Any, op: outbound.Operation) -> None:
        p = op.payload
        await stub.EvaluateCase(
            interconnect_pb2.EvaluateCaseRequest(
                child_case_id=op.case_id,
                rating=int(p.get("rating", 0)),
                tags=[str(t) for t in p.get("tags", [])],
                text=str(p.get("text", "")),
                follow_up=bool(p.get("follow_up", False)),
                operation_id=op.operation_id,
            ),
            timeout=30,
        )
        await self._done(
            op,
            what="evaluation_forwarded",
            zh=f"评价已转送上级中心 {op.parent_center}",
            en=f"rating passed on to {op.parent_center}",
        )


async def _chunks(
    store: DocumentStore, doc: common_pb2.Document, offset: int, size: int
) -> AsyncIterator[interconnect_pb2.DocumentChunk]:
    first = True
    try:
        async for data in store.read(doc.digest, offset=offset, chunk_bytes=CHUNK_BYTES):
            chunk = interconnect_pb2.DocumentChunk(digest=doc.digest, offset=offset, data=data)
            if first:
                chunk.total_size = size
                chunk.filename = doc.filename
                chunk.content_type = doc.content_type
                first = False
            yield chunk
            offset += len(data)
    except DocumentNotStored:
        raise MissingDocument(f"document {doc.digest} is not stored at this center") from None
    if first:  # nothing left past `offset`: one empty chunk still names the upload and completes it
        yield interconnect_pb2.DocumentChunk(
            digest=doc.digest,
            offset=offset,
            total_size=size,
            filename=doc.filename,
            content_type=doc.content_type,
        )
