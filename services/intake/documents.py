"""Content-addressed document storage behind a small interface (local disk by default)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from services.common.errors import InvalidArgument

MAX_DOCUMENT_BYTES = 50 * 1024 * 1024
CHUNK_BYTES = 256 * 1024
ALLOWED_TYPES = frozenset({"application/pdf", "image/jpeg", "image/png", "application/ofd", "text/plain"})
_MAGIC = {
    "application/pdf": (b"%PDF-",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
}
_SAFE_NAME = re.compile(r"[^\w.\- ()\u4e00-\u9fff]+")


class DocumentNotStored(LookupError):
    """The store holds no document with this digest."""


class DocumentStore(Protocol):
    """Where documents live once their upload is acknowledged, content-addressed by SHA-256.

    `save` and `adopt` return only once the bytes are durable in the store (fsynced on disk, or
    confirmed by the object store), so an acknowledged upload is never lost. Implementations:
    `LocalDocumentStore` here, `S3DocumentStore` in documents_s3.py.
    """

    # Local working space: spooled uploads, and partial transfers from child nodes
    # (ReceivedDocuments); `adopt` takes files from under it.
    scratch: Path

    async def save(
        self, chunks: AsyncIterator[bytes], *, content_type: str, max_bytes: int
    ) -> tuple[str, int]:
        """Store a stream; (sha256 hex, size). Refuses oversized, empty or mistyped content."""
        ...

    async def adopt(self, path: Path, *, digest: str) -> None:
        """Take a complete local file, already checked against `digest`, into the store (consuming it)."""
        ...

    async def size(self, digest: str) -> int | None:
        """The stored size of `digest`; None when it is not stored."""
        ...

    def read(self, digest: str, *, offset: int = 0, chunk_bytes: int = CHUNK_BYTES) -> AsyncIterator[bytes]:
        """The stored bytes from `offset` on, in chunks of `chunk_bytes` (the last may be shorter);
        raises DocumentNotStored when there is no such document."""
        ...

    async def check(self) -> None:
        """Raise StoreUnusable when documents cannot be stored (startup)."""
        ...


class StoreUnusable(RuntimeError):
    """The document store is misconfigured or out of reach; the message says which and how."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient  # worth waiting for (unreachable), or not (no such bucket, no access)


async def spool(
    chunks: AsyncIterator[bytes], target: Path, *, content_type: str, max_bytes: int, fsync: bool
) -> tuple[str, int]:
    """Write a stream to `target`, hashing it; (sha256 hex, size). Refuses oversized, empty or mistyped
    content before anything is stored; the caller removes `target` whatever happens."""
    sha = hashlib.sha256()
    size = 0
    head = b""
    with open(target, "wb") as fh:
        async for data in chunks:
            size += len(data)
            if size > max_bytes:
                raise InvalidArgument(
                    f"document exceeds {max_bytes} bytes",
                    field="data",
                    zh=f"材料文件超过大小上限（{size_zh(max_bytes)}）",
                )
            if len(head) < 16:
                head += data[: 16 - len(head)]
            sha.update(data)
            fh.write(data)
        if size == 0:
            raise InvalidArgument("empty document", field="data", zh="材料文件为空")
        check_type(content_type, head)
        fh.flush()
        if fsync:
            await asyncio.to_thread(os.fsync, fh.fileno())
    return sha.hexdigest(), size


def safe_filename(name: str) -> str:
    """The base name without directories, control characters or path tricks."""
    base = name.replace("\\", "/").split("/")[-1].strip().lstrip(".")
    base = _SAFE_NAME.sub("_", base)[:200]
    return base or "document"


def check_type(content_type: str, head: bytes) -> None:
    """Refuse types we do not keep, and content that does not match its declared type."""
    if content_type not in ALLOWED_TYPES:
        raise InvalidArgument(
            f"file type {content_type!r} is not accepted",
            field="content_type",
            zh=f"不接受此类文件（{content_type or '未注明文件类型'}）",
        )
    magic = _MAGIC.get(content_type)
    if magic and not any(head.startswith(m) for m in magic):
        raise InvalidArgument(
            f"content does not look like {content_type}",
            field="data",
            zh=f"文件内容与所注明的类型（{content_type}）不符",
        )


def size_zh(size: int) -> str:
    """A byte limit as a Chinese refusal states it: in MB when it is a whole number of them."""
    mb = 1024 * 1024
    return f"{size // mb} MB" if size >= mb and size % mb == 0 else f"{size} 字节"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalDocumentStore:
    """Files under root/ab/<sha256>; written to a temp file, fsynced, then renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.scratch = root  # tmp/ and partial/ on the same filesystem, so a rename moves a file in
        (root / "tmp").mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        """Where a document with this digest is stored (this store only: others have no paths)."""
        return self.root / digest[:2] / digest

    async def save(
        self, chunks: AsyncIterator[bytes], *, content_type: str, max_bytes: int
    ) -> tuple[str, int]:
        """Store a stream; (sha256 hex, size). Refuses oversized or mistyped content."""
        tmp = self.root / "tmp" / uuid.uuid4().hex
        try:
            digest, size = await spool(
                chunks, tmp, content_type=content_type, max_bytes=max_bytes, fsync=True
            )
            await self.adopt(tmp, digest=digest)
            return digest, size
        finally:
            if tmp.exists():
                tmp.unlink()

    async def adopt(self, path: Path, *, digest: str) -> None:
        """Rename a complete, fsynced file into its place, and make the rename durable too: until its
        directory is fsynced, a power cut right after the acknowledgement could undo the rename."""
        target = self.path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        await asyncio.to_thread(_fsync_dir, target.parent)

    async def size(self, digest: str) -> int | None:
        """The file's size; None when there is none."""
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            return None

    async def read(
        self, digest: str, *, offset: int = 0, chunk_bytes: int = CHUNK_BYTES
    ) -> AsyncIterator[bytes]:
        """The file from `offset` on, read off the event loop."""
        try:
            fh = open(self.path(digest), "rb")  # closed by the `with` below, across the yields
        except FileNotFoundError:
            raise DocumentNotStored(digest) from None
        with fh:
            fh.seek(offset)
            while data := await asyncio.to_thread(fh.read, chunk_bytes):
                yield data

    async def check(self) -> None:
        """The directory is there and writable (made in __init__); nothing else can be wrong."""
