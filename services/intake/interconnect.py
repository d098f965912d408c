"""Wires intake's interconnect: the parent-facing mTLS server, and the child's uploader and result watcher."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from onestop.interconnect.v1 import interconnect_pb2
from onestop.routing.v1 import routing_pb2, routing_pb2_grpc
from services.common.grpc_server import MAX_MESSAGE_BYTES, add_servicer
from services.common.logging import get_logger
from services.common.rpc import insecure_channel
from services.common.runtime import Runtime
from services.common.settings import SettingsError
from services.common.tls import TlsError, TlsFiles, server_credentials
from services.intake import feed_pruning
from services.intake.documents import DocumentStore
from services.intake.feed_pruning import FeedPruner
from services.intake.handlers import IntakeContext
from services.intake.interconnect_api import ChildCenters, InterconnectApi
from services.intake.link_status import LinkStatusApi
from services.intake.received_documents import ReceivedDocuments
from services.intake.uploader import ParentLink, Uploader
from services.intake.watcher import ResultWatcher

log = get_logger(__name__)
SERVICES = interconnect_pb2.DESCRIPTOR.services_by_name
# Children keep their WatchResults stream alive with pings; allow them (gRPC's default answers with GOAWAY).
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),
]


@dataclass
class InterconnectParts:
    """What the interconnect adds to intake's process."""

    servicers: list[tuple[object, ServiceDescriptor]] = field(default_factory=list)
    background: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    extra_servers: list[Callable[[], Awaitable[grpc.aio.Server | None]]] = field(default_factory=list)
    uploader: Uploader | None = None
    watcher: ResultWatcher | None = None


def tls_files(runtime: Runtime) -> TlsFiles | None:
    """This node's certificate files, checked against its center; None when TLS is not configured."""
    s = runtime.settings
    try:
        files = TlsFiles.of(s.tls_cert_file, s.tls_key_file, s.tls_ca_file)
    except TlsError as exc:
        raise SettingsError(str(exc)) from None
    if files is not None and files.own_center() != s.center:
        raise SettingsError(f"ONESTOP_TLS_CERT_FILE names center {files.own_center()!r}, not {s.center!r}")
    return files


def _parent_resolver(routing_address: str, center: str) -> Callable[[], Awaitable[str]]:
    stub = routing_pb2_grpc.RoutingServiceStub(insecure_channel(routing_address))

    async def resolve() -> str:
        reply = await stub.ListCenters(routing_pb2.ListCentersRequest(), timeout=5)
        for c in reply.centers:
            if c.code == center and c.parent:
                return c.parent
        raise LookupError(f"the organisation names no parent of center {center}")

    return resolve


def build_interconnect(runtime: Runtime, ctx: IntakeContext, store: DocumentStore) -> InterconnectParts:
    """The parent-facing server (when this node has a certificate) and the child's loops (when it has a parent)."""
    settings = runtime.settings
    files = tls_files(runtime)
    parts = InterconnectParts()
    link: ParentLink | None = None
    if settings.parent_addr:
        if files is None:
            raise SettingsError(
                "ONESTOP_PARENT_ADDR needs ONESTOP_TLS_CERT_FILE, _KEY_FILE and _CA_FILE (mutual TLS)"
            )
        link = ParentLink(
            address=settings.parent_addr,
            files=files,
            resolve_parent=_parent_resolver(settings.peer("routing"), settings.center),
        )
        parts.uploader = Uploader(runtime=runtime, ctx=ctx, link=link, store=store)
        parts.watcher = ResultWatcher(runtime=runtime, ctx=ctx, link=link)
        parts.background += [parts.uploader.run, parts.watcher.run]
    parts.servicers.append((LinkStatusApi(runtime=runtime, link=link), SERVICES["InterconnectStatus"]))
    if files is None:
        log.info("no TLS certificate: this node serves no child nodes")
        return parts
    api = InterconnectApi(
        runtime=runtime,
        ctx=ctx,
        received=ReceivedDocuments(engine=runtime.engine, store=store),
        children=ChildCenters(center=settings.center, routing_address=settings.peer("routing")),
    )
    creds = server_credentials(files)
    # Acknowledged result updates are pruned after the retention (docs/INTERCONNECT.md §7).
    parts.background.append(FeedPruner(engine=runtime.engine, keep=feed_pruning.retention()).run)

    async def start() -> grpc.aio.Server:
        server = grpc.aio.server(options=SERVER_OPTIONS)
        add_servicer(server, api, SERVICES["Interconnect"])
        address = f"{settings.interconnect_host or settings.grpc_host}:{settings.interconnect_port}"
        server.add_secure_port(address, creds)
        await server.start()
        log.info("interconnect serving (mutual TLS)", address=address)
        return server

    parts.extra_servers.append(start)
    return parts
