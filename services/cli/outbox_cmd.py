"""`onestop outbox status|replay`: what each service has not yet published; republish after a JetStream loss.

Replay marks every outbox row created since a point in time as unsent; the running services' relays
publish them again with their original event ids, and every consumer's inbox drops what it already
applied (docs/DURABILITY.md §4).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Table, func, select, update

from services.common.db import create_engine
from services.common.ports import SERVICES


def _table(service: str) -> Table:
    table: Table = importlib.import_module(f"services.{service}.orm").outbox
    return table


def _url(args: argparse.Namespace, service: str) -> str:
    return str(args.database or f"sqlite+aiosqlite:///{Path(args.node_dir) / 'db' / f'{service}.sqlite'}")


async def status(url: str, service: str) -> tuple[int, int, datetime | None]:
    """(rows, unsent rows, creation time of the oldest unsent row) of a service's outbox."""
    table = _table(service)
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(table))).scalar_one()
            unsent, oldest = (
                await conn.execute(
                    select(func.count(), func.min(table.c.created_at)).where(table.c.sent_at.is_(None))
                )
            ).one()
    finally:
        await engine.dispose()
    return int(total), int(unsent), oldest


async def replay(url: str, service: str, since: datetime) -> int:
    """Mark the service's events created at or after `since` unsent; how many were marked."""
    table = _table(service)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(
                update(table)
                .where(table.c.created_at >= since, table.c.sent_at.is_not(None))
                .values(sent_at=None)
            )
    finally:
        await engine.dispose()
    return int(result.rowcount or 0)


def _since(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"--since {text!r} needs a UTC offset, e.g. 2026-12-05T09:00:00+08:00")
    return value


def _check_target(args: argparse.Namespace, command: str) -> bool:
    if not args.database and not args.node_dir:
        print(f"onestop outbox {command}: give --database URL or --node-dir DIR", file=sys.stderr)
        return False
    return True


def _status(args: argparse.Namespace) -> int:
    if not _check_target(args, "status"):
        return 2
    for service in args.service or SERVICES:
        total, unsent, oldest = asyncio.run(status(_url(args, service), service))
        since = f", oldest unsent created {oldest.isoformat()}" if oldest else ""
        print(f"{service}: {total} events, {unsent} not yet published{since}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    if not _check_target(args, "replay"):
        return 2
    try:
        since = _since(args.since)
    except ValueError as exc:
        print(f"onestop outbox replay: {exc}", file=sys.stderr)
        return 2
    for service in args.service or SERVICES:
        marked = asyncio.run(replay(_url(args, service), service, since))
        print(f"{service}: {marked} events since {since.isoformat()} will be published again")
    return 0


def register(subparsers: Any) -> None:
    """Add `outbox status` and `outbox replay` to the command line."""
    parser = subparsers.add_parser("outbox", help="the services' transactional outboxes")
    sub = parser.add_subparsers(dest="outbox_command", required=True)
    for name, func_, help_ in (
        ("status", _status, "events per service and how many wait to be published"),
        ("replay", _replay, "publish every event since a time again (after JetStream lost messages)"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--database", help="the node's database URL (PostgreSQL)")
        p.add_argument("--node-dir", help="a node directory on the embedded default (SQLite files under db/)")
        p.add_argument("--service", action="append", choices=SERVICES, help="only this service (repeatable)")
        if name == "replay":
            p.add_argument("--since", required=True, help="ISO 8601 time with offset, safely before the loss")
        p.set_defaults(func=func_)
