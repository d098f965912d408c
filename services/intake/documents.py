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
ALLOWED_TYPES = frozenset({"application/pdf", "image/jpeg", "image/png", "application/ofd", "text/plain"})
_MAGIC = {
    "application/pdf": (b"%PDF-",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
}
_SAFE_NAME = re.compile(r"[^\w.\- ()\u4e00-\u9fff]+")


class DocumentStore(Protocol):
    """Where documents live once their upload is acknowledged."""

    async def save(
        self, chunks: AsyncIterator[bytes], *, content_type: str, max_bytes: int
    ) -> tuple[str, int]: ...

    def path(self, digest: str) -> Path: ...


def safe_filename(name: str) -> str:
    """The base name without directories, control characters or path tricks."""
    base = name.replace("\\", "/").split("/")[-1].strip().lstrip(".")
    base = _SAFE_NAME.sub("_", base)[:200]
    return base or "document"


def check_type(content_type: str, head: bytes) -> None:
    """Refuse types we do not keep, and content that does not match its declared type."""
    if content_type not in ALLOWED_TYPES:
        raise InvalidArgument(f"file type {content_type!r} is not accepted", field="content_type")
    magic = _MAGIC.get(content_type)
    if magic and not any(head.startswith(m) for m in magic):
        raise InvalidArgument(f"content does not look like {content_type}", field="data")


class LocalDocumentStore:
    """Files under root/ab/<sha256>; written to a temp file, fsynced, then renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "tmp").mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        """Where a document with this digest is stored."""
        return self.root / digest[:2] / digest

    async def save(
        self, chunks: AsyncIterator[bytes], *, content_type: str, max_bytes: int
    ) -> tuple[str, int]:
        """Store a stream; (sha256 hex, size). Refuses oversized or mistyped content."""
        tmp = self.root / "tmp" / uuid.uuid4().hex
        sha = hashlib.sha256()
        size = 0
        head = b""
        try:
            with open(tmp, "wb") as fh:
                async for data in chunks:
                    size += len(data)
                    if size > max_bytes:
                        raise InvalidArgument(f"document exceeds {max_bytes} bytes", field="data")
                    if len(head) < 16:
                        head += data[: 16 - len(head)]
                    sha.update(data)
                    fh.write(data)
                if size == 0:
                    raise InvalidArgument("empty document", field="data")
                check_type(content_type, head)
                fh.flush()
                await asyncio.to_thread(os.fsync, fh.fileno())
            digest = sha.hexdigest()
            target = self.path(digest)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
            return digest, size
        finally:
            if tmp.exists():
                tmp.unlink()
