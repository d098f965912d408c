"""The public interconnect contract: the worked example of docs/INTERCONNECT.md, run as written.

A district system that is not onestop integrates through the published protos only. This test takes
the example's Python from the document, generates its stubs with the documented protoc command from
`protos/onestop/common/v1/common.proto` and `protos/onestop/interconnect/v1/interconnect.proto` alone
into an empty folder, and runs it in a child process whose `onestop` package is that folder (checked),
against a real city node over mutual TLS. The city's departments decide; the example must print the
sealed result and stop.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from services.cli import certs_cmd
from tests.harness import NodeClients

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "INTERCONNECT.md"
CITY, DISTRICT = "210200", "210202"  # the example's PARENT_CENTER and ME
MATERIALS = ("APPLICATION", "FEASIBILITY", "SAFETY", "EIA")  # TR-001's checklist


def _example() -> str:
    """The Python block of the document's worked example (section 6)."""
    section = DOC.read_text(encoding="utf-8").split("## 6. Worked example", 1)[1].split("\n## 7.", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "section 6 should hold exactly one Python example"
    return blocks[0]


def _protoc_command() -> list[str]:
    """The stub generation command the document gives, run with this Python."""
    section = DOC.read_text(encoding="utf-8").split("## 6. Worked example", 1)[1]
    command = re.search(r"```\n(python -m grpc_tools\.protoc.*?)```", section, re.S)
    assert command, "section 6 should give the protoc command"
    words = command.group(1).replace("\\\n", " ").split()
    assert words[:3] == ["python", "-m", "grpc_tools.protoc"]
    return [sys.executable, *words[1:]]


def test_the_documented_example_uploads_a_case_and_receives_its_sealed_result(
    node_factory, tmp_path: Path
) -> None:
    ca = tmp_path / "ca"
    certs_cmd.init_ca(ca)
    city = node_factory(
        CITY,
        services=("routing", "intake", "approval"),
        env=certs_cmd.tls_env(certs_cmd.issue(ca, center=CITY, out=tmp_path / "city")),
    )
    c = NodeClients.of(city)

    # The district's own folder: the published protos, generated stubs, its certificate, the example.
    work = tmp_path / "district-system"
    (work / "protos").mkdir(parents=True)
    for rel in ("onestop/common/v1/common.proto", "onestop/interconnect/v1/interconnect.proto"):
        (work / "protos" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "protos" / rel, work / "protos" / rel)
    gen = subprocess.run(_protoc_command(), cwd=work, capture_output=True, text=True)
    assert gen.returncode == 0, gen.stderr
    for package in (
        "onestop",
        "onestop/common",
        "onestop/common/v1",
        "onestop/interconnect",
        "onestop/interconnect/v1",
    ):
        (work / package / "__init__.py").touch()  # protoc writes modules only
    issued = certs_cmd.issue(ca, center=DISTRICT, out=tmp_path / "district")
    shutil.copy(issued.cert, work / f"{DISTRICT}.pem")
    shutil.copy(issued.key, work / f"{DISTRICT}-key.pem")
    shutil.copy(ca / certs_cmd.CA_CERT, work / "ca.pem")
    for m in MATERIALS:
        (work / f"{m}.pdf").write_bytes(b"%PDF-1.4\n" + m.encode() * 100 + b"\n%%EOF\n")
    (work / "client.py").write_text(_example(), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONESTOP_", "PYTHON"))}
    env["PARENT_ADDR"] = f"127.0.0.1:{city.interconnect_port}"
    env["PYTHONUNBUFFERED"] = "1"  # each printed line reaches the test as it is printed

    where = subprocess.run(
        [sys.executable, "-c", "import onestop.interconnect.v1.interconnect_pb2 as m; print(m.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.strip().startswith(str(work)), where.stdout + where.stderr  # not the repo's stubs

    proc = subprocess.Popen(
        [sys.executable, "client.py", "TR-001", *(f"{m}={m}.pdf" for m in MATERIALS)],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        uploaded = re.match(r"uploaded as (\S+) missing: \[\]", first)
        assert uploaded, first + proc.stdout.read()
        number = uploaded.group(1)
        for task in c.wait_tasks(number, count=4, timeout=30):
            c.decide(task)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        c.close()
    assert proc.returncode == 0, out
    assert re.search(r"^\d+ concluded \S+", out, re.M), out
    assert re.search(rf"^sealed by {CITY} key \S+", out, re.M), out
    # The refusal's Chinese, read from the status details with grpcio-status alone.
    assert f"too early to rate: FAILED_PRECONDITION 报件 {number} 在上级中心尚未办结" in out, out
    assert "rated; the retry was a duplicate: True" in out, out
    assert int((work / "cursor.txt").read_text()) >= 1  # the cursor it keeps to resume from
