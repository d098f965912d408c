"""The README's demo command: two nodes on the embedded default, every printed URL answers."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_prints_urls_that_answer_and_stops_cleanly(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli.main", "demo", "--dir", str(tmp_path / "demo")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 180
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if "Ctrl-C stops the demo" in line:
                break
        output = "\n".join(lines)
        assert "Ctrl-C stops the demo" in output, output
        urls = [line for line in lines if re.fullmatch(r"http://127\.0\.0\.1:\d+/\S*", line)]
        assert len(urls) >= 2, output
        for url in urls:
            with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback
                assert resp.status == 200, url
        assert re.search(r"login \S+ / \S+", output)
        assert "SERVING" in output
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    # Every node directory's audit chains, the gateway's included, verify from the files the demo left.
    nodes = [d for d in (tmp_path / "demo").iterdir() if (d / "db").is_dir()]
    assert len(nodes) == 2
    for node_dir in nodes:
        verified = subprocess.run(
            [sys.executable, "-m", "services.cli.main", "audit", "verify", "--node-dir", str(node_dir)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert re.search(r"^gateway: \d+ records, chain intact$", verified.stdout, re.M), verified.stdout
        assert re.search(r"^approval: \d+ records, chain intact$", verified.stdout, re.M), verified.stdout
