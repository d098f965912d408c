"""The matter catalogue over gRPC: search, versions, an import recorded with who, cases keep their version."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from onestop.routing.v1 import routing_pb2
from tests.harness import NodeClients

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "services" / "routing" / "data" / "demo_catalogue.yaml"
CORE = ("routing", "intake", "approval")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _tr001_with_promise(days: int, *, version: int = 2) -> bytes:
    """The demo catalogue as the next version `version`, with TR-001's promised limit changed."""
    text = CATALOGUE.read_text(encoding="utf-8").replace("\nversion: 1\n", f"\nversion: {version}\n", 1)
    start = text.index("  - code: TR-001")
    at = text.index("promised_limit_days: 10", start)
    return (text[:at] + f"promised_limit_days: {days}" + text[at + len("promised_limit_days: 10") :]).encode()


def test_the_catalogue_is_searched_versioned_and_each_case_keeps_the_version_it_was_accepted_under(
    node_factory, tmp_path: Path
) -> None:
    # Intake caches matters (ONESTOP_MATTER_CACHE_S, 30 s by default); here a new version applies at once.
    node = node_factory(services=CORE, env={"ONESTOP_MATTER_CACHE_S": "0"})
    c = NodeClients.of(node)
    routing = c.routing

    # Search by name (zh and en) and by category; the reply names the version it comes from.
    found = routing.ListMatters(routing_pb2.ListMattersRequest(query="技术改造"), timeout=5)
    assert [m.code for m in found.matters] == ["TR-001"] and found.version == 1
    english = routing.ListMatters(routing_pb2.ListMattersRequest(query="technical renovation"), timeout=5)
    assert "TR-001" in [m.code for m in english.matters]
    convenience = routing.ListMatters(routing_pb2.ListMattersRequest(category="convenience"), timeout=5)
    assert convenience.matters and all(m.category == "convenience" for m in convenience.matters)
    matter = routing.GetMatter(routing_pb2.GetMatterRequest(code="TR-001"), timeout=5)
    assert matter.promised_limit_days == 10 and [s.department for s in matter.workflow] == [
        "ECON",
        "ENV",
        "SAFETY",
        "FIRE",
    ]

    before = c.submit("TR-001").case
    assert before.matter_version == 1
    old_due = c.wait_tasks(before.case_number, count=4)[0].due_at.ToDatetime()

    # An administrator imports a changed catalogue: version 2, the change and its author recorded.
    v2 = routing.ImportCatalogue(
        routing_pb2.ImportCatalogueRequest(
            content=_tr001_with_promise(8), source="catalogue-2.yaml", changed_by="admin.gjz"
        ),
        timeout=10,
    )
    assert v2.version == 2 and list(v2.changed) == ["TR-001"] and not v2.added and not v2.removed
    versions = routing.ListCatalogueVersions(routing_pb2.ListCatalogueVersionsRequest(), timeout=5).versions
    assert [(v.version, v.changed_by) for v in versions] == [(1, "system:initial-import"), (2, "admin.gjz")]
    assert "TR-001" in versions[0].added and list(versions[1].changed) == ["TR-001"]
    assert routing.GetMatter(routing_pb2.GetMatterRequest(code="TR-001"), timeout=5).promised_limit_days == 8
    old = routing.GetMatter(routing_pb2.GetMatterRequest(code="TR-001", version=1), timeout=5)
    assert old.promised_limit_days == 10 and old.version == 1

    # The case accepted before keeps version 1 and its due date; a new case is under version 2.
    assert c.case(before.case_number).matter_version == 1
    assert c.tasks(before.case_number)[0].due_at.ToDatetime() == old_due
    after = c.submit("TR-001").case
    assert after.matter_version == 2
    new_due = c.wait_tasks(after.case_number, count=4)[0].due_at.ToDatetime()
    assert new_due < old_due  # 8 working days instead of 10, from the same day or a later one

    # The admin command imports a file the same way and lists the versions.
    third = tmp_path / "catalogue-3.yaml"
    third.write_bytes(_tr001_with_promise(9, version=3))
    imported = _cli(
        "catalogue", "import", str(third), "--by", "admin.gjz", "--routing", node.address("routing")
    )
    assert imported.returncode == 0, imported.stderr
    assert (
        "catalogue version 3 in force, by admin.gjz" in imported.stdout
        and "changed: TR-001" in imported.stdout
    )
    listed = _cli("catalogue", "versions", "--routing", node.address("routing"))
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["1", "2", "3"]
    again = _cli("catalogue", "import", str(third), "--by", "admin.gjz", "--routing", node.address("routing"))
    assert again.returncode == 1 and "version" in again.stderr

    # Bad imports change nothing and say what is wrong.
    with pytest.raises(grpc.RpcError) as stale:
        routing.ImportCatalogue(
            routing_pb2.ImportCatalogueRequest(
                content=_tr001_with_promise(7, version=2), changed_by="admin.gjz"
            ),
            timeout=10,
        )
    assert stale.value.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT)
    assert "version" in (stale.value.details() or "")
    with pytest.raises(grpc.RpcError) as anonymous:
        routing.ImportCatalogue(routing_pb2.ImportCatalogueRequest(content=_tr001_with_promise(7, version=3)))
    assert anonymous.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "changed_by" in (anonymous.value.details() or "")
    with pytest.raises(grpc.RpcError) as broken:
        routing.ImportCatalogue(
            routing_pb2.ImportCatalogueRequest(
                content=b"matters: [\n  - code: X\n", source="broken.yaml", changed_by="admin.gjz"
            ),
            timeout=10,
        )
    assert broken.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "broken.yaml" in (broken.value.details() or "")
    versions = routing.ListCatalogueVersions(routing_pb2.ListCatalogueVersionsRequest(), timeout=5).versions
    assert [v.version for v in versions] == [1, 2, 3]
    with pytest.raises(grpc.RpcError) as unknown:
        routing.GetMatter(routing_pb2.GetMatterRequest(code="NO-SUCH"), timeout=5)
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
