"""Opening a case's documents on a running node: staff of the case, the applicant with the query code.

Intake serves only a digest the named case refers to and checks the stored bytes against it; the gateway
applies the case detail's own authorization, audits the access, and shows a damaged copy as a clear page.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from onestop.common.v1 import common_pb2
from onestop.intake.v1 import intake_pb2
from onestop.supervision.v1 import supervision_pb2, supervision_pb2_grpc
from services.cli.node import Node
from tests.e2e.test_authorization_matrix import Db, Web
from tests.harness import NodeClients, actor, wait_for

pytestmark = pytest.mark.e2e
MATTER = "PL-001"  # decided by the city's PLAN window alone
PASSWORDS = {u: f"pw-{u}-{uuid.uuid4().hex[:10]}" for u in ("clerk.plan", "clerk.drc")}


@dataclass
class Filed:
    """A submitted case: its number, query code and documents."""

    number: str
    code: str
    documents: list[common_pb2.Document]

    def doc(self, material: str = "APPLICATION") -> common_pb2.Document:
        """The case's document for a material."""
        return next(d for d in self.documents if d.material_code == material)


@dataclass
class World:
    """A city node with its gateway, gRPC stubs, the gateway's database, and signed-in clerks."""

    node: Node
    grpc: NodeClients
    db: Db
    clerks: dict[str, Web]
    supervision: supervision_pb2_grpc.SupervisionServiceStub

    def file(self) -> Filed:
        """Submit a complete case whose documents are unique to it (tampering one touches no other)."""
        c = self.grpc
        docs = [
            c.upload(m, b"%PDF-1.4 " + m.encode() + os.urandom(4096), filename=f"{m} 申请材料.pdf")
            for m in ("APPLICATION", "LAND-CERT", "SITE-PLAN", "DRAWINGS")
        ]
        reply = c.submit(MATTER, documents=docs)
        assert reply.case.case_number, reply
        number = reply.case.case_number
        c.wait_tasks(number)  # the PLAN task is what lets clerk.plan open the case
        # The staff case page answers 404 until supervision has started the case's clocks.
        wait_for(lambda: self._has_clocks(number), what=f"supervision's clocks of {number}")
        return Filed(number, reply.query_code, list(reply.case.documents))

    def _has_clocks(self, number: str) -> bool:
        try:
            self.supervision.GetClocks(supervision_pb2.GetClocksRequest(case_number=number), timeout=5)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise
        return True

    def stored(self, digest: str) -> Path:
        """Where intake keeps a document's bytes."""
        return self.node.data_dir / "files" / "intake" / "documents" / digest[:2] / digest

    def download(self, number: str, digest: str, **extra: str) -> bytes:
        """DownloadDocument over gRPC, assembled."""
        req = intake_pb2.DownloadDocumentRequest(
            case_number=number, digest=digest, by=actor("clerk.plan", "window_clerk", "PLAN"), **extra
        )
        return b"".join(chunk.data for chunk in self.grpc.intake.DownloadDocument(req, timeout=10))


@pytest.fixture(scope="module")
def world(
    module_node_factory: Callable[..., Node], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    accounts = tmp_path_factory.mktemp("documents") / "accounts.json"
    accounts.write_text(json.dumps(PASSWORDS), encoding="utf-8")
    node = module_node_factory(
        gateway=True,
        env={
            "ONESTOP_DEMO_ACCOUNTS_FILE": str(accounts),
            "ONESTOP_SESSION_SECRET": uuid.uuid4().hex * 2,
            "ONESTOP_GATEWAY_LOOKUP_RATE": "1000/0.01",
        },
    )
    c = NodeClients.of(node)
    channel = grpc.insecure_channel(node.address("supervision"))
    db = Db(node.config.database)
    clerks = {}
    for username, password in PASSWORDS.items():
        web = Web(node.gateway_url)
        assert web.sign_in(username, password).status == 303, username
        clerks[username] = web
    try:
        yield World(node, c, db, clerks, supervision_pb2_grpc.SupervisionServiceStub(channel))
    finally:
        channel.close()
        db.close()
        c.close()


def test_a_clerk_of_the_case_department_downloads_the_exact_bytes(world: World) -> None:
    case = world.file()
    doc = case.doc()
    web = world.clerks["clerk.plan"]
    page = web.get(f"/staff/cases/{case.number}")
    assert page.status == 200, re.findall(r"role=\"alert\">([^<]*)<", page.text)
    assert f"/staff/cases/{case.number}/documents/{doc.digest}" in page.text
    reply = web.get(f"/staff/cases/{case.number}/documents/{doc.digest}")
    assert reply.status == 200, reply.text[:300]
    assert hashlib.sha256(reply.body).hexdigest() == doc.digest and len(reply.body) == doc.size
    assert reply.headers["Content-Type"] == "application/pdf"
    assert reply.headers["Content-Disposition"].startswith('attachment; filename="APPLICATION _')
    assert "filename*=UTF-8''APPLICATION%20%E7%94%B3" in reply.headers["Content-Disposition"]
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert reply.headers["Cache-Control"] == "no-store"
    (rec,) = world.db.audit(reply.request_id)
    assert (rec["actor"], rec["action"], rec["detail"]["outcome"]) == ("clerk.plan", "view_document", "ok")
    assert rec["subject"] == case.number and rec["detail"]["digest"] == doc.digest


def test_a_clerk_of_another_department_is_refused_and_audited(world: World) -> None:
    case = world.file()
    reply = world.clerks["clerk.drc"].get(f"/staff/cases/{case.number}/documents/{case.doc().digest}")
    assert reply.status == 403
    assert b"%PDF" not in reply.body
    (rec,) = world.db.audit(reply.request_id)
    assert (rec["actor"], rec["action"], rec["detail"]["outcome"]) == (
        "clerk.drc",
        "view_document",
        "refused",
    )


def test_the_applicant_downloads_with_the_query_code_and_is_sent_to_look_it_up_without(
    world: World,
) -> None:
    case = world.file()
    doc = case.doc("SITE-PLAN")
    path = f"/track/{case.number}/documents/{doc.digest}"
    applicant = Web(world.node.gateway_url)
    without = applicant.get(path)
    assert without.status == 303 and without.location == f"/track?number={case.number}"
    assert applicant.get(f"/track?number={case.number}&code=WRONG999").status == 404
    assert applicant.get(path).status == 303  # a wrong code unlocks nothing
    assert applicant.get(f"/track?number={case.number}&code={case.code}").status == 303
    assert path in applicant.get(f"/track/{case.number}").text
    reply = applicant.get(path)
    assert reply.status == 200 and hashlib.sha256(reply.body).hexdigest() == doc.digest
    # Another case's document through this case's tracking session: not found, and recorded.
    other = world.file()
    wrong = applicant.get(f"/track/{case.number}/documents/{other.doc().digest}")
    assert wrong.status == 404 and b"%PDF" not in wrong.body
    (rec,) = world.db.audit(wrong.request_id)
    assert (rec["action"], rec["detail"]["outcome"]) == ("download_document", "refused")


def test_intake_serves_only_the_named_case_documents(world: World) -> None:
    mine, other = world.file(), world.file()
    assert world.download(mine.number, mine.doc().digest) == world.stored(mine.doc().digest).read_bytes()
    for number, digest, extra in (
        (mine.number, other.doc().digest, {}),  # another case's document
        (mine.number, "0" * 64, {}),  # nobody's
        ("210200-19990101-9999", mine.doc().digest, {}),  # no such case
        (mine.number, mine.doc().digest, {"query_code": "WRONG999"}),  # the applicant's wrong code
    ):
        with pytest.raises(grpc.RpcError) as refused:
            world.download(number, digest, **extra)
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND, (number, digest, extra)
        assert other.doc().filename not in (refused.value.details() or "")
    assert world.download(mine.number, mine.doc().digest, query_code=mine.code.lower())


def test_a_tampered_or_missing_stored_file_is_data_loss_and_a_clear_page(world: World) -> None:
    case = world.file()
    altered, gone = case.doc("DRAWINGS"), case.doc("LAND-CERT")
    world.stored(altered.digest).write_bytes(b"%PDF-1.4 not what the applicant sent")
    world.stored(gone.digest).unlink()
    for doc, problem in ((altered, "altered"), (gone, "missing")):
        with pytest.raises(grpc.RpcError) as lost:
            world.download(case.number, doc.digest)
        assert lost.value.code() == grpc.StatusCode.DATA_LOSS
        assert problem in (lost.value.details() or "")
    web = world.clerks["clerk.plan"]
    reply = web.get(f"/staff/cases/{case.number}/documents/{altered.digest}")
    assert reply.status == 500
    assert "已损坏或缺失" in reply.text and "Traceback" not in reply.text
    reference = re.search(r"<code>([0-9a-f]{12})</code>", reply.text)
    assert reference, reply.text[:500]
    gateway_log = (world.node.logs / "gateway.log").read_text(encoding="utf-8")
    assert reference.group(1) in gateway_log
    intake_log = (world.node.logs / "intake.log").read_text(encoding="utf-8")
    assert "stored document is damaged" in intake_log and altered.digest in intake_log
    (rec,) = world.db.audit(reply.request_id)
    assert (rec["action"], rec["detail"]["outcome"]) == ("view_document", "error")
    # The case's intact documents are still served.
    assert web.get(f"/staff/cases/{case.number}/documents/{case.doc().digest}").status == 200
