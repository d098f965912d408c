"""Intake as a real process keeping its documents in an S3-compatible store (moto's server mode).

Configured only as an operator would (ONESTOP_DOCUMENT_STORE, AWS_ENDPOINT_URL_S3 and the AWS
credentials), used only through the public gRPC API: an upload is in the bucket when it is
acknowledged, is served back for its case byte for byte, and an upload while the store is away is
refused UNAVAILABLE and kept nowhere; a store intake cannot use keeps it from ever serving.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from onestop.common.v1 import common_pb2
from onestop.intake.v1 import intake_pb2
from services.cli.node import LaunchError, Node
from tests.harness import NodeClients
from tests.s3 import S3Server, running_s3

pytestmark = pytest.mark.e2e
MATTER = "PL-001"  # DRAWINGS may be up to 100 MB
PREFIX = "210200/documents"
SERVICES = ("routing", "intake")


@dataclass
class World:
    node: Node
    grpc: NodeClients
    s3: S3Server
    bucket: str

    def upload(self, material: str, data: bytes, piece: int = 256 * 1024) -> common_pb2.Document:
        """UploadDocument streamed in pieces, as the gateway sends a large file."""

        def chunks() -> Iterator[intake_pb2.DocumentChunk]:
            for i in range(0, len(data), piece):
                first: dict[str, Any] = (
                    {"filename": f"{material}.pdf", "content_type": "application/pdf"} if i == 0 else {}
                )
                yield intake_pb2.DocumentChunk(material_code=material, data=data[i : i + piece], **first)

        return self.grpc.intake.UploadDocument(chunks(), timeout=60)

    def key(self, digest: str) -> str:
        return f"{PREFIX}/{digest[:2]}/{digest}"


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    yield from running_s3()


@pytest.fixture(scope="module")
def world(s3: S3Server, module_node_factory: Callable[..., Node]) -> Iterator[World]:
    bucket = s3.new_bucket()
    node = module_node_factory(sqlite=True, services=SERVICES, env=s3.env(f"s3://{bucket}/{PREFIX}"))
    c = NodeClients.of(node)
    try:
        yield World(node, c, s3, bucket)
    finally:
        c.close()


def pdf(size: int) -> bytes:
    return b"%PDF-1.7 " + os.urandom(size - 9)


def test_a_document_uploaded_over_grpc_is_in_the_bucket_and_served_back_for_its_case(world: World) -> None:
    drawings = pdf(10 * 1024 * 1024 + 321)  # a multipart upload to the store
    doc = world.upload("DRAWINGS", drawings)
    assert doc.digest == hashlib.sha256(drawings).hexdigest() and doc.size == len(drawings)
    assert world.key(doc.digest) in world.s3.keys(world.bucket)
    again = world.upload("DRAWINGS", drawings, piece=1024 * 1024)
    assert again.digest == doc.digest

    others = [world.upload(m, pdf(4096)) for m in ("APPLICATION", "LAND-CERT", "SITE-PLAN")]
    reply = world.grpc.submit(MATTER, documents=[*others, doc])
    number = reply.case.case_number
    assert number, reply
    assert world.s3.keys(world.bucket) == sorted(world.key(d.digest) for d in [*others, doc])
    # Nothing went to the local disk.
    assert not (world.node.data_dir / "files" / "intake" / "documents").exists()

    req = intake_pb2.DownloadDocumentRequest(
        case_number=number, digest=doc.digest, query_code=reply.query_code
    )
    chunks = list(world.grpc.intake.DownloadDocument(req, timeout=30))
    assert b"".join(c.data for c in chunks) == drawings
    assert (chunks[0].digest, chunks[0].size, chunks[0].filename) == (
        doc.digest,
        len(drawings),
        "DRAWINGS.pdf",
    )


def test_while_the_store_is_away_an_upload_is_refused_unavailable_and_nothing_is_kept(world: World) -> None:
    before = world.s3.keys(world.bucket)
    data = pdf(20_000)
    world.s3.stop()
    try:
        with pytest.raises(grpc.RpcError) as err:
            world.upload("APPLICATION", data)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "document store is not available" in (err.value.details() or "")
        # Cases can still be tracked meanwhile: intake stays in service, only uploads are refused.
        assert world.node.health("intake") == "SERVING"
    finally:
        world.s3.start()
    assert world.s3.keys(world.bucket) == before
    doc = world.upload("APPLICATION", data)  # the store is back: no restart needed
    assert world.s3.keys(world.bucket) == sorted([*before, world.key(doc.digest)])


def test_intake_does_not_start_with_a_bucket_that_does_not_exist(
    s3: S3Server, node_factory: Callable[..., Node]
) -> None:
    env = {**s3.env("s3://no-such-bucket"), "ONESTOP_ROUTING_ADDR": "127.0.0.1:1"}
    with pytest.raises(LaunchError, match="exited") as err:
        node_factory(sqlite=True, services=("intake",), env=env)
    log = re.search(r"; log (\S+):\n", str(err.value))
    assert log, err.value
    lines = [json.loads(line) for line in Path(log[1]).read_text().splitlines() if line.startswith("{")]
    (refused,) = [e for e in lines if e.get("event") == "document store unusable; not starting"]
    assert refused["store"] == "s3://no-such-bucket" and "does not exist" in refused["problem"]
    assert not any(e.get("event") == "serving" for e in lines)
