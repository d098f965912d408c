"""Reading a case's stored document back: only a digest the case refers to, verified against its digest.

The stored copy is hashed once before the first byte leaves (a damaged copy is refused with DATA_LOSS
while the caller can still show a clear page) and again while it is sent (a copy changed in between
ends the stream with DATA_LOSS instead of handing out bytes that are not the document). Both passes
read through the store's interface, so a document in an object store is checked the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from onestop.intake.v1 import intake_pb2
from services.common.errors import DataLoss, InvalidArgument, NotFound
from services.common.logging import get_logger
from services.intake import repository
from services.intake.documents import CHUNK_BYTES, DocumentNotStored, DocumentStore

log = get_logger(__name__)
HASH_READ_BYTES = 1 << 20
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
MISSING = "missing"
ALTERED = "altered (its content no longer matches its SHA-256)"
ALTERED_IN_FLIGHT = "altered while it was being sent"
_PROBLEM_ZH = {  # what `_damaged` says of the stored copy, in Chinese
    MISSING: "已丢失",
    ALTERED: "已被改动（内容与其 SHA-256 摘要不符）",
    ALTERED_IN_FLIGHT: "在发送过程中被改动",
}


async def find_document(engine: AsyncEngine, req: intake_pb2.DownloadDocumentRequest) -> dict[str, Any]:
    """The case's document named by the request, with the case number; NOT_FOUND for anything else.

    A digest another case refers to is answered exactly like an unknown one, so nobody learns which
    documents exist by guessing.
    """
    if not req.case_id and not req.case_number:
        raise InvalidArgument(
            "case_id or case_number is required", field="case_id", zh="请提供报件编号（或报件标识）"
        )
    if not _DIGEST.match(req.digest):
        raise InvalidArgument(
            "digest must be a lowercase SHA-256 hex",
            field="digest",
            zh="材料摘要 (digest) 须为小写的 SHA-256 十六进制值",
        )
    async with engine.connect() as conn:
        row = await repository.get_case(conn, case_id=req.case_id, case_number=req.case_number)
        if row is not None and req.query_code:
            if not hmac.compare_digest(req.query_code.strip().upper(), row["query_code"]):
                row = None
        listed = next((d for d in (row or {}).get("documents") or [] if d.get("digest") == req.digest), None)
        if row is None or listed is None:
            raise NotFound("no such document in this case", zh="该报件中没有这份材料")
        stored = (await repository.known_documents(conn, [req.digest])).get(req.digest)
    if stored is None:
        raise NotFound("this document of the case was never received", zh="未收到该报件的这份材料")
    return {
        "case_id": row["case_id"],
        "case_number": row["case_number"] or "",
        "digest": req.digest,
        "material_code": str(listed.get("material_code", "")),
        "filename": stored["filename"],
        "content_type": stored["content_type"],
        "size": int(stored["size"]),
    }


async def _hash_stored(store: DocumentStore, digest: str) -> str:
    sha = hashlib.sha256()
    async for block in store.read(digest, chunk_bytes=HASH_READ_BYTES):
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
        "it cannot be served until it is restored from the applicant or a backup",
        zh=f"材料“{doc['filename']}”的存储副本{_PROBLEM_ZH.get(problem, '已损坏')}，"
        "须请申请人重新提交或从备份恢复后才能调阅",
    )


async def stream_document(
    store: DocumentStore, doc: dict[str, Any]
) -> AsyncIterator[intake_pb2.DocumentChunk]:
    """The document in chunks; the first carries its name, type, material, size and digest."""
    try:
        actual = await _hash_stored(store, doc["digest"])
    except DocumentNotStored:
        raise _damaged(doc, MISSING) from None
    if actual != doc["digest"]:
        raise _damaged(doc, ALTERED)
    sha = hashlib.sha256()
    first = True
    try:
        async for data in store.read(doc["digest"], chunk_bytes=CHUNK_BYTES):
            sha.update(data)
            if first:
                first = False
                yield intake_pb2.DocumentChunk(
                    filename=doc["filename"],
                    content_type=doc["content_type"],
                    material_code=doc["material_code"],
                    size=doc["size"],
                    digest=doc["digest"],
                    data=data,
                )
            else:
                yield intake_pb2.DocumentChunk(data=data)
    except DocumentNotStored:
        raise _damaged(doc, MISSING) from None
    if sha.hexdigest() != doc["digest"]:
        raise _damaged(doc, ALTERED_IN_FLIGHT)
