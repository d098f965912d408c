"""Documents in an S3-compatible object store: `ONESTOP_DOCUMENT_STORE=s3://bucket[/prefix]`.

An upload is spooled to a local temp file while it is hashed and checked (size, type), so nothing is
sent before the digest is known and a refused upload leaves no object; it is then written under
`<prefix>/<ab>/<sha256>` (the local store's layout, so `aws s3 sync` of a local store moves it as it is)
with the SHA-256 the object store checks the bytes against, and acknowledged only after the store
confirmed the write. Up to PART_BYTES a single PUT, above that a multipart upload, each part checked
by its own SHA-256 and aborted on any failure; a document the bucket already holds is not sent again.
Endpoint, region and credentials are botocore's own variables (AWS_ENDPOINT_URL_S3 or
AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or any other botocore
credential source); docs/OPERATIONS.md, "Documents".
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from services.common.errors import Unavailable
from services.common.logging import get_logger
from services.common.settings import parse_s3_url
from services.intake.documents import CHUNK_BYTES, DocumentNotStored, StoreUnusable, spool

log = get_logger(__name__)
PART_BYTES = 8 * 1024 * 1024  # single PUT up to this; multipart parts of this size above (S3: >= 5 MiB)
REASON = "DOCUMENT_STORE_UNAVAILABLE"
# What the network or the object store may throw at a call; anything else is a bug and propagates.
_FAILURES = (ClientError, BotoCoreError, aiohttp.ClientError, asyncio.TimeoutError, OSError)


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _unavailable(exc: BaseException, doing: str) -> Unavailable:
    log.warning("document store call failed", doing=doing, error=repr(exc))
    return Unavailable(
        f"the document store is not available ({doing}: {exc}); nothing was stored, send it again",
        reason=REASON,
        zh="材料存储暂时不可用，本次材料没有保存，请重新上传",
    )


class S3DocumentStore:
    """Objects `<prefix>/<ab>/<sha256>` in one bucket, reached with aiobotocore."""

    def __init__(self, *, url: str, scratch: Path, addressing_style: str = "auto") -> None:
        self.url = url
        self.bucket, self.prefix = parse_s3_url(url)
        self.scratch = scratch
        (scratch / "tmp").mkdir(parents=True, exist_ok=True)
        self._addressing_style = addressing_style
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    def key(self, digest: str) -> str:
        """The object key of a document."""
        name = f"{digest[:2]}/{digest}"
        return f"{self.prefix}/{name}" if self.prefix else name

    @property
    def endpoint(self) -> str:
        """The endpoint the client talks to (for logs)."""
        return str(self._client.meta.endpoint_url) if self._client is not None else ""

    async def open(self) -> S3DocumentStore:
        """Create the client (no call is made yet)."""
        retries: dict[str, Any] = {}
        if not os.environ.get("AWS_MAX_ATTEMPTS") and not os.environ.get("AWS_RETRY_MODE"):
            retries = {"retries": {"mode": "standard", "max_attempts": 3}}
        config = AioConfig(
            connect_timeout=5,
            read_timeout=60,
            s3={"addressing_style": self._addressing_style},
            # We send our own SHA-256 of every PUT and part; no CRC trailers that older S3-compatible
            # stores refuse.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            **retries,
        )
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
        self._client = await self._stack.enter_async_context(
            get_session().create_client("s3", region_name=region, config=config)
        )
        return self

    async def close(self) -> None:
        """Close the client's connections."""
        await self._stack.aclose()
        self._client = None

    async def hold(self) -> None:
        """Keep the client open for the life of the process (a background task: cancelled at stop)."""
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    async def check(self) -> None:
        """The bucket exists and these credentials may use it; StoreUnusable says what is wrong."""
        where = f"{self.url} at {self.endpoint}"
        try:
            await self._client.head_bucket(Bucket=self.bucket)
        except NoCredentialsError:
            raise StoreUnusable(
                f"no credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                transient=False,
            ) from None
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404 or _code(exc) in ("404", "NoSuchBucket"):
                raise StoreUnusable(
                    f"bucket {self.bucket!r} does not exist ({where})", transient=False
                ) from None
            if status in (401, 403) or _code(exc) in ("403", "AccessDenied", "InvalidAccessKeyId"):
                raise StoreUnusable(
                    f"access to bucket {self.bucket!r} denied ({where}): check the credentials and that "
                    "they allow s3:ListBucket, s3:GetObject, s3:PutObject, s3:AbortMultipartUpload",
                    transient=False,
                ) from None
            raise StoreUnusable(f"{where} answered {exc}", transient=True) from None
        except _FAILURES as exc:
            raise StoreUnusable(f"{where} is not reachable: {exc}", transient=True) from None

    async def size(self, digest: str) -> int | None:
        """The object's size; None when the bucket has no such object."""
        try:
            head = await self._client.head_object(Bucket=self.bucket, Key=self.key(digest))
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise _unavailable(exc, "looking a document up") from None
        except _FAILURES as exc:
            raise _unavailable(exc, "looking a document up") from None
        return int(head["ContentLength"])

    async def save(
        self, chunks: AsyncIterator[bytes], *, content_type: str, max_bytes: int
    ) -> tuple[str, int]:
        """Spool, hash and check the stream, then write it; (sha256 hex, size) once the store confirmed."""
        tmp = self.scratch / "tmp" / uuid.uuid4().hex
        try:
            # No fsync: the spool is only a buffer, the acknowledgement waits for the object store.
            digest, size = await spool(
                chunks, tmp, content_type=content_type, max_bytes=max_bytes, fsync=False
            )
            await self._put(tmp, digest=digest, size=size)
            return digest, size
        finally:
            tmp.unlink(missing_ok=True)

    async def adopt(self, path: Path, *, digest: str) -> None:
        """Write a verified local file as `digest`; the file is removed once the store confirmed."""
        await self._put(path, digest=digest, size=path.stat().st_size)
        path.unlink(missing_ok=True)

    async def _put(self, path: Path, *, digest: str, size: int) -> None:
        if await self.size(digest) == size:
            return  # content-addressed: the same bytes are already there (a form shared by many cases)
        key = self.key(digest)
        try:
            if size <= PART_BYTES:
                data = await asyncio.to_thread(path.read_bytes)
                await self._client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=data,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=_b64(bytes.fromhex(digest)),
                )
            else:
                await self._multipart(path, key)
        except _FAILURES as exc:
            raise _unavailable(exc, "storing a document") from None

    async def _multipart(self, path: Path, key: str) -> None:
        upload = await self._client.create_multipart_upload(
            Bucket=self.bucket, Key=key, ChecksumAlgorithm="SHA256"
        )
        upload_id = upload["UploadId"]
        parts: list[dict[str, Any]] = []
        try:
            with open(path, "rb") as fh:
                number = 1
                while data := await asyncio.to_thread(fh.read, PART_BYTES):
                    checksum = _b64(hashlib.sha256(data).digest())
                    reply = await self._client.upload_part(
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=data,
                        ChecksumSHA256=checksum,
                    )
                    parts.append({"PartNumber": number, "ETag": reply["ETag"], "ChecksumSHA256": checksum})
                    number += 1
            await self._client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            with contextlib.suppress(*_FAILURES):
                await self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise

    async def read(
        self, digest: str, *, offset: int = 0, chunk_bytes: int = CHUNK_BYTES
    ) -> AsyncIterator[bytes]:
        """The object from `offset` on, streamed in chunks of exactly `chunk_bytes` (the last may be shorter)."""
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key(digest)}
        if offset:
            args["Range"] = f"bytes={offset}-"
        try:
            reply = await self._client.get_object(**args)
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                raise DocumentNotStored(digest) from None
            if _code(exc) == "InvalidRange":  # offset at the end: nothing left
                return
            raise _unavailable(exc, "reading a document") from None
        except _FAILURES as exc:
            raise _unavailable(exc, "reading a document") from None
        buffer = b""
        try:
            async with reply["Body"] as body:
                async for data in body.iter_chunks(chunk_bytes):
                    buffer += data
                    while len(buffer) >= chunk_bytes:
                        yield buffer[:chunk_bytes]
                        buffer = buffer[chunk_bytes:]
        except _FAILURES as exc:
            raise _unavailable(exc, "reading a document") from None
        if buffer:
            yield buffer
