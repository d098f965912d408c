"""Serving documents back on real PostgreSQL: those a child node sent up too, only for their case, verified."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from onestop.common.v1 import common_pb2
from onestop.intake.v1 import intake_pb2
from onestop.interconnect.v1 import interconnect_pb2
from services.common import migrate
from services.common.db import create_engine
from services.common.errors import DataLoss, NotFound
from services.intake import download, repository
from services.intake.documents import LocalDocumentStore
from services.intake.received_documents import ReceivedDocuments

pytestmark = pytest.mark.postgres
CS = common_pb2


@pytest.fixture
async def engine(postgres_db: str) -> AsyncIterator[AsyncEngine]:
    await asyncio.to_thread(migrate.upgrade, service="intake", database_url=postgres_db)
    eng = create_engine(postgres_db, pool_size=4)
    yield eng
    await eng.dispose()


async def _chunks(*items: interconnect_pb2.DocumentChunk) -> AsyncIterator[interconnect_pb2.DocumentChunk]:
    for item in items:
        yield item


async def _received(received: ReceivedDocuments, data: bytes) -> str:
    """A document a child sent up in two pieces (resumed), as the parent holds it."""
    digest = hashlib.sha256(data).hexdigest()
    meta = {"total_size": len(data), "filename": "现场照片.pdf", "content_type": "application/pdf"}
    half = len(data) // 2
    await received.receive(
        _chunks(interconnect_pb2.DocumentChunk(digest=digest, offset=0, data=data[:half], **meta))
    )
    done = await received.receive(
        _chunks(interconnect_pb2.DocumentChunk(digest=digest, offset=half, data=data[half:], **meta))
    )
    assert done.complete
    return digest


async def _uploaded_case(engine: AsyncEngine, digests: list[str]) -> str:
    """A case a child center uploaded, referring to `digests`; its number."""
    now = datetime.now(UTC)
    number = f"210200-20261126-{uuid.uuid4().int % 10**6:06d}"
    async with engine.begin() as conn:
        await repository.insert_case(
            conn,
            {
                "case_id": str(uuid.uuid4()),
                "case_number": number,
                "query_code": "ABCDEFGH",
                "center": "210200",
                "matter_code": "TR-001",
                "matter_version": 1,
                "status": CS.CASE_STATUS_ROUTED,
                "outcome": 0,
                "channel": CS.CHANNEL_COUNTER,
                "applicant": {"name": "张三"},
                "documents": [{"material_code": "PHOTO", "digest": d} for d in digests],
                "form": {},
                "title": "",
                "submitted_by": {},
                "submitted_at": now,
                "accepted_at": now,
                "concluded_at": None,
                "key_project": False,
                "promised_deadline": None,
                "open_supplement": [],
                "supplement_round": 0,
                "reasons": [],
                "origin_center": "210211",
                "origin_case_id": str(uuid.uuid4()),
                "sealed": None,
                "updated_at": now,
            },
        )
    return number


async def _download(
    engine: AsyncEngine, store: LocalDocumentStore, number: str, digest: str
) -> list[intake_pb2.DocumentChunk]:
    req = intake_pb2.DownloadDocumentRequest(case_number=number, digest=digest)
    doc = await download.find_document(engine, req)
    return [chunk async for chunk in download.stream_document(store, doc)]


async def test_a_document_a_child_sent_up_is_served_for_its_case_and_checked(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    store = LocalDocumentStore(tmp_path)
    received = ReceivedDocuments(engine=engine, store=store)
    data = b"%PDF-1.4 " + os.urandom(download.CHUNK_BYTES * 2 + 17)
    digest = await _received(received, data)
    number = await _uploaded_case(engine, [digest])
    chunks = await _download(engine, store, number, digest)
    assert len(chunks) == 3 and b"".join(c.data for c in chunks) == data
    first = chunks[0]
    assert (first.filename, first.content_type, first.material_code) == (
        "现场照片.pdf",
        "application/pdf",
        "PHOTO",
    )
    assert (first.size, first.digest) == (len(data), digest)
    assert not chunks[1].filename and not chunks[1].digest

    # Another case, or a document only partly received, is not this case's to serve.
    other = await _uploaded_case(engine, [])
    with pytest.raises(NotFound):
        await _download(engine, store, other, digest)
    partial = b"%PDF-1.4 partial " + os.urandom(64)
    part_digest = hashlib.sha256(partial).hexdigest()
    await received.receive(
        _chunks(
            interconnect_pb2.DocumentChunk(
                digest=part_digest,
                offset=0,
                data=partial[:10],
                total_size=len(partial),
                content_type="application/pdf",
            )
        )
    )
    half_case = await _uploaded_case(engine, [part_digest])
    with pytest.raises(NotFound):
        await _download(engine, store, half_case, part_digest)

    # Changed while it is being sent (same file, rewritten in place): the stream ends with DATA_LOSS.
    req = intake_pb2.DownloadDocumentRequest(case_number=number, digest=digest)
    stream = download.stream_document(store, await download.find_document(engine, req))
    assert (await anext(stream)).data == data[: download.CHUNK_BYTES]
    store.path(digest).write_bytes(b"\0" * len(data))
    with pytest.raises(DataLoss, match="while it was being sent"):
        async for _ in stream:
            pass
    store.path(digest).write_bytes(data)
    assert b"".join(c.data for c in await _download(engine, store, number, digest)) == data

    # One changed byte on disk: DATA_LOSS before anything is sent.
    path = store.path(digest)
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(DataLoss, match="altered"):
        await _download(engine, store, number, digest)
    path.unlink()
    with pytest.raises(DataLoss, match="missing"):
        await _download(engine, store, number, digest)
