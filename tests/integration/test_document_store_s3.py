"""The S3 document store against a real S3-compatible server (moto's server mode) over a socket.

What an applicant and a parent node rely on: an acknowledged upload is the exact bytes under their
SHA-256, stored once however often it is sent; a refused or failed upload leaves nothing behind and is
acknowledged to nobody; what is read back is checked against its digest.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from onestop.common.v1 import common_pb2
from onestop.interconnect.v1 import interconnect_pb2
from services.common import migrate
from services.common.db import create_engine
from services.common.errors import DataLoss, InvalidArgument, Unavailable
from services.common.settings import load_settings
from services.intake import download, uploader
from services.intake.bootstrap import open_document_store
from services.intake.documents import CHUNK_BYTES, MAX_DOCUMENT_BYTES, DocumentNotStored, StoreUnusable
from services.intake.documents_s3 import PART_BYTES, REASON, S3DocumentStore
from services.intake.received_documents import ReceivedDocuments
from tests.s3 import CREDENTIALS, S3Server, running_s3

PREFIX = "center-210200"


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    yield from running_s3()


@pytest.fixture
def s3_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """botocore's standard variables pointing at the test server, as an operator would set them."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.endpoint)
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return s3


@pytest.fixture
def bucket(s3_env: S3Server) -> str:
    return s3_env.new_bucket()


@pytest.fixture
async def store(bucket: str, tmp_path: Path) -> AsyncIterator[S3DocumentStore]:
    st = await S3DocumentStore(url=f"s3://{bucket}/{PREFIX}", scratch=tmp_path / "spool").open()
    await st.check()
    yield st
    await st.close()


async def pieces(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """An upload as the gRPC stream hands it over: chunk by chunk."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


def pdf(size: int) -> bytes:
    return b"%PDF-1.7 " + os.urandom(size - 9)


async def read_all(store: S3DocumentStore, digest: str, **kw: int) -> list[bytes]:
    return [chunk async for chunk in store.read(digest, **kw)]


def spooled(store: S3DocumentStore) -> list[Path]:
    return list((store.scratch / "tmp").iterdir())


async def test_an_uploaded_document_reads_back_byte_for_byte_under_its_digest(
    store: S3DocumentStore, s3: S3Server, bucket: str
) -> None:
    data = pdf(CHUNK_BYTES * 3 + 1234)
    digest, size = await store.save(
        pieces(data), content_type="application/pdf", max_bytes=MAX_DOCUMENT_BYTES
    )
    assert (digest, size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert s3.keys(bucket) == [f"{PREFIX}/{digest[:2]}/{digest}"]
    # The object store was given the SHA-256 to check the body against (S3 refuses a body that does not
    # match it; moto only records it) and keeps it with the object.
    head = s3.client().head_object(Bucket=bucket, Key=store.key(digest), ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == base64.b64encode(bytes.fromhex(digest)).decode()
    chunks = await read_all(store, digest)
    assert b"".join(chunks) == data
    assert [len(c) for c in chunks] == [CHUNK_BYTES] * 3 + [1234]
    assert await store.size(digest) == len(data)
    assert b"".join(await read_all(store, digest, offset=1000)) == data[1000:]
    assert await read_all(store, digest, offset=len(data)) == []
    assert spooled(store) == []

    unknown = hashlib.sha256(b"never uploaded").hexdigest()
    assert await store.size(unknown) is None
    with pytest.raises(DocumentNotStored):
        await read_all(store, unknown)


async def test_the_same_content_uploaded_twice_is_one_object_named_by_both_acknowledgements(
    store: S3DocumentStore, s3: S3Server, bucket: str
) -> None:
    data = pdf(50_000)
    first = await store.save(pieces(data), content_type="application/pdf", max_bytes=MAX_DOCUMENT_BYTES)
    again = await store.save(pieces(data, 999), content_type="application/pdf", max_bytes=MAX_DOCUMENT_BYTES)
    together = await asyncio.gather(
        *(
            store.save(pieces(data, 7_000), content_type="application/pdf", max_bytes=MAX_DOCUMENT_BYTES)
            for _ in range(3)
        )
    )
    assert {first, again, *together} == {(hashlib.sha256(data).hexdigest(), len(data))}
    assert s3.keys(bucket) == [store.key(first[0])]


async def test_a_large_document_is_streamed_in_parts_without_loss(
    store: S3DocumentStore, s3: S3Server, bucket: str
) -> None:
    data = pdf(2 * PART_BYTES + 123_457)  # three parts of a multipart upload
    digest, size = await store.save(
        pieces(data, 100_000), content_type="application/pdf", max_bytes=MAX_DOCUMENT_BYTES
    )
    assert (digest, size) == (hashlib.sha256(data).hexdigest(), len(data))
    head = s3.client().head_object(Bucket=bucket, Key=store.key(digest))
    assert head["ContentLength"] == len(data) and head["ETag"].strip('"').endswith("-3")
    assert s3.uploads_in_progress(bucket) == []
    sha = hashlib.sha256()
    async for chunk in store.read(digest, chunk_bytes=1 << 20):
        sha.update(chunk)
    assert sha.hexdigest() == digest
    assert b"".join(await read_all(store, digest, offset=PART_BYTES - 5)) == data[PART_BYTES - 5 :]


@pytest.mark.parametrize(
    ("content_type", "data", "max_bytes", "problem"),
    [
        ("text/html", b"<html>hello</html>", MAX_DOCUMENT_BYTES, "not accepted"),
        ("application/pdf", b"\x89PNG\r\n\x1a\n" + b"x" * 100, MAX_DOCUMENT_BYTES, "does not look like"),
        ("application/pdf", b"%PDF-1.7 " + b"x" * 5000, 4096, "exceeds 4096 bytes"),
        ("application/pdf", b"", MAX_DOCUMENT_BYTES, "empty document"),
    ],
)
async def test_a_refused_upload_leaves_no_object(
    store: S3DocumentStore,
    s3: S3Server,
    bucket: str,
    content_type: str,
    data: bytes,
    max_bytes: int,
    problem: str,
) -> None:
    with pytest.raises(InvalidArgument, match=problem):
        await store.save(pieces(data, 1000), content_type=content_type, max_bytes=max_bytes)
    assert s3.keys(bucket) == [] and s3.uploads_in_progress(bucket) == []
    assert spooled(store) == []


async def test_an_unreachable_store_refuses_the_upload_and_acknowledges_nothing(
    s3_env: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = S3Server()  # stopped and started again by this test alone
    own.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", own.endpoint)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's own knob; the default retries 3 times
    bucket = own.new_bucket()
    store = await S3DocumentStore(url=f"s3://{bucket}", scratch=tmp_path / "spool").open()
    try:
        await store.check()
        own.stop()
        small, large = pdf(10_000), pdf(PART_BYTES + 10)
        for data in (small, large):
            with pytest.raises(Unavailable, match="document store is not available") as err:
                await store.save(pieces(data), content_type="application/pdf", max_bytes=MAX_DOCUMENT_BYTES)
            assert err.value.reason == REASON and "send it again" in err.value.message
        with pytest.raises(StoreUnusable, match="is not reachable") as unusable:
            await store.check()
        assert unusable.value.transient
        assert spooled(store) == []

        own.start()
        assert own.keys(bucket) == [] and own.uploads_in_progress(bucket) == []
        digest, _ = await store.save(
            pieces(small), content_type="application/pdf", max_bytes=MAX_DOCUMENT_BYTES
        )
        assert own.keys(bucket) == [store.key(digest)]
    finally:
        await store.close()
        own.stop()


def _settings(tmp_path: Path, url: str) -> object:
    return load_settings(
        service="intake",
        env={
            "ONESTOP_CENTER": "210200",
            "ONESTOP_DATABASE_URL": "sqlite+aiosqlite:///unused",
            "ONESTOP_NATS_URL": "nats://127.0.0.1:1",
            "ONESTOP_DATA_DIR": str(tmp_path),
            "ONESTOP_DOCUMENT_STORE": url,
        },
    )


async def test_a_missing_bucket_or_an_unreachable_store_stops_intake_before_it_serves(
    s3_env: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(StoreUnusable, match="bucket 'no-such-bucket' does not exist") as missing:
        await open_document_store(_settings(tmp_path, "s3://no-such-bucket/docs"), wait_s=30)  # type: ignore[arg-type]
    assert not missing.value.transient  # refused at once, not waited for

    closed = S3Server()  # a port nobody listens on
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", closed.endpoint)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(StoreUnusable, match="is not reachable"):
        await open_document_store(_settings(tmp_path, "s3://onestop-docs"), wait_s=0.5)  # type: ignore[arg-type]

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_env.endpoint)
    bucket = s3_env.new_bucket()
    store, background = await open_document_store(_settings(tmp_path, f"s3://{bucket}/a/b/"), wait_s=0)  # type: ignore[arg-type]
    assert isinstance(store, S3DocumentStore) and (store.bucket, store.prefix) == (bucket, "a/b")
    assert len(background) == 1
    await store.close()


async def test_a_download_is_checked_against_the_digest_of_the_stored_object(
    store: S3DocumentStore, s3: S3Server, bucket: str
) -> None:
    data = pdf(CHUNK_BYTES + 500)
    digest, size = await store.save(
        pieces(data), content_type="application/pdf", max_bytes=MAX_DOCUMENT_BYTES
    )
    doc = {
        "case_id": "c-1",
        "case_number": "210200-20261126-000001",
        "digest": digest,
        "material_code": "APPLICATION",
        "filename": "申请书.pdf",
        "content_type": "application/pdf",
        "size": size,
    }
    chunks = [c async for c in download.stream_document(store, doc)]
    assert b"".join(c.data for c in chunks) == data and chunks[0].digest == digest
    s3.client().put_object(Bucket=bucket, Key=store.key(digest), Body=data[:-1] + b"!")
    with pytest.raises(DataLoss, match="altered"):
        [c async for c in download.stream_document(store, doc)]
    s3.client().delete_object(Bucket=bucket, Key=store.key(digest))
    with pytest.raises(DataLoss, match="missing"):
        [c async for c in download.stream_document(store, doc)]


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'intake.sqlite'}"
    await asyncio.to_thread(migrate.upgrade, service="intake", database_url=url)
    eng = create_engine(url)
    yield eng
    await eng.dispose()


async def _chunks(*items: interconnect_pb2.DocumentChunk) -> AsyncIterator[interconnect_pb2.DocumentChunk]:
    for item in items:
        yield item


async def test_a_document_a_child_sends_up_is_in_the_bucket_once_complete_and_goes_up_again_from_it(
    store: S3DocumentStore, s3: S3Server, bucket: str, engine: AsyncEngine
) -> None:
    received = ReceivedDocuments(engine=engine, store=store)
    data = pdf(300_000)
    digest = hashlib.sha256(data).hexdigest()
    meta: dict[str, Any] = {
        "digest": digest,
        "total_size": len(data),
        "filename": "a.pdf",
        "content_type": "application/pdf",
    }
    half = await received.receive(
        _chunks(interconnect_pb2.DocumentChunk(offset=0, data=data[:100_000], **meta))
    )
    assert (half.received, half.complete) == (100_000, False) and s3.keys(bucket) == []
    done = await received.receive(
        _chunks(interconnect_pb2.DocumentChunk(offset=100_000, data=data[100_000:], **meta))
    )
    assert done.complete and (await received.status(digest)).complete
    assert s3.keys(bucket) == [store.key(digest)] and list((store.scratch / "partial").iterdir()) == []

    # This node forwarding it to its own parent reads it back from the bucket, resuming at an offset.
    doc = common_pb2.Document(digest=digest, filename="a.pdf", content_type="application/pdf", size=len(data))
    sent = [c async for c in uploader._chunks(store, doc, 4096, len(data))]
    assert (sent[0].offset, sent[0].total_size, sent[0].filename) == (4096, len(data), "a.pdf")
    assert b"".join(c.data for c in sent) == data[4096:]
    (last,) = [c async for c in uploader._chunks(store, doc, len(data), len(data))]
    assert (last.offset, last.total_size, last.data) == (len(data), len(data), b"")
