"""Document uploads: size and type limits checked here, content streamed on to intake."""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import AsyncIterator, Mapping
from typing import IO, Any

from aiohttp import BodyPartReader, web

from gateway.clients import Clients
from onestop.common.v1 import common_pb2
from onestop.intake.v1 import intake_pb2
from onestop.routing.v1 import routing_pb2

CHUNK = 256 * 1024
DIGEST = re.compile(r"^[0-9a-f]{64}$")
TYPE_NAMES = {"application/pdf": "PDF", "image/jpeg": "JPEG", "image/png": "PNG", "application/ofd": "OFD"}


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
    raise web.HTTPBadRequest(reason=f"matter {matter.code} has no material {material_code}")


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


async def send_to_intake(
    clients: Clients,
    fh: IO[bytes],
    *,
    filename: str,
    declared: str,
    matter_code: str,
    material: routing_pb2.Material,
) -> common_pb2.Document:
    """Check the type of a spooled file and stream it to intake; the reply names it by its digest."""
    head = fh.read(16)
    fh.seek(0)
    if not head:
        raise web.HTTPBadRequest(reason="The file is empty")
    content_type = sniff(head, declared, filename)
    allowed = set(material.accepted_types) or set(TYPE_NAMES)
    if not content_type or content_type not in allowed:
        names = ", ".join(TYPE_NAMES.get(t, t) for t in sorted(allowed))
        raise web.HTTPUnsupportedMediaType(reason=f"This material accepts {names} files only")

    async def chunks() -> AsyncIterator[intake_pb2.DocumentChunk]:
        first = True
        while True:
            data = await asyncio.to_thread(fh.read, CHUNK)
            if not data:
                return
            if first:
                yield intake_pb2.DocumentChunk(
                    filename=filename[:200],
                    content_type=content_type,
                    matter_code=matter_code,
                    material_code=material.code,
                    data=data,
                )
                first = False
            else:
                yield intake_pb2.DocumentChunk(data=data)

    try:
        return await clients.intake.UploadDocument(chunks(), timeout=120)
    finally:
        fh.close()


async def upload_part(
    clients: Clients, part: BodyPartReader, *, matter: routing_pb2.Matter, material_code: str, ceiling: int
) -> common_pb2.Document:
    """One multipart file part, streamed from the browser to intake through a size-checked spool."""
    material, limit = limits_of(matter, material_code, ceiling)

    async def body() -> AsyncIterator[bytes]:
        while True:
            data = await part.read_chunk(CHUNK)
            if not data:
                return
            yield data

    fh, _ = await spool(body(), limit)
    return await send_to_intake(
        clients,
        fh,
        filename=part.filename or "document",
        declared=part.headers.get("Content-Type", ""),
        matter_code=matter.code,
        material=material,
    )


async def documents_from_form(
    clients: Clients,
    form: Mapping[str, Any],
    *,
    matter: routing_pb2.Matter,
    materials: list[str],
    ceiling: int,
) -> list[common_pb2.Document]:
    """The documents of a posted form: digests the upload script left, or files sent without the script."""
    docs: list[common_pb2.Document] = []
    for code in materials:
        digest = form.get(f"doc_{code}", "")
        if isinstance(digest, str) and digest:
            if not DIGEST.match(digest):
                raise web.HTTPBadRequest(reason=f"document reference for {code} is malformed")
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
            docs.append(
                await send_to_intake(
                    clients,
                    file.file,
                    filename=file.filename,
                    declared=file.content_type,
                    matter_code=matter.code,
                    material=material,
                )
            )
    return docs
