"""Shared pieces of the benchmarks: CPU accounting from /proc, result files, percentiles."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def pids_named(name: str) -> list[int]:
    """Processes whose command name is `name` (e.g. every postgres backend)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


# PostgreSQL's own processes whose work every database shares (WAL flushes, checkpoints).
POSTGRES_SHARED = ("walwriter", "checkpointer", "background writer")


def postgres_pids(databases: tuple[str, ...] = ()) -> list[int]:
    """PostgreSQL processes: all of them, or (`databases` given) the backends connected to those
    databases plus the server's shared writers, so other users of the same server are not counted."""
    pids = pids_named("postgres")
    if not databases:
        return pids
    out = []
    for pid in pids:
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        # A backend's title: "postgres: 15/main: <user> <database> <host(port)> <state>".
        words = title.split(": ", 2)[-1].split()
        if (len(words) > 1 and words[1] in databases) or any(
            title.rstrip().endswith(s) for s in POSTGRES_SHARED
        ):
            out.append(pid)
    return out


def database_of(url: str) -> str:
    """The database name of a SQLAlchemy URL (what PostgreSQL shows in its backends' titles)."""
    return url.rsplit("/", 1)[-1].split("?", 1)[0]


class CpuMeter:
    """CPU seconds spent by a set of processes between start() and stop().

    PostgreSQL is counted as every `postgres` process, or, when `databases` are named, only the backends
    of those databases (plus the shared WAL and checkpoint writers): a benchmark run next to other users
    of the same server then counts its own statements only.
    """

    def __init__(
        self,
        pids: list[int],
        *,
        include_postgres: bool = True,
        include_self: bool = True,
        databases: tuple[str, ...] = (),
    ) -> None:
        self.pids = list(pids)
        if include_self:
            self.pids.append(os.getpid())
        self.include_postgres = include_postgres
        self.databases = databases
        self.before: dict[int, float] = {}
        self.by_pid: dict[int, float] = {}

    def _sample(self) -> dict[int, float]:
        pids = self.pids + (postgres_pids(self.databases) if self.include_postgres else [])
        return {pid: process_cpu_seconds(pid) for pid in pids}

    def start(self) -> None:
        """Take the first sample."""
        self.before = self._sample()

    def stop(self) -> float:
        """CPU seconds used since start()."""
        after = self._sample()
        self.by_pid = {p: after[p] - self.before.get(p, 0.0) for p in after}
        return sum(self.by_pid.values())

    def breakdown(self, names: dict[int, str]) -> dict[str, float]:
        """CPU seconds per named process (postgres backends summed, this process as 'load generator')."""
        out: dict[str, float] = {}
        for pid, cpu in self.by_pid.items():
            name = names.get(pid) or ("load generator" if pid == os.getpid() else "postgres")
            out[name] = out.get(name, 0.0) + cpu
        return out


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def steady_rate(finished: list[float], *, low: float = 0.1, high: float = 0.9) -> float:
    """Completions per second while the run was in its steady state: between the completion of the
    `low` and the `high` fraction of the work (instants in seconds, in any order). A finite run starts
    with its pipeline filling (nothing completes for the first round trip, and the services are cold)
    and ends with it draining; the rate in between is what the system sustains."""
    if len(finished) < 10:
        return float("nan")
    ordered = sorted(finished)
    a = round(low * (len(ordered) - 1))
    b = round(high * (len(ordered) - 1))
    span = ordered[b] - ordered[a]
    return (b - a) / span if span > 0 else float("nan")


def merge_results(path: Path | None, results: dict[str, dict[str, Any]]) -> None:
    """Merge {"metric": {"value", "unit", "target", "better"}} into a JSON file."""
    if path is None:
        return
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            data = {}
    data.update(results)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def metric(value: float, unit: str, target: float | None, better: str) -> dict[str, Any]:
    """One entry of bench/results.json."""
    return {"value": round(value, 3), "unit": unit, "target": target, "better": better}
