"""Fuzzing the gateway: the JSON API from openapi.yaml (schemathesis), the forms (hypothesis).

Every answer: no 5xx, no stack trace, a clear message on every error, redirects only to this site, and
nothing half-written (a refused submission or upload stores no case and no document). Uploads that are
oversized, mistyped (content not matching the declared type), zip bombs in disguise or named with path
tricks get a clear 4xx, and the names that are stored are sanitized.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode

import gateway
from gateway.audit import verify_chain
from onestop.common.v1 import common_pb2
from services.cli.node import Node
from tests.e2e.test_authorization_matrix import PDF, Db, Reply, Web, case_number
from tests.harness import NodeClients

pytestmark = pytest.mark.e2e
OPENAPI = Path(gateway.__file__).resolve().parent / "openapi.yaml"
SCHEMA = schemathesis.openapi.from_path(OPENAPI)
SCHEMA.config.generation.update(modes=list(GenerationMode), max_examples=40, with_security_parameters=False)
SCHEMA.config.update(request_timeout=20)
STAFF = ("clerk.plan", "head.plan", "director", "admin")
PASSWORDS = {u: f"pw-{u}-{uuid.uuid4().hex[:10]}" for u in (*STAFF, "clerk.ltax")}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
SAFE_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
TEXT = st.one_of(
    SAFE_TEXT,
    st.sampled_from(
        [
            "",
            "x" * 5000,
            "../../etc/passwd",
            "C:\\evil",
            "a\x00b",
            "\r\nSet-Cookie: evil=1",
            "//evil.example/",
            "/\\evil.example",
            "/\t/evil.example",
            "javascript:alert(1)",
            "'; DROP TABLE intake_cases; --",
            "<script>alert(1)</script>",
            "\u202egnp.exe",
            "PLAN",
            "210200-20250106-000001",
            "-1",
            "99999999999999999999",
            "2025-02-30",
            "\ud800 lone surrogate",
            "%ff%fe",
        ]
    ),
)
NAMES = st.one_of(
    TEXT,
    st.sampled_from(
        ["../../etc/passwd", "C:\\evil\\scan.pdf", "a\x00.pdf", "a\nb.pdf", "...", "scan.pdf", "a.ofd"]
    ),
)


@dataclass
class Fuzz:
    """The node under fuzz, its visitors and what must not grow when a request is refused."""

    node: Node
    grpc: NodeClients
    db: Db
    visitors: dict[str, Web]
    number: str  # an open PLAN case
    code: str
    task_id: str

    @property
    def base(self) -> str:
        """The gateway's URL."""
        return self.node.gateway_url

    def counts(self) -> tuple[int, int]:
        """Cases and stored documents."""
        row = self.db.run(
            self.db.conn.fetchrow(
                "SELECT (SELECT count(*) FROM intake_cases) AS cases,"
                " (SELECT count(*) FROM intake_documents) AS docs"
            )
        )
        return int(row["cases"]), int(row["docs"])

    def fresh(self) -> Web:
        """A new anonymous visitor."""
        return Web(self.base)


@pytest.fixture(scope="module")
def fuzz(
    module_node_factory: Callable[..., Node], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fuzz]:
    """One city node with its gateway on PostgreSQL, limits wide open, staff signed in."""
    accounts = tmp_path_factory.mktemp("fuzz") / "accounts.json"
    accounts.write_text(json.dumps(PASSWORDS), encoding="utf-8")
    wide = "100000/0.001"
    node = module_node_factory(
        gateway=True,
        env={
            "ONESTOP_DEMO_ACCOUNTS_FILE": str(accounts),
            "ONESTOP_SESSION_SECRET": uuid.uuid4().hex * 2,
            "ONESTOP_GATEWAY_SIGN_IN_RATE": wide,
            "ONESTOP_GATEWAY_LOOKUP_RATE": wide,
            "ONESTOP_GATEWAY_UPLOAD_RATE": wide,
            "ONESTOP_GATEWAY_REFUSAL_RATE": wide,
        },
    )
    c = NodeClients.of(node)
    db = Db(node.config.database)
    reply = c.submit("PL-001")
    (task,) = c.wait_tasks(reply.case.case_number)
    visitors = {"anonymous": Web(node.gateway_url)}
    for username in STAFF:
        web = Web(node.gateway_url)
        assert web.sign_in(username, PASSWORDS[username]).status == 303
        visitors[username] = web
    try:
        yield Fuzz(node, c, db, visitors, reply.case.case_number, reply.query_code, task.task_id)
    finally:
        db.close()
        c.close()


# ---------------------------------------------------------------------------------------------------
# What every answer must look like.


def clear(where: str, status: int, content_type: str, body: str, location: str = "") -> None:
    """No 5xx, no stack trace, a message on every error, redirects only to this site."""
    assert status < 500, f"{where}: {status} {body[:800]}"
    assert "Traceback" not in body and 'File "/' not in body, f"{where}: a stack trace in the body"
    if status >= 400:
        if content_type.startswith("text/plain") and status == 400:
            assert body.strip(), (
                f"{where}: an empty 400"
            )  # aiohttp's own answer to an unreadable request line
        elif "json" in content_type:
            message = json.loads(body)["error"]["message"]
            assert isinstance(message, str) and message.strip(), f"{where}: {body[:300]}"
        else:
            assert re.search(r'<p class="error" role="alert"[^>]*>\s*[^<\s]', body), (
                f"{where}: {status} {body[:300]}"
            )
    if 300 <= status < 400:
        assert location.startswith("/") and not location.startswith("//") and "\\" not in location, location
        assert not any(ord(ch) < 0x20 for ch in location), location


def clear_reply(reply: Reply) -> None:
    """`clear` for one of our own requests."""
    clear(
        f"{reply.method} {reply.path}",
        reply.status,
        reply.headers.get("Content-Type", ""),
        reply.text,
        reply.location,
    )


def form_body(fields: dict[str, str], csrf: str) -> bytes:
    """An urlencoded body (UTF-8 with surrogates escaped as they would arrive from a broken client)."""
    pairs = [*fields.items(), ("_csrf", csrf)]
    return "&".join(
        f"{quote(k.encode('utf-8', 'surrogatepass'))}={quote(v.encode('utf-8', 'surrogatepass'))}"
        for k, v in pairs
    ).encode()


def multipart(fields: dict[str, str], files: dict[str, tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """A multipart body and its content type; odd file names go RFC 5987-encoded, as browsers send them."""
    boundary = uuid.uuid4().hex
    out = bytearray()
    for name, value in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value.encode("utf-8", "surrogatepass") + b"\r\n"
    for name, (filename, ctype, data) in files.items():
        plain = all(0x20 <= ord(ch) < 0x7F and ch not in '"\\' for ch in filename)
        disposition = (
            f'filename="{filename}"'
            if plain
            else f"filename*=UTF-8''{quote(filename.encode('utf-8', 'surrogatepass'), safe='')}"
        )
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; {disposition}\r\n'.encode()
        out += f"Content-Type: {ctype}\r\n\r\n".encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def upload(
    fz: Fuzz, matter: str, material: str, filename: str, ctype: str, data: bytes, *, web: Web | None = None
) -> Reply:
    """POST /api/v1/uploads as the upload script does."""
    web = web or fz.visitors["anonymous"]
    body, content_type = multipart(
        {"matter_code": matter, "material_code": material}, {"file": (filename, ctype, data)}
    )
    return web.request(
        "POST",
        "/api/v1/uploads",
        body=body,
        headers={"Content-Type": content_type, "X-CSRF-Token": web.csrf()},
    )


def unique_pdf() -> bytes:
    """A PDF nobody uploaded before (stored names belong to the first upload of a content)."""
    return PDF + os.urandom(16)


# ---------------------------------------------------------------------------------------------------
# The JSON API, from its OpenAPI description.


def test_the_served_description_is_the_file(fuzz: Fuzz) -> None:
    served = fuzz.fresh().get("/api/openapi.json")
    assert served.status == 200
    assert served.json() == yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))


@pytest.fixture(params=["anonymous", "clerk.plan"])
def api_visitor(request: pytest.FixtureRequest, fuzz: Fuzz) -> Web:
    """Who calls the API: a visitor, or a signed-in window clerk."""
    return fuzz.visitors[request.param]


@SCHEMA.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_api_endpoint(case: Any, fuzz: Fuzz, api_visitor: Web) -> None:
    before = fuzz.counts()
    headers = {
        "Cookie": "; ".join(f"{k}={v}" for k, v in api_visitor.cookies.items()),
        "X-CSRF-Token": api_visitor.csrf(),
    }
    response = case.call(base_url=fuzz.base, headers=headers, timeout=20, allow_redirects=False)
    where = f"{case.method} {case.formatted_path}"
    content_type = (response.headers.get("content-type") or [""])[0]
    clear(where, response.status_code, content_type, response.text)
    if response.status_code >= 400 and case.method.upper() != "GET":
        assert fuzz.counts() == before, f"{where}: a refused request stored something"
    if case.path.startswith("/api/"):
        assert "json" in content_type or "event-stream" in content_type, f"{where}: {content_type}"


# ---------------------------------------------------------------------------------------------------
# The forms.

PUBLIC_FORMS = (
    "/track",
    "/staff/login",
    "/guide/PL-001/questions",
    "/verify",
    "/track/{number}/evaluation",
    "/track/{number}/withdraw",
    "/track/{number}/supplement",
    "/apply/PL-001/supplement",
    "/staff/logout",
)
PUBLIC_FIELDS = (
    "number",
    "code",
    "username",
    "password",
    "next",
    "question",
    "name",
    "contact",
    "sealed",
    "rating",
    "comment",
    "reason",
    "case_id",
    "query_code",
    "tags",
)


@FUZZ
@given(
    path=st.sampled_from(PUBLIC_FORMS),
    number=st.one_of(st.just("{real}"), TEXT),
    fields=st.dictionaries(st.sampled_from(PUBLIC_FIELDS) | SAFE_TEXT, TEXT, max_size=6),
)
def test_public_forms(fuzz: Fuzz, path: str, number: str, fields: dict[str, str]) -> None:
    web = fuzz.fresh()
    real = number == "{real}"
    if real and "number" in fields:
        fields["number"] = fuzz.number
    target = path.replace(
        "{number}", quote((fuzz.number if real else number).encode("utf-8", "surrogatepass"), safe="") or "x"
    )
    before = fuzz.counts()
    reply = web.request(
        "POST",
        target,
        body=form_body(fields, web.csrf()),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    clear_reply(reply)
    if reply.status >= 400:
        assert fuzz.counts() == before


PAGES = (
    "/",
    "/guide/{x}",
    "/guide/PL-001/forms/{x}",
    "/apply/{x}",
    "/track",
    "/track/{x}",
    "/statistics",
    "/announcements",
    "/verify",
    "/staff/login",
    "/lang/{x}",
    "/staff",
    "/staff/queue",
    "/staff/cases/{x}",
    "/staff/cases/{x}/notices/{x}",
    "/api/v1/matters/{x}",
    "/api/v1/cases/{x}/events",
)
QUERY_KEYS = ("q", "category", "next", "number", "code", "sealed", "closed", "department", "group_by", "seen")


@FUZZ
@given(
    page=st.sampled_from(PAGES),
    who=st.sampled_from(["anonymous", "clerk.plan", "director"]),
    segment=TEXT,
    query=st.dictionaries(st.sampled_from(QUERY_KEYS) | SAFE_TEXT, TEXT, max_size=4),
)
def test_pages_with_odd_paths_and_queries(
    fuzz: Fuzz, page: str, who: str, segment: str, query: dict[str, str]
) -> None:
    web = fuzz.visitors[who]
    path = page.replace("{x}", quote(segment.encode("utf-8", "surrogatepass"), safe="") or "x")
    qs = "&".join(
        f"{quote(k.encode('utf-8', 'surrogatepass'))}={quote(v.encode('utf-8', 'surrogatepass'))}"
        for k, v in query.items()
    )
    reply = web.get(f"{path}?{qs}" if qs else path)
    clear_reply(reply)


STAFF_FORMS = (
    ("clerk.plan", "/staff/tasks/{task}/{x}"),
    ("clerk.plan", "/staff/tasks/{x}/claim"),
    ("clerk.plan", "/staff/questions/{x}/answer"),
    ("clerk.plan", "/staff/role"),
    ("head.plan", "/staff/tasks/{task}/{x}"),
    ("head.plan", "/staff/extensions/{x}"),
    ("director", "/staff/cases/{number}/key-project"),
    ("director", "/staff/cases/{x}/key-project"),
    ("director", "/staff/extensions/{x}"),
    ("admin", "/staff/admin/users/{x}/password"),
    ("admin", "/staff/admin/users/clerk.ltax/password"),
)
STAFF_FIELDS = (
    "opinion",
    "reasons",
    "material",
    "reason",
    "reason_SITE-PLAN",
    "days",
    "text",
    "approve",
    "promised_date",
    "tracker",
    "password",
    "grant",
    "answer",
    "publish",
)
TASK_ACTIONS = ("claim", "release", "approve", "reject", "supplement", "opinion", "extension")


@FUZZ
@given(
    form=st.sampled_from(STAFF_FORMS),
    segment=st.one_of(st.sampled_from(TASK_ACTIONS), TEXT),
    fields=st.dictionaries(st.sampled_from(STAFF_FIELDS) | SAFE_TEXT, TEXT, max_size=6),
)
def test_staff_forms(fuzz: Fuzz, form: tuple[str, str], segment: str, fields: dict[str, str]) -> None:
    who, template = form
    web = fuzz.visitors[who]
    path = (
        template.replace("{task}", fuzz.task_id)
        .replace("{number}", fuzz.number)
        .replace("{x}", quote(segment.encode("utf-8", "surrogatepass"), safe="") or "x")
    )
    before = fuzz.counts()
    reply = web.request(
        "POST",
        path,
        body=form_body(fields, web.csrf()),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    clear_reply(reply)
    assert fuzz.counts() == before  # no staff form creates cases or documents


MATERIALS = ("APPLICATION", "LAND-CERT", "SITE-PLAN", "DRAWINGS")
CONTENTS = st.one_of(
    st.just(PDF),
    st.sampled_from([PDF, PNG, JPEG, b"PK\x03\x04" + b"\x00" * 30, b"", b"hello", b"\x00" * 64]),
)
FILES = st.tuples(
    st.one_of(st.just("scan.pdf"), NAMES),
    st.sampled_from(["application/pdf", "application/pdf", "image/png", "application/ofd", "text/html", ""]),
    CONTENTS,
)
APPLICANT = st.fixed_dictionaries(
    {"name": st.one_of(st.just("张三"), TEXT)},
    optional={
        "phone": st.one_of(st.just("13800001111"), TEXT),
        "email": st.one_of(st.just("zhang@example.cn"), TEXT),
        "id_number": TEXT,
        "title": TEXT,
        "applicant_kind": st.sampled_from(["1", "2", "3", "", "12"]),
        "request_id": st.one_of(st.uuids().map(str), TEXT),
    },
)


@FUZZ
@given(
    fields=APPLICANT,
    extra=st.dictionaries(SAFE_TEXT, TEXT, max_size=2),
    files=st.dictionaries(st.sampled_from(MATERIALS), FILES, max_size=4),
    refs=st.dictionaries(
        st.sampled_from(MATERIALS), st.sampled_from(["0" * 64, "nothex", "A" * 64, ""]), max_size=2
    ),
)
def test_apply_form(
    fuzz: Fuzz,
    fields: dict[str, str],
    extra: dict[str, str],
    files: dict[str, tuple[str, str, bytes]],
    refs: dict[str, str],
) -> None:
    web = fuzz.visitors["anonymous"]
    before = fuzz.counts()
    body, ctype = multipart(
        {**extra, **fields, **{f"doc_{k}": v for k, v in refs.items()}, "_csrf": web.csrf()},
        {f"file_{k}": (n, t, d + os.urandom(4) if d else d) for k, (n, t, d) in files.items()},
    )
    reply = web.request("POST", "/apply/PL-001", body=body, headers={"Content-Type": ctype})
    clear_reply(reply)
    if reply.status >= 400:
        assert fuzz.counts() == before, f"a refused application ({reply.status}) stored something"


# ---------------------------------------------------------------------------------------------------
# Uploads, case by case.


def _ofd(entries: dict[str, bytes], *, claim_size: int | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    raw = bytearray(buffer.getvalue())
    if claim_size is not None:  # a zip bomb's central directory: tiny data, huge declared size
        at = 0
        while (at := raw.find(b"PK\x01\x02", at)) >= 0:
            struct.pack_into("<I", raw, at + 24, claim_size)
            at += 4
    return bytes(raw)


@pytest.mark.parametrize(
    ("matter", "material", "filename", "ctype", "data", "status", "message"),
    [
        ("PL-001", "SITE-PLAN", "site.pdf", "application/pdf", PNG, 415, "accepts PDF files only"),
        ("AIC-001", "ID", "id.png", "image/png", PDF, 415, "sent as PNG but its content is PDF"),
        ("PL-001", "APPLICATION", "a.pdf", "application/pdf", b"just some text", 415, "files only"),
        (
            "PL-001",
            "APPLICATION",
            "bomb.pdf",
            "application/pdf",
            _ofd({"OFD.xml": b"<x/>"}),
            415,
            "files only",
        ),
        (
            "PL-001",
            "APPLICATION",
            "bomb.zip",
            "application/zip",
            _ofd({"OFD.xml": b"<x/>"}),
            415,
            "files only",
        ),
        (
            "PL-001",
            "APPLICATION",
            "bomb.ofd",
            "application/ofd",
            _ofd({"OFD.xml": b"<x/>", "Doc_0/big.bin": b"\x00" * 64}, claim_size=0xFFFF_FFF0),
            415,
            "files only",  # no demo material takes OFD: the OFD checks are unit-tested (tests/unit/gateway)
        ),
        ("PL-001", "APPLICATION", "empty.pdf", "application/pdf", b"", 400, "empty"),
        ("PL-001", "APPLICATION", "a\x00b.pdf", "application/pdf", PDF, 400, "control characters"),
        ("PL-001", "APPLICATION", "a\nb.pdf", "application/pdf", PDF, 400, "control characters"),
        ("PL-001", "NO-SUCH", "a.pdf", "application/pdf", PDF, 400, "has no material"),
        ("NO-SUCH", "APPLICATION", "a.pdf", "application/pdf", PDF, 404, ""),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 20 else None,
)
def test_bad_uploads_get_a_clear_4xx_and_store_nothing(
    fuzz: Fuzz, matter: str, material: str, filename: str, ctype: str, data: bytes, status: int, message: str
) -> None:
    before = fuzz.counts()
    reply = upload(fuzz, matter, material, filename, ctype, data)
    clear_reply(reply)
    assert reply.status == status, reply.text[:300]
    assert message in reply.json()["error"]["message"]
    assert fuzz.counts() == before


def test_an_oversized_upload_is_refused_before_and_while_it_is_read(fuzz: Fuzz) -> None:
    before = fuzz.counts()
    big = PNG + b"\x00" * (5 * 1024 * 1024)  # the ID material takes 5 MB at most
    reply = upload(fuzz, "AIC-001", "ID", "id.png", "image/png", big)
    assert reply.status == 413 and "larger than 5 MB" in reply.json()["error"]["message"]
    web = fuzz.visitors["anonymous"]
    claimed = web.request(  # a Content-Length over the ceiling is refused before a byte is read
        "POST",
        "/api/v1/uploads",
        body=b"x" * 10,
        headers={
            "Content-Type": "multipart/form-data; boundary=x",
            "Content-Length": str(60 * 1024 * 1024),
            "X-CSRF-Token": web.csrf(),
        },
    )
    assert claimed.status == 413
    clear_reply(claimed)
    assert fuzz.counts() == before


@pytest.mark.parametrize(
    ("filename", "stored"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\王丽\\扫描件.pdf", "扫描件.pdf"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("invoice\u202efdp.exe", "invoice_fdp.exe"),
        ("...", "document"),
        ("/", "document"),
    ],
)
def test_path_tricks_in_file_names_are_stripped(fuzz: Fuzz, filename: str, stored: str) -> None:
    reply = upload(fuzz, "PL-001", "APPLICATION", filename, "application/pdf", unique_pdf())
    assert reply.status == 201, reply.text[:300]
    doc = reply.json()
    assert doc["filename"] == stored and doc["content_type"] == "application/pdf"


def _apply(fz: Fuzz, fields: dict[str, str], files: dict[str, tuple[str, str, bytes]]) -> Reply:
    web = fz.fresh()
    body, ctype = multipart(
        {"name": "张三", "request_id": uuid.uuid4().hex, **fields, "_csrf": web.csrf()},
        {f"file_{k}": v for k, v in files.items()},
    )
    return web.request("POST", "/apply/PL-001", body=body, headers={"Content-Type": ctype})


def test_a_refused_application_writes_nothing(fuzz: Fuzz) -> None:
    files = {m: (f"{m}.pdf", "application/pdf", unique_pdf()) for m in MATERIALS}
    before = fuzz.counts()
    bad_phone = _apply(fuzz, {"phone": "call me maybe"}, files)
    assert bad_phone.status == 400 and "phone" in bad_phone.text
    wrong_last = _apply(fuzz, {}, {**files, "DRAWINGS": ("drawings.pdf", "application/pdf", PNG)})
    assert wrong_last.status == 415
    assert fuzz.counts() == before, "a refused application stored a case or a document"
    accepted = _apply(
        fuzz,
        {"phone": "13800001111"},
        {**files, "APPLICATION": ("C:\\scans\\../申请表.pdf", "application/pdf", unique_pdf())},
    )
    assert accepted.status == 200, accepted.text[:300]
    number = case_number(accepted)
    case = fuzz.grpc.case(number)
    names = {d.material_code: d.filename for d in case.documents}
    assert names["APPLICATION"] == "申请表.pdf" and case.status != common_pb2.CASE_STATUS_UNSPECIFIED
    assert fuzz.counts() == (before[0] + 1, before[1] + 4)


def test_the_audit_chain_holds_after_the_fuzz(fuzz: Fuzz) -> None:
    verdict = fuzz.db.run(verify_chain(fuzz.node.config.database))
    assert verdict.ok and verdict.records > 0, verdict.problem
