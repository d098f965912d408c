"""`onestop catalogue`: validate a catalogue file offline, import it into a running node, list versions.

    onestop catalogue validate FILE [--org ORG_FILE]
    onestop catalogue import FILE --by USERNAME [--routing HOST:PORT]
    onestop catalogue versions [--routing HOST:PORT]

`import` goes through routing's gRPC method `ImportCatalogue`, so the new version is recorded with who
made it and the changed matters, exactly as an import from the staff console.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import grpc

from onestop.routing.v1 import routing_pb2, routing_pb2_grpc
from services.common.ports import GRPC_PORTS

DEFAULT_ROUTING = os.environ.get("ONESTOP_ROUTING_ADDR") or f"127.0.0.1:{GRPC_PORTS['routing']}"


def _validate(args: argparse.Namespace) -> int:
    from services.routing.catalogue import load_catalogue
    from services.routing.catalogue_fields import DataFileError
    from services.routing.org import load_org

    try:
        departments = load_org(args.org).departments if args.org else None
        catalogue = load_catalogue(args.file, departments=departments)
    except DataFileError as exc:
        print(f"onestop catalogue validate: {exc}", file=sys.stderr)
        return 1
    print(f"{args.file}: version {catalogue.version}, {len(catalogue.matters)} matters, valid")
    return 0


def _stub(address: str) -> tuple[grpc.Channel, routing_pb2_grpc.RoutingServiceStub]:
    channel = grpc.insecure_channel(address)
    return channel, routing_pb2_grpc.RoutingServiceStub(channel)


def _import(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        content = path.read_bytes()
    except OSError as exc:
        print(f"onestop catalogue import: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    channel, stub = _stub(args.routing)
    try:
        version = stub.ImportCatalogue(
            routing_pb2.ImportCatalogueRequest(content=content, source=path.name, changed_by=args.by),
            timeout=30,
        )
    except grpc.RpcError as exc:
        print(f"onestop catalogue import: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    finally:
        channel.close()
    print(f"catalogue version {version.version} in force, by {version.changed_by}")
    for label, codes in (
        ("added", version.added),
        ("removed", version.removed),
        ("changed", version.changed),
    ):
        if codes:
            print(f"  {label}: {', '.join(codes)}")
    return 0


def _versions(args: argparse.Namespace) -> int:
    channel, stub = _stub(args.routing)
    try:
        reply = stub.ListCatalogueVersions(routing_pb2.ListCatalogueVersionsRequest(), timeout=10)
    except grpc.RpcError as exc:
        print(f"onestop catalogue versions: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    finally:
        channel.close()
    for v in reply.versions:
        when = v.changed_at.ToDatetime().isoformat() + "Z" if v.HasField("changed_at") else "-"
        print(f"{v.version:>4}  {when}  {v.changed_by}")
    return 0


def register(subparsers: Any) -> None:
    """Add `catalogue validate|import|versions` to the command line."""
    parser = subparsers.add_parser("catalogue", help="the matter catalogue: validate, import, versions")
    sub = parser.add_subparsers(dest="catalogue_command", required=True)
    p = sub.add_parser("validate", help="check a catalogue file without a running node")
    p.add_argument("file")
    p.add_argument("--org", help="an organisation file whose departments the workflows must name")
    p.set_defaults(func=_validate)
    p = sub.add_parser("import", help="import a catalogue file as the next version of a running node")
    p.add_argument("file")
    p.add_argument("--by", required=True, help="the administrator's username, recorded with the version")
    p.add_argument("--routing", default=DEFAULT_ROUTING, help="routing's gRPC address (default %(default)s)")
    p.set_defaults(func=_import)
    p = sub.add_parser("versions", help="list the catalogue versions of a running node")
    p.add_argument("--routing", default=DEFAULT_ROUTING, help="routing's gRPC address (default %(default)s)")
    p.set_defaults(func=_versions)
