"""`onestop outbox status|replay` on a node's embedded (SQLite) databases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.cli import outbox_cmd
from services.cli.main import build_parser
from services.common.db import create_engine
from services.common.ports import SERVICES

T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


async def _seed(node_dir: Path) -> None:
    (node_dir / "db").mkdir(parents=True)
    for service in SERVICES:
        table = outbox_cmd._table(service)
        engine = create_engine(f"sqlite+aiosqlite:///{node_dir / 'db' / f'{service}.sqlite'}")
        async with engine.begin() as conn:
            await conn.run_sync(lambda c, t=table: t.create(c))
            await conn.execute(
                table.insert(),
                [
                    {
                        "event_id": f"{service}-{i}",
                        "subject": "ev.case_accepted",
                        "payload": b"x",
                        "created_at": T0 + timedelta(minutes=i),
                        "sent_at": None if i == 3 else T0 + timedelta(minutes=i, seconds=1),
                    }
                    for i in range(4)
                ],
            )
        await engine.dispose()


def _run(*argv: str) -> int:
    args = build_parser().parse_args(list(argv))
    return int(args.func(args))


def test_replay_marks_the_events_since_a_time_unsent_and_status_counts_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_seed(tmp_path))
    url = f"sqlite+aiosqlite:///{tmp_path / 'db' / 'intake.sqlite'}"
    assert asyncio.run(outbox_cmd.status(url, "intake"))[:2] == (4, 1)
    since = (T0 + timedelta(minutes=1)).isoformat()
    assert _run("outbox", "replay", "--node-dir", str(tmp_path), "--since", since) == 0
    out = capsys.readouterr().out
    assert "intake: 2 events since" in out and out.count("will be published again") == len(SERVICES)
    total, unsent, oldest = asyncio.run(outbox_cmd.status(url, "intake"))
    assert (total, unsent) == (4, 3) and oldest is not None
    assert _run("outbox", "status", "--node-dir", str(tmp_path), "--service", "routing") == 0
    assert "routing: 4 events, 3 not yet published" in capsys.readouterr().out


def test_replay_refuses_a_time_without_an_offset(tmp_path: Path) -> None:
    assert _run("outbox", "replay", "--node-dir", str(tmp_path), "--since", "2026-12-05T09:00:00") == 2
    assert _run("outbox", "replay", "--since", "2026-12-05T09:00:00+08:00") == 2
