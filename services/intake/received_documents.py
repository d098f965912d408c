"""Documents a child sends up in chunks: resumable by offset, stored only once the digest checks out."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from onestop.interconnect.v1 import interconnect_pb2
from services.common.errors import FailedPrecondition, InvalidArgument
from services.intake import repository
from services.intake.documents import MAX_DOCUMENT_BYTES, DocumentStore, check_type, safe_filename

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class ReceivedDocuments:
    """Partial uploads under <scratch>/partial/<digest>; complete ones go into the content-addressed store.

    The partial files are local to the process even when the store is an object store: a child's
    resumed upload goes on where this replica's copy ends (it asks GetDocumentStatus first).
    """

    def __init__(self, *, engine: AsyncEngine, store: DocumentStore) -> None:
        self._engine = engine
        self._store = store
        self._partial = store.scratch / "partial"
        self._partial.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, asyncio.Lock] = {}

    def _path(self, digest: str) -> Path:
        return self._partial / digest

    async def status(self, digest: str) -> interconnect_pb2.DocumentStatus:
        """How many bytes of `digest` are held, and whether the document is complete."""
        if not _DIGEST.match(digest):
            raise InvalidArgument(
                "digest must be a lowercase SHA-256 hex",
                field="digest",
                zh="材料摘要 (digest) 应为小写的 SHA-256 十六进制字符串",
            )
        async with self._engine.connect() as conn:
            known = await repository.known_documents(conn, [digest])
        if digest in known:
            return interconnect_pb2.DocumentStatus(
                digest=digest, received=int(known[digest]["size"]), complete=True
            )
        path = self._path(digest)
        received = path.stat().st_size if path.exists() else 0
        return interconnect_pb2.DocumentStatus(digest=digest, received=received, complete=False)

    async def receive(
        self, chunks: AsyncIterator[interconnect_pb2.DocumentChunk]
    ) -> interconnect_pb2.DocumentStatus:
        """Append a stream of chunks at their offsets; complete and verify when the last byte arrives."""
        first = await anext(chunks, None)
        if first is None:
            raise InvalidArgument(
                "an upload needs at least one chunk", field="data", zh="上传材料至少要包含一个数据块"
            )
        digest = first.digest
        held = await self.status(digest)
        if held.complete:
            return held
        if not 0 < first.total_size <= MAX_DOCUMENT_BYTES:
            raise InvalidArgument(
                f"total_size must be between 1 and {MAX_DOCUMENT_BYTES}",
                field="total_size",
                zh=f"材料大小 (total_size) 应在 1 至 {MAX_DOCUMENT_BYTES} 字节之间",
            )
        lock = self._locks.setdefault(digest, asyncio.Lock())
        async with lock:
            path = self._path(digest)
            received = path.stat().st_size if path.exists() else 0
            if first.offset > received:
                raise FailedPrecondition(
                    f"offset {first.offset} is past the {received} bytes held; resume from there",
                    field="offset",
                    zh=f"续传位置 (offset) {first.offset} 超过了已收到的 {received} 字节，请从 {received} 处续传",
                )
            with open(path, "r+b" if path.exists() else "wb") as fh:
                fh.truncate(first.offset)
                fh.seek(first.offset)
                size = first.offset
                chunk: interconnect_pb2.DocumentChunk | None = first
                while chunk is not None:
                    if chunk.digest and chunk.digest != digest:
                        raise InvalidArgument(
                            "every chunk of an upload names the same digest",
                            field="digest",
                            zh="同一次上传的每个数据块须标明相同的材料摘要 (digest)",
                        )
                    size += len(chunk.data)
                    if size > first.total_size:
                        raise InvalidArgument(
                            "more bytes than total_size",
                            field="data",
                            zh="收到的字节数超过了材料大小 (total_size)",
                        )
                    fh.write(chunk.data)
                    chunk = await anext(chunks, None)
                fh.flush()
                await asyncio.to_thread(os.fsync, fh.fileno())
            if size < first.total_size:
                return interconnect_pb2.DocumentStatus(digest=digest, received=size, complete=False)
            return await self._complete(digest, first)

    async def _complete(
        self, digest: str, meta: interconnect_pb2.DocumentChunk
    ) -> interconnect_pb2.DocumentStatus:
        path = self._path(digest)
        data_head, actual = await asyncio.to_thread(_hash, path)
        if actual != digest:
            path.unlink(missing_ok=True)
            raise InvalidArgument(
                f"content does not match digest {digest}; send it again from offset 0",
                field="digest",
                zh="材料内容与摘要 (digest) 不符，请从位置 0 重新上传",
            )
        try:
            check_type(meta.content_type, data_head)
        except InvalidArgument:
            path.unlink(missing_ok=True)
            raise
        # Durable in the store before the row says it is held; a store that fails here leaves the
        # complete partial file, and the child's retry (at offset total_size) completes it again.
        await self._store.adopt(path, digest=digest)
        async with self._engine.begin() as conn:
            await repository.add_document(
                conn,
                {
                    "digest": digest,
                    "filename": safe_filename(meta.filename),
                    "content_type": meta.content_type,
                    "size": meta.total_size,
                    "stored_at": datetime.now(UTC),
                },
            )
        return interconnect_pb2.DocumentStatus(digest=digest, received=meta.total_size, complete=True)


def _hash(path: Path) -> tuple[bytes, str]:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        head = fh.read(16)
        sha.update(head)
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return head, sha.hexdigest()
