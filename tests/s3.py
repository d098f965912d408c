"""A real S3-compatible server for the document store tests: moto's server mode on a free port.

The code under test talks to it over a socket with its own client (aiobotocore); the tests look at the
bucket with boto3, also over the socket. Nothing is patched in process.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from services.cli.node import free_port

HOST = "127.0.0.1"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "onestop-test",
    "AWS_SECRET_ACCESS_KEY": "onestop-test-secret",
    "AWS_REGION": "us-east-1",
}


@dataclass
class S3Server:
    """moto_server on one port; can be stopped and started again (its objects stay: they live in
    this process's moto backend, like a real store's survive its restart)."""

    port: int = field(default_factory=free_port)
    _server: ThreadedMotoServer | None = None

    @property
    def endpoint(self) -> str:
        """The URL clients use (AWS_ENDPOINT_URL_S3)."""
        return f"http://{HOST}:{self.port}"

    def env(self, url: str) -> dict[str, str]:
        """The environment of an intake process that stores documents at `url` on this server."""
        return {"ONESTOP_DOCUMENT_STORE": url, "AWS_ENDPOINT_URL_S3": self.endpoint, **CREDENTIALS}

    def start(self) -> None:
        """Start listening and wait until it answers."""
        self._server = ThreadedMotoServer(ip_address=HOST, port=self.port, verbose=False)
        self._server.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((HOST, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        pytest.fail("moto server did not start")

    def stop(self) -> None:
        """Stop listening (the store is unreachable until start())."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client(self) -> Any:
        """A boto3 client on this server, for looking at buckets."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=CREDENTIALS["AWS_REGION"],
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def new_bucket(self) -> str:
        """A fresh, empty bucket's name."""
        name = f"onestop-docs-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        """Every object key in the bucket."""
        reply = self.client().list_objects_v2(Bucket=bucket)
        return sorted(o["Key"] for o in reply.get("Contents", []))

    def uploads_in_progress(self, bucket: str) -> list[str]:
        """Keys of multipart uploads neither completed nor aborted."""
        reply = self.client().list_multipart_uploads(Bucket=bucket)
        return [u["Key"] for u in reply.get("Uploads", [])]


def running_s3() -> Iterator[S3Server]:
    """Body of a fixture: a started server, stopped afterwards."""
    server = S3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()
