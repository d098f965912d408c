"""Reading a case's stored document back: only a digest the case refers to, verified against its digest.

The file is hashed once before the first byte leaves (a damaged file is refused with DATA_LOSS while the
caller can still show a clear page) and again while it is sent (a file changed in between ends the
stream with DATA_LOSS instead of handing out bytes that are not the document).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from onestop.intake.v1 import intake_pb2
from services.common.errors import DataLoss, InvalidArgument, NotFound
from services.common.logging import get_logger
from services.intake import repository
from services.intake.documents import DocumentStore

log = get_logger(__name__)
CHUNK_BYTES = 256 * 1024
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


async def find_document(engine: AsyncEngine, req: intake_pb2.DownloadDocumentRequest) -> dict[str, Any]:
    """The case's document named by the request, with the case number; NOT_FOUND for anything else.

    A digest another case refers to is answered exactly like an unknown one, so nobody learns which
    documents exist by guessing.
    """
    if not req.case_id and not req.case_number:
        raise InvalidArgument("case_id or case_number is required", field="case_id")
    if not _DIGEST.match(req.digest):
        raise InvalidArgument("digest must be a lowercase SHA-256 hex", field="digest")
    async with engine.connect() as conn:
        row = await repository.get_case(conn, case_id=req.case_id, case_number=req.case_number)
        if row is not None and req.query_code:
            if not hmac.compare_digest(req.query_code.strip().upper(), row["query_code"]):
                row = None
        listed = next((d for d in (row or {}).get("documents") or [] if d.get("digest") == req.digest), None)
        if row is None or listed is None:
            raise NotFound("no such document in this case")
        stored = (await repository.known_documents(conn, [req.digest])).get(req.digest)
    if stored is None:
        raise NotFound("this document of the case was never received")
    return {
        "case_id": row["case_id"],
        "case_number": row["case_number"] or "",
        "digest": req.digest,
        "material_code": str(listed.get("material_code", "")),
        "filename": stored["filename"],
        "content_type": stored["content_type"],
        "size": int(stored["size"]),
    }


def _hash_file(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _damaged(doc: dict[str, Any], problem: str) -> DataLoss:
    log.error(
        "stored document is damaged",
        case_number=doc["case_number"],
        digest=doc["digest"],
        problem=problem,
    )
    return DataLoss(
        f"the stored copy of document {doc['digest'][:12]}… is {problem}; "
        "it cannot be served until it is restored from the applicant or a backup"
    )


async def stream_document(
    store: DocumentStore, doc: dict[str, Any]
) -> AsyncIterator[intake_pb2.DocumentChunk]:
    """The document in chunks; the first carries its name, type, material, size and digest."""
    path = store.path(doc["digest"])
    try:
        actual = await asyncio.to_thread(_hash_file, path)
    except FileNotFoundError:
        raise _damaged(doc, "missing") from None
    if actual != doc["digest"]:
        raise _damaged(doc, "altered (its content no longer matches its SHA-256)")
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        data = await asyncio.to_thread(fh.read, CHUNK_BYTES)
        sha.update(data)
        yield intake_pb2.DocumentChunk(
            filename=doc["filename"],
            content_type=doc["content_type"],
            material_code=doc["material_code"],
            size=doc["size"],
            digest=doc["digest"],
            data=data,
        )
        while data := await asyncio.to_thread(fh.read, CHUNK_BYTES):
            sha.update(data)
            yield intake_pb2.DocumentChunk(data=data)
    if sha.hexdigest() != doc["digest"]:
        raise _damaged(doc, "altered while it was being sent")
