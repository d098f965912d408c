"""Document uploads: size and type limits checked here, content streamed on to intake."""

from __future__ import annotations

import asyncio
import re
import tempfile
import zipfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from aiohttp import web

from gateway.clients import Clients
from gateway.config import MAX_UPLOAD_BYTES
from gateway.i18n import refusal
from onestop.common.v1 import common_pb2
from onestop.intake.v1 import intake_pb2
from onestop.routing.v1 import routing_pb2

CHUNK = 256 * 1024
DIGEST = re.compile(r"^[0-9a-f]{64}$")
TYPE_NAMES = {"application/pdf": "PDF", "image/jpeg": "JPEG", "image/png": "PNG", "application/ofd": "OFD"}
CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
UNSAFE_NAME = re.compile(r"[^\w.\- ()\u4e00-\u9fff]+")  # also drops bidi overrides that disguise a name
MAX_OFD_ENTRIES = 10_000
OFD_EXPANSION = 20  # an OFD may unpack to at most 20 × its size limit (a zip bomb does not)


def safe_filename(name: str) -> str:
    """The base name a browser sent, without directories or odd characters; 400 on control characters."""
    # Old browsers send a whole Windows path (C:\scans\a.pdf): only its last part is kept.
    if CONTROL.search(name):
        raise web.HTTPBadRequest(
            reason="The file name contains control characters; rename the file and retry"
        )
    base = name.replace("\\", "/").split("/")[-1].strip().lstrip(".")
    base = UNSAFE_NAME.sub("_", base).strip("_ ")[:200]
    return base or "document"


def check_ofd(fh: IO[bytes], limit: int) -> None:
    """An OFD is a zip with OFD.xml at its root that does not unpack to far more than its limit."""
    try:
        with zipfile.ZipFile(fh) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise refusal(
            web.HTTPUnsupportedMediaType,
            "该文件不是可读取的 OFD 文档",
            "The file is not a readable OFD document",
        ) from None
    finally:
        fh.seek(0)
    if len(entries) > MAX_OFD_ENTRIES or sum(e.file_size for e in entries) > OFD_EXPANSION * limit:
        raise refusal(
            web.HTTPUnsupportedMediaType,
            "该 OFD 文档解压后远超允许的大小",
            "The OFD document unpacks to far more than its size allows",
        )
    if not any(e.filename == "OFD.xml" for e in entries):
        raise refusal(
            web.HTTPUnsupportedMediaType,
            "该文件不是 OFD 文档(缺少 OFD.xml)",
            "The file is not an OFD document (no OFD.xml)",
        )


def sniff(head: bytes, declared: str, filename: str) -> str:
    """The content type by its first bytes (the browser's claim is not trusted); '' when not accepted."""
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"PK\x03\x04") and (
        declared == "application/ofd" or filename.lower().endswith(".ofd")
    ):
        return "application/ofd"
    return ""


def limits_of(
    matter: routing_pb2.Matter, material_code: str, ceiling: int
) -> tuple[routing_pb2.Material, int]:
    """The material of a matter and its byte limit; 400 when the matter has no such material."""
    for m in matter.materials:
        if m.code == material_code:
            return m, min(m.max_bytes or ceiling, ceiling)
    raise refusal(
        web.HTTPBadRequest,
        f"事项 {matter.code} 没有材料 {material_code}",
        f"matter {matter.code} has no material {material_code}",
    )


async def spool(chunks: AsyncIterator[bytes], limit: int) -> tuple[IO[bytes], int]:
    """Copy a stream to a temporary file, refusing it (413) once it passes `limit` bytes."""
    fh = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # noqa: SIM115 - returned to the caller
    size = 0
    async for data in chunks:
        size += len(data)
        if size > limit:
            fh.close()
            raise web.HTTPRequestEntityTooLarge(
                max_size=limit,
                actual_size=size,
                reason=f"The file is larger than {limit // (1024 * 1024)} MB",
            )
        await asyncio.to_thread(fh.write, data)
    fh.seek(0)
    return fh, size


@dataclass(frozen=True)
class Checked:
    """A spooled file whose name, size and type passed the checks, ready to stream to intake."""

    fh: IO[bytes]
    filename: str
    content_type: str
    material: routing_pb2.Material


def check_file(
    fh: IO[bytes], *, filename: str, declared: str, material: routing_pb2.Material, limit: int = 0
) -> Checked:
    """Check a spooled file's name and type by its content (closed when refused)."""
    # A declared type that names another accepted type than the content's is refused too.
    try:
        name = safe_filename(filename)
        head = fh.read(16)
        fh.seek(0)
        if not head:
            raise refusal(web.HTTPBadRequest, "文件是空的", "The file is empty")
        declared = declared.split(";")[0].strip().lower()
        content_type = sniff(head, declared, name)
        allowed = set(material.accepted_types) or set(TYPE_NAMES)
        if not content_type or content_type not in allowed:
            names = ", ".join(TYPE_NAMES.get(t, t) for t in sorted(allowed))
            raise refusal(
                web.HTTPUnsupportedMediaType,
                f"该材料只接受 {names} 文件",
                f"This material accepts {names} files only",
            )
        if declared in TYPE_NAMES and declared != content_type:
            raise web.HTTPUnsupportedMediaType(
                reason=f"The file was sent as {TYPE_NAMES[declared]} but its content is "
                f"{TYPE_NAMES[content_type]}"
            )
        if content_type == "application/ofd":
            check_ofd(fh, limit or MAX_UPLOAD_BYTES)
    except BaseException:
        fh.close()
        raise
    return Checked(fh, name, content_type, material)


async def stream_to_intake(clients: Clients, checked: Checked, *, matter_code: str) -> common_pb2.Document:
    """Stream a checked file to intake; the reply names it by its digest."""
    fh = checked.fh

    async def chunks() -> AsyncIterator[intake_pb2.DocumentChunk]:
        first = True
        while True:
            data = await asyncio.to_thread(fh.read, CHUNK)
            if not data:
                return
            if first:
                yield intake_pb2.DocumentChunk(
                    filename=checked.filename,
                    content_type=checked.content_type,
                    matter_code=matter_code,
                    material_code=checked.material.code,
                    data=data,
                )
                first = False
            else:
                yield intake_pb2.DocumentChunk(data=data)

    try:
        return await clients.intake.UploadDocument(chunks(), timeout=120)
    finally:
        fh.close()


async def send_to_intake(
    clients: Clients,
    fh: IO[bytes],
    *,
    filename: str,
    declared: str,
    matter_code: str,
    material: routing_pb2.Material,
    limit: int = 0,
) -> common_pb2.Document:
    """Check a spooled file and stream it to intake."""
    checked = check_file(fh, filename=filename, declared=declared, material=material, limit=limit)
    return await stream_to_intake(clients, checked, matter_code=matter_code)


async def documents_from_form(
    clients: Clients,
    form: Mapping[str, Any],
    *,
    matter: routing_pb2.Matter,
    materials: list[str],
    ceiling: int,
) -> list[common_pb2.Document]:
    """The documents of a posted form (digests or files); every file is checked before the first is sent."""
    docs: list[common_pb2.Document] = []
    pending: list[tuple[int, Checked]] = []
    try:
        for code in materials:
            digest = form.get(f"doc_{code}", "")
            if isinstance(digest, str) and digest:
                if not DIGEST.match(digest):
                    raise refusal(
                        web.HTTPBadRequest,
                        f"材料 {code} 的文件引用格式不正确",
                        f"document reference for {code} is malformed",
                    )
                docs.append(common_pb2.Document(material_code=code, digest=digest))
                continue
            file = form.get(f"file_{code}")
            if isinstance(file, web.FileField):
                material, limit = limits_of(matter, code, ceiling)
                file.file.seek(0, 2)
                length = file.file.tell()
                file.file.seek(0)
                if length == 0:
                    continue
                if length > limit:
                    raise web.HTTPRequestEntityTooLarge(
                        max_size=limit,
                        actual_size=length,
                        reason=f"The file is larger than {limit // (1024 * 1024)} MB",
                    )
                checked = check_file(
                    file.file,
                    filename=file.filename,
                    declared=file.content_type,
                    material=material,
                    limit=limit,
                )
                pending.append((len(docs), checked))
                docs.append(common_pb2.Document())
        for index, checked in pending:
            docs[index] = await stream_to_intake(clients, checked, matter_code=matter.code)
    finally:
        for _, checked in pending:
            checked.fh.close()
    return docs
