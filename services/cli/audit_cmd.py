"""`onestop audit verify`: prove each service's hash chain, or name the first bad record."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from pathlib import Path
from typing import Any

from services.common.audit import Verdict, verify_database
from services.common.ports import SERVICES


def audited_services() -> list[str]:
    """The services that keep an audit chain."""
    return [s for s in SERVICES if hasattr(importlib.import_module(f"services.{s}.orm"), "audit")]


async def _verify_one(url: str, service: str) -> Verdict:
    return await verify_database(url, importlib.import_module(f"services.{service}.orm").audit)


GATEWAY = "gateway"


def _url(args: argparse.Namespace, service: str) -> str:
    if service == GATEWAY:
        if args.gateway_database:
            return str(args.gateway_database)
        if args.node_dir:
            return f"sqlite+aiosqlite:///{Path(args.node_dir) / 'files' / 'gateway' / 'gateway.sqlite'}"
        return str(args.database)
    return str(args.database or f"sqlite+aiosqlite:///{Path(args.node_dir) / 'db' / f'{service}.sqlite'}")


def _check(url: str, service: str) -> Verdict:
    if service == GATEWAY:
        from gateway.audit import verify_chain  # the gateway keeps its chain in its own database

        return asyncio.run(verify_chain(url))
    return asyncio.run(_verify_one(url, service))


def _verify(args: argparse.Namespace) -> int:
    services = args.service or [*audited_services(), GATEWAY]
    if not args.database and not args.node_dir:
        print("onestop audit verify: give --database URL or --node-dir DIR", file=sys.stderr)
        return 2
    failed = False
    for service in services:
        url = _url(args, service)
        try:
            verdict = _check(url, service)
        except Exception as exc:  # noqa: BLE001 - reported per service
            print(f"{service}: cannot read the audit log: {exc}")
            failed = True
            continue
        if verdict.ok:
            print(f"{service}: {verdict.records} records, chain intact")
        else:
            print(f"{service}: BROKEN after {verdict.records} good records: {verdict.problem}")
            failed = True
    return 1 if failed else 0


def register(subparsers: Any) -> None:
    """Add `audit verify` to the command line."""
    parser = subparsers.add_parser("audit", help="the hash-chained audit log")
    sub = parser.add_subparsers(dest="audit_command", required=True)
    p = sub.add_parser("verify", help="verify every record of the audit chains")
    p.add_argument("--database", help="the node's database URL (PostgreSQL)")
    p.add_argument("--node-dir", help="a node directory on the embedded default (SQLite files under db/)")
    p.add_argument(
        "--gateway-database",
        help="the gateway's accounts and audit database URL, when it is not the node's (--database)",
    )
    p.add_argument(
        "--service",
        action="append",
        choices=[*SERVICES, GATEWAY],
        help="only this service (repeatable)",
    )
    p.set_defaults(func=_verify)
