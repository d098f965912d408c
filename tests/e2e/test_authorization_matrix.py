"""Who may do what: one declarative table of center × role × action, checked against a running node.

The policy (the text of docs/SECURITY.md, "Authorization"):

    Every request is judged by the gateway on the session's active role grant (role, center,
    department), never on what the form or the query says. The node's tasks, clocks, extensions,
    warnings and statistics belong to the node's own center: only grants held at that center reach
    them. Grants at a center below (a district, a township, a service point) sign in at the node but
    reach only what is theirs there (the cases their agents carry; administrators, the accounts of
    staff who act only at their center or below).

    - Window clerk, chief representative, department head (at the center, of a department): their own
      department's queue (naming another department is refused, never widened); claim, release, ask
      for a supplement, add an opinion, request an extension on their department's tasks; the case
      detail (and its documents) of a case with a task of their department. Whoever may open a case
      detail may download its documents: the same check guards both. Only the chief representative and the
      department head decide (approve, reject) (R15).
    - Department head: decides the extension requests of their department (R7).
    - Center director: decides every department's extensions; designates key projects (with the
      chief representatives and heads of the authorized departments DRC, ECON, FTRADE) (R1); the
      warning board, accountability, dashboards and statistics by staff member; every case detail;
      follows every key project; the link to the parent node with the cases waiting to go up.
    - Supervisor: the warning board, accountability, dashboards, statistics by staff member, every case
      detail, every key project (R16, R17), the link to the parent node with its cases.
    - Tracker: the key projects they follow and their case details (R5).
    - Administrator: staff accounts (password resets) of their center and below; at their own center,
      importing catalogue versions and loading calendar years; the link to the parent node, counts
      only. No case data.
    - Agent: the cases they carried for residents; liaison officer and fee collector: every case
      carried at their convenience center (R19, R20). The agent answers the supplement notice of a
      case they carry, and so may the liaison officers of its center (named as the one who answered);
      nobody else, fee collectors included.
    - Fee collector and center director, held at the node's center: the fee ledger and the day's
      printable reconciliation reports (a collector only their own; the director the center's or any
      collector's of the center).
    - Applicant (no session): the public pages; their own case with its number and query code (a
      wrong number or code is a 404, counted and rate-limited) and the documents they sent with it;
      answering a supplement notice,
      withdrawing and evaluating with the query code. Staff sessions may not evaluate: the rating is
      the applicant's own.
    - Everything else is refused: 403 for a signed-in person, sign-in (303 to the login page, 401 on
      the JSON API) for a visitor, 404 for a wrong case number or query code. Every refusal, every
      sign-in (success or failure, never the password), every sign-out and every state-changing staff
      request is written to the gateway's hash-chained audit log (gateway_audit) with who, role,
      center, action, subject, outcome and reason; `gateway.audit.verify_chain` proves the chain.

Cells are independent: the module's fixture gives every allowed cell that consumes something (a task
to decide, an extension to decide) its own object, and every refused cell targets a shared object
that must not change.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from http.cookies import SimpleCookie
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

import grpc
import pytest

from gateway.audit import verify_chain
from onestop.approval.v1 import approval_pb2
from onestop.common.v1 import common_pb2
from onestop.intake.v1 import convenience_pb2, convenience_pb2_grpc, intake_pb2
from onestop.supervision.v1 import supervision_pb2, supervision_pb2_grpc
from services.cli.node import Node
from tests.harness import NodeClients, actor, wait_for

pytestmark = pytest.mark.e2e
T = TypeVar("T")
CITY, DISTRICT, TOWN = "210200", "210211", "210211101"
MATTER = "PL-001"  # decided by the city's PLAN window alone
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
PDF = b"%PDF-1.4\n% matrix test\n%%EOF\n"
PRE_REVIEW_MISSING = ("LAND-CERT", "SITE-PLAN", "DRAWINGS")  # PL-001 applied for with its form only

# ---------------------------------------------------------------------------------------------------
# The table. Columns (actions) in order; "Y" allowed, "." refused. Objects belong to the city center's
# PLAN window (a "clerk of another department" is DRC's); "track" is following a key project for staff,
# the number + query code lookup for applicants.
ACTIONS = (
    "queue",  # view the PLAN queue (JSON API)
    "claim",  # claim a PLAN task (then release it)
    "decide",  # approve (chief) / reject (head) a PLAN task
    "supplement",  # ask for a supplement on a PLAN task
    "extension",  # request an extension on a PLAN task
    "extension-decision",  # decide a PLAN extension request
    "designate",  # designate a key project
    "warnings",  # the warning board
    "accountability",  # deemed approvals and accountability
    "statistics",  # the dashboard and statistics by staff member (JSON API)
    "users",  # reset a city staff member's password
    "case",  # a PLAN case's detail (another department's, for DRC)
    "track",  # follow a key project / look a case up by number and query code
    "evaluate",  # rate a concluded case
    "carried",  # the cases carried for residents
    "calendar",  # load a newly published calendar year
    "document",  # download a PLAN case's document (staff: as the case detail; applicant: with the code)
    "interconnect",  # the link to the parent node (this node has none: the page says so)
    "answer",  # answer the pre-review supplement notice of a case agent1 carries, with its documents
    "fee-report",  # the printable report of the city center's reconciliation of the day
)
TABLE: tuple[tuple[str, str, str, str], ...] = (
    # center, role, username,               qu cl de su ex ed kp wa ac st us ca tr ev cr cl do ic an fr
    (CITY, "window_clerk", "clerk.plan", "Y  Y  .  Y  Y  .  .  .  .  .  .  Y  .  .  .  .  Y  .  .  ."),
    (
        CITY,
        "chief_representative",
        "chief.plan",
        "Y  Y  Y  Y  Y  .  .  .  .  .  .  Y  .  .  .  .  Y  .  .  .",
    ),
    (CITY, "department_head", "head.plan", "Y  Y  Y  Y  Y  Y  .  .  .  .  .  Y  .  .  .  .  Y  .  .  ."),
    (CITY, "center_director", "director", ".  .  .  .  .  Y  Y  Y  Y  Y  .  Y  Y  .  .  .  Y  Y  .  Y"),
    (CITY, "supervisor", "supervisor", ".  .  .  .  .  .  .  Y  Y  Y  .  Y  Y  .  .  .  Y  Y  .  ."),
    (CITY, "tracker", "tracker", ".  .  .  .  .  .  .  .  .  .  .  Y  Y  .  .  .  Y  .  .  ."),
    (CITY, "administrator", "admin", ".  .  .  .  .  .  .  .  .  .  Y  .  .  .  .  Y  .  Y  .  ."),
    (CITY, "window_clerk", "clerk.drc", ".  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  ."),
    (TOWN, "agent", "agent1", ".  .  .  .  .  .  .  .  .  .  .  .  .  .  Y  .  .  .  Y  ."),
    (TOWN, "liaison_officer", "liaison1", ".  .  .  .  .  .  .  .  .  .  .  .  .  .  Y  .  .  .  Y  ."),
    (TOWN, "fee_collector", "fee1", ".  .  .  .  .  .  .  .  .  .  .  .  .  .  Y  .  .  .  .  ."),
    (TOWN, "center_director", "director.ycz", ".  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  ."),
    (
        DISTRICT,
        "window_clerk",
        "clerk.gjz.plan",
        ".  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .",
    ),
    (
        DISTRICT,
        "chief_representative",
        "chief.gjz.plan",
        ".  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .",
    ),
    (
        DISTRICT,
        "department_head",
        "head.gjz.plan",
        ".  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .",
    ),
    (
        DISTRICT,
        "center_director",
        "director.gjz",
        ".  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .",
    ),
    (DISTRICT, "supervisor", "supervisor.gjz", ".  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  ."),
    (DISTRICT, "tracker", "tracker.gjz", ".  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  ."),
    (DISTRICT, "administrator", "admin.gjz", ".  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  ."),
    ("", "applicant", "+code", ".  .  .  .  .  .  .  .  .  .  .  .  Y  Y  .  .  Y  .  .  ."),
    ("", "applicant", "-code", ".  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  ."),
)
PASSWORDS = {
    username: f"pw-{username}-{uuid.uuid4().hex[:10]}"
    for _, _, username, _ in TABLE
    if username[0] not in "+-"
}
PASSWORDS.update({u: f"pw-{u}-{uuid.uuid4().hex[:10]}" for u in ("clerk.ltax", "clerk.ntax")})
USERS_TARGET_ALLOWED, USERS_TARGET_REFUSED = "clerk.ltax", "clerk.ntax"
CALENDAR_YEAR = 2031  # loaded by the allowed cell; refused cells try the year after


@dataclass(frozen=True)
class Row:
    """One person: a staff member acting under one grant, or an applicant with or without the code."""

    center: str
    role: str
    username: str

    @property
    def staff(self) -> bool:
        """Signed in, or a visitor."""
        return self.role != "applicant"

    @property
    def label(self) -> str:
        """How pytest names the row."""
        if not self.staff:
            return "applicant" + ("-with-code" if self.username == "+code" else "-without-code")
        return f"{self.center}-{self.role}-{self.username}"


def _cells() -> list[tuple[Row, str, bool]]:
    cells = []
    for center, role, username, marks in TABLE:
        flags = marks.split()
        assert len(flags) == len(ACTIONS) and set(flags) <= {"Y", "."}, f"row {username}: {marks!r}"
        for action, flag in zip(ACTIONS, flags, strict=True):
            cells.append((Row(center, role, username), action, flag == "Y"))
    return cells


CELLS = _cells()


# ---------------------------------------------------------------------------------------------------
# A small HTTP client with its own cookie jar (the gateway's cookies are Secure: a browser sends them to
# 127.0.0.1 over plain HTTP, urllib's jar would not).


@dataclass
class Reply:
    """One HTTP exchange: its status, headers, body, and the request id the gateway audits it under."""

    method: str
    path: str
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    request_id: str
    action: str = ""  # the audited action this request stands for

    @property
    def text(self) -> str:
        """The body as text."""
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)

    @property
    def location(self) -> str:
        """The redirect target, if any."""
        return self.headers.get("Location", "")


class Web:
    """A visitor's browser without the browser: cookies, CSRF token, forms, JSON and multipart."""

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.cookies: dict[str, str] = {}
        self._csrf = ""

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        action: str = "",
    ) -> Reply:
        """Send one request (redirects are not followed)."""
        rid = uuid.uuid4().hex
        sent = {"X-Request-Id": rid, "Accept-Language": "zh-CN", **(headers or {})}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=sent)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        for header in resp.headers.get_all("Set-Cookie") or []:
            jar: SimpleCookie = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or not morsel.value or "1970" in morsel["expires"]:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
                if name in ("onestop_session", "onestop_csrf"):
                    self._csrf = ""
        return Reply(method, path, resp.status, resp.headers, data, rid, action)

    def get(self, path: str, *, action: str = "") -> Reply:
        """GET a page or JSON."""
        return self.request("GET", path, action=action)

    def csrf(self) -> str:
        """The CSRF token bound to this visitor's session (or anonymous nonce), read from a page."""
        if not self._csrf:
            page = self.get("/staff/login" if "onestop_session" not in self.cookies else "/staff")
            match = CSRF_META.search(page.text)
            assert match, f"no CSRF token on {page.path} ({page.status})"
            self._csrf = match.group(1)
        return self._csrf

    def form(self, path: str, data: dict[str, str] | None = None, *, action: str = "") -> Reply:
        """POST an urlencoded form with the CSRF token."""
        body = urlencode({**(data or {}), "_csrf": self.csrf()}).encode()
        return self.request(
            "POST",
            path,
            body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            action=action,
        )

    def post_json(self, path: str, data: object, *, action: str = "") -> Reply:
        """POST JSON with the CSRF header."""
        return self.request(
            "POST",
            path,
            body=json.dumps(data).encode(),
            headers={"Content-Type": "application/json", "X-CSRF-Token": self.csrf()},
            action=action,
        )

    def multipart(
        self,
        path: str,
        fields: dict[str, str],
        files: dict[str, tuple[str, str, bytes]],
        *,
        csrf_header: bool = False,
        action: str = "",
    ) -> Reply:
        """POST multipart/form-data: text fields, then files as {field: (filename, content type, bytes)}."""
        boundary = uuid.uuid4().hex
        out = bytearray()
        all_fields = dict(fields) if csrf_header else {**fields, "_csrf": self.csrf()}
        for name, value in all_fields.items():
            out += (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            )
        for name, (filename, ctype, data) in files.items():
            out += (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {ctype}\r\n\r\n"
            ).encode()
            out += data + b"\r\n"
        out += f"--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        if csrf_header:
            headers["X-CSRF-Token"] = self.csrf()
        return self.request("POST", path, body=bytes(out), headers=headers, action=action)

    def sign_in(self, username: str, password: str) -> Reply:
        """Sign in through the form."""
        reply = self.form("/staff/login", {"username": username, "password": password})
        self._csrf = ""
        return reply


def case_number(receipt: Reply) -> str:
    """The case number a receipt page shows."""
    found = re.search(r'id="case-number"[^>]*>([^<]+)<', receipt.text)
    assert found, receipt.text[:500]
    return found.group(1).strip()


class Db:
    """One asyncpg connection on an event loop in a background thread (the tests stay synchronous)."""

    def __init__(self, url: str) -> None:
        import asyncpg

        self.url = url
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.conn = self.run(asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://")))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the background loop."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def audit(self, request_id: str) -> list[dict[str, Any]]:
        """The gateway's audit records written for one request."""
        rows = self.run(
            self.conn.fetch(
                "SELECT seq, actor, role, action, subject, detail FROM gateway_audit "
                "WHERE detail->>'request_id' = $1 ORDER BY seq",
                request_id,
            )
        )
        return [dict(r) | {"detail": json.loads(r["detail"])} for r in rows]

    def account(self, username: str) -> tuple[Any, ...]:
        """A gateway account's password hash and last change."""
        row = self.run(
            self.conn.fetchrow(
                "SELECT password_hash, updated_at FROM gateway_accounts WHERE username = $1", username
            )
        )
        return tuple(row) if row else ()

    def close(self) -> None:
        """Close the connection and stop the loop."""
        self.run(self.conn.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


# ---------------------------------------------------------------------------------------------------
# The world the cells act on.


@dataclass
class World:
    """The running node, signed-in visitors, the database, and the objects of each column."""

    node: Node
    grpc: NodeClients
    supervision: supervision_pb2_grpc.SupervisionServiceStub
    db: Db
    visitors: dict[str, Web]
    shared: common_pb2.Task  # refused cells aim here (pending, unclaimed, not a key project)
    consumable: dict[tuple[str, str], Any] = field(default_factory=dict)  # (action, username) -> object
    pending_extension: str = ""  # refused extension decisions aim here
    key_project: str = ""  # case number followed by "tracker"
    concluded: tuple[str, str] = ("", "")  # (number, query code) of a concluded case
    carried: str = ""  # case number agent1 carries
    notice: str = ""  # case id of a case agent1 carries, waiting in pre-review for three documents
    fee_day: str = ""  # the day the city center's director reconciled

    def intake_case(self, case_id: str) -> common_pb2.Case:
        """A case by id, as intake has it now."""
        return self.grpc.intake.GetCase(intake_pb2.GetCaseRequest(case_id=case_id), timeout=5)

    def web(self, row: Row) -> Web:
        """The visitor acting as this row."""
        return self.visitors[row.username]

    def task(self, task_id: str) -> common_pb2.Task:
        """A task as approval has it now."""
        return self.grpc.approval.GetTask(approval_pb2.GetTaskRequest(task_id=task_id), timeout=5)

    def extensions(self) -> list[approval_pb2.Extension]:
        """Every PLAN extension."""
        reply = self.grpc.approval.ListExtensions(
            approval_pb2.ListExtensionsRequest(department="PLAN"), timeout=5
        )
        return list(reply.extensions)

    def evaluations(self) -> int:
        """Evaluations counted for the matter."""
        stats = self.supervision.GetStatistics(
            supervision_pb2.GetStatisticsRequest(group_by="matter"), timeout=5
        )
        return sum(r.evaluations for r in stats.rows if r.key == MATTER)


def _open_task(c: NodeClients) -> tuple[common_pb2.Task, str]:
    reply = c.submit(MATTER)
    (task,) = c.wait_tasks(reply.case.case_number)
    return task, reply.query_code


def _owner(action: str) -> list[str]:
    """Usernames allowed to do `action` (each gets its own object when the action consumes one)."""
    i = ACTIONS.index(action)
    return [u for _, _, u, marks in TABLE if marks.split()[i] == "Y"]


@pytest.fixture(scope="module")
def world(
    module_node_factory: Callable[..., Node], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """One city node with its gateway on PostgreSQL, every visitor signed in, every object in place."""
    accounts = tmp_path_factory.mktemp("matrix") / "accounts.json"
    accounts.write_text(json.dumps(PASSWORDS), encoding="utf-8")
    node = module_node_factory(
        gateway=True,
        env={
            "ONESTOP_DEMO_ACCOUNTS_FILE": str(accounts),
            "ONESTOP_SESSION_SECRET": uuid.uuid4().hex * 2,
            "ONESTOP_GATEWAY_SIGN_IN_RATE": "1000/0.01",
            "ONESTOP_GATEWAY_LOOKUP_RATE": "1000/0.01",
        },
    )
    c = NodeClients.of(node)
    channel = grpc.insecure_channel(node.address("supervision"))
    db = Db(node.config.database)
    shared, _ = _open_task(c)
    w = World(node, c, supervision_pb2_grpc.SupervisionServiceStub(channel), db, {}, shared)
    for action in ("decide", "supplement", "extension"):
        for username in _owner(action):
            w.consumable[(action, username)] = _open_task(c)[0]
    clerk = actor("clerk.plan", "window_clerk", "PLAN")
    for username in [*_owner("extension-decision"), ""]:
        task, _ = _open_task(c)
        ext = c.approval.RequestExtension(
            approval_pb2.RequestExtensionRequest(
                task_id=task.task_id, days=3, reason="expert review", by=clerk
            ),
            timeout=5,
        )
        if username:
            w.consumable[("extension-decision", username)] = ext.extension_id
        else:
            w.pending_extension = ext.extension_id
    for username in _owner("designate"):
        w.consumable[("designate", username)] = _open_task(c)[0].case_number
    # A key project followed by "tracker", and a concluded case to evaluate.
    task, _ = _open_task(c)
    req = intake_pb2.DesignateKeyProjectRequest(
        case_id=c.case(task.case_number).case_id,
        designated_by=actor("director", "center_director"),
        tracker="tracker",
    )
    req.promised_deadline.FromSeconds(int(time.time()) + 90 * 86400)
    c.intake.DesignateKeyProject(req, timeout=5)
    w.key_project = task.case_number
    task, code = _open_task(c)
    c.decide(task)
    c.wait_case(task.case_number, common_pb2.CASE_STATUS_CONCLUDED)
    w.concluded = (task.case_number, code)
    # Every visitor: staff signed in, applicants with a CSRF nonce.
    for _, _, username, _ in TABLE:
        web = Web(node.gateway_url)
        if username[0] not in "+-":
            assert web.sign_in(username, PASSWORDS[username]).status == 303, username
        w.visitors[username] = web
    # agent1 applies for a resident through the portal: the case is carried by agent1 at the township.
    agent = w.visitors["agent1"]
    files = {
        f"file_{m}": (f"{m}.pdf", "application/pdf", PDF)
        for m in ("APPLICATION", "LAND-CERT", "SITE-PLAN", "DRAWINGS")
    }
    receipt = agent.multipart(
        f"/apply/{MATTER}", {"name": "刘大爷", "phone": "13800002222", "request_id": uuid.uuid4().hex}, files
    )
    assert receipt.status == 200, receipt.text[:500]
    w.carried = case_number(receipt)
    # agent1 applies three times more without the land certificate, site plan and drawings: the notices
    # the "answer" cells answer (one for each allowed row, one that every refused row aims at).
    for username in [*_owner("answer"), ""]:
        incomplete = agent.multipart(
            f"/apply/{MATTER}",
            {"name": "刘大爷", "request_id": uuid.uuid4().hex},
            {"file_APPLICATION": ("APPLICATION.pdf", "application/pdf", PDF)},
        )
        assert incomplete.status == 200 and 'id="pre-review-notice"' in incomplete.text, incomplete.text[:500]
        found = re.search(r'name="case_id" value="([0-9a-f-]{36})"', incomplete.text)
        assert found, incomplete.text[:500]
        if username:
            w.consumable[("answer", username)] = found.group(1)
        else:
            w.notice = found.group(1)
    # The city center's director reconciles the (empty) day: the report the "fee-report" cells print.
    w.fee_day = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
    fees = grpc.insecure_channel(node.address("intake"))
    convenience_pb2_grpc.ConvenienceServiceStub(fees).Reconcile(
        convenience_pb2.ReconcileRequest(
            day=w.fee_day, declared="0", by=actor("director", "center_director")
        ),
        timeout=10,
    )
    fees.close()
    # Supervision follows the key project and knows the concluded case before any cell runs.
    wait_for(
        lambda: any(
            k.case_number == w.key_project
            for k in w.supervision.ListKeyProjects(
                supervision_pb2.ListKeyProjectsRequest(tracker="tracker"), timeout=5
            ).clocks
        ),
        what="the key project on the tracker's list",
    )
    wait_for(
        lambda: any(
            r.key == MATTER and r.concluded >= 1
            for r in w.supervision.GetStatistics(
                supervision_pb2.GetStatisticsRequest(group_by="matter"), timeout=5
            ).rows
        ),
        what="supervision counting the concluded case",
    )
    try:
        yield w
    finally:
        db.close()
        channel.close()
        c.close()


# ---------------------------------------------------------------------------------------------------
# Attempts, effects and what a refusal must leave untouched, per column.


def _attempt(w: World, row: Row, action: str, allowed: bool) -> list[Reply]:
    """Perform the column's request(s) as this row; allowed cells use their own object."""
    web = w.web(row)
    mine: Any = w.consumable.get((action, row.username))
    if action == "queue":
        return [web.get("/api/v1/staff/queue?department=PLAN", action="view_queue")]
    if action == "claim":
        return [web.form(f"/staff/tasks/{w.shared.task_id}/claim", action="claim")]
    if action == "decide":
        task = mine if allowed else w.shared
        if row.role == "department_head":
            return [
                web.form(f"/staff/tasks/{task.task_id}/reject", {"reasons": "用地性质不符"}, action="reject")
            ]
        return [web.form(f"/staff/tasks/{task.task_id}/approve", {"opinion": "同意"}, action="approve")]
    if action == "supplement":
        task = mine if allowed else w.shared
        form = {"material": "SITE-PLAN", "reason_SITE-PLAN": "比例尺不清"}
        return [web.form(f"/staff/tasks/{task.task_id}/supplement", form, action="request_supplement")]
    if action == "extension":
        task = mine if allowed else w.shared
        form = {"days": "5", "reason": "需专家评审"}
        return [web.form(f"/staff/tasks/{task.task_id}/extension", form, action="request_extension")]
    if action == "extension-decision":
        ext = mine if allowed else w.pending_extension
        form = {"approve": "1", "reason": "同意延期"}
        return [web.form(f"/staff/extensions/{ext}", form, action="decide_extension")]
    if action == "designate":
        number = mine if allowed else w.shared.case_number
        form = {"promised_date": (date.today() + timedelta(days=60)).isoformat(), "tracker": "tracker"}
        return [web.form(f"/staff/cases/{number}/key-project", form, action="designate_key_project")]
    if action == "warnings":
        return [web.get("/staff/warnings", action="view_warnings")]
    if action == "accountability":
        return [web.get("/staff/accountability", action="view_accountability")]
    if action == "statistics":
        return [
            web.get("/staff/dashboard", action="view_dashboard"),
            web.get("/api/v1/statistics?group_by=staff", action="view_statistics"),
        ]
    if action == "users":
        target = USERS_TARGET_ALLOWED if allowed else USERS_TARGET_REFUSED
        form = {"password": f"matrix-new-{row.username}-password"}
        return [web.form(f"/staff/admin/users/{target}/password", form, action="reset_password")]
    if action == "case":
        return [web.get(f"/staff/cases/{w.shared.case_number}", action="view_case")]
    if action == "track":
        if row.staff:
            return [web.get("/staff/key-projects", action="view_key_projects")]
        number, code = w.concluded
        code = (
            code
            if row.username == "+code"
            else ("ZZZZ" + code[4:] if not code.startswith("ZZZZ") else "YYYYYYYY")
        )
        return [web.post_json("/api/v1/cases/lookup", {"number": number, "code": code}, action="track_case")]
    if action == "evaluate":
        number, code = w.concluded
        if row.username != "-code":  # staff hold the code too here: the role must refuse them
            assert web.form("/track", {"number": number, "code": code}).status == 303
        return [
            web.form(f"/track/{number}/evaluation", {"rating": "5", "comment": "很好"}, action="evaluate")
        ]
    if action == "carried":
        return [web.get("/staff/carried", action="view_carried")]
    if action == "document":
        digest = w.grpc.case(w.shared.case_number).documents[0].digest
        if row.username == "+code":
            number, code = w.concluded
            assert web.form("/track", {"number": number, "code": code}).status == 303
            digest = w.grpc.case(number).documents[0].digest
            return [web.get(f"/track/{number}/documents/{digest}", action="download_document")]
        # Staff, and a visitor without a code who tries the staff address (sent to sign in).
        return [web.get(f"/staff/cases/{w.shared.case_number}/documents/{digest}", action="view_document")]
    if action == "interconnect":
        return [web.get("/staff/interconnect", action="view_interconnect")]
    if action == "answer":
        case_id = mine if allowed else w.notice
        files = {f"file_{m}": (f"{m}.pdf", "application/pdf", PDF) for m in PRE_REVIEW_MISSING}
        return [web.multipart(f"/staff/carried/{case_id}/supplement", {}, files, action="answer_supplement")]
    if action == "fee-report":
        return [web.get(f"/staff/fees/report?day={w.fee_day}", action="view_fee_report")]
    if action == "calendar":
        year = CALENDAR_YEAR if allowed else CALENDAR_YEAR + 1
        data = json.dumps({"year": year, "holidays": {f"{year}-01-01": "元旦"}, "workdays": []}).encode()
        files = {"file": (f"{year}.json", "application/json", data)}
        return [web.multipart("/staff/admin/calendar", {}, files, action="load_calendar_year")]
    raise AssertionError(action)


def _effect(w: World, row: Row, action: str, replies: list[Reply]) -> None:
    """The allowed cell's effect is visible."""
    mine: Any = w.consumable.get((action, row.username))
    if action == "queue":
        assert w.shared.task_id in {t["task_id"] for t in replies[0].json()["tasks"]}
    elif action == "claim":
        assert w.task(w.shared.task_id).claimed_by.username == row.username
        assert w.web(row).form(f"/staff/tasks/{w.shared.task_id}/release").status == 303
        assert w.task(w.shared.task_id).status == common_pb2.TASK_STATUS_PENDING
    elif action == "decide":
        want = (
            common_pb2.TASK_STATUS_REJECTED
            if row.role == "department_head"
            else common_pb2.TASK_STATUS_APPROVED
        )
        assert w.task(mine.task_id).status == want
        assert w.task(mine.task_id).decided_by.username == row.username
    elif action == "supplement":
        assert w.task(mine.task_id).status == common_pb2.TASK_STATUS_SUPPLEMENT_REQUESTED
    elif action == "extension":
        mine_ext = [e for e in w.extensions() if e.task_id == mine.task_id]
        assert [(e.state, e.requested_by.username) for e in mine_ext] == [("requested", row.username)]
    elif action == "extension-decision":
        (ext,) = [e for e in w.extensions() if e.extension_id == mine]
        assert (ext.state, ext.decided_by.username) == ("approved", row.username)
    elif action == "designate":
        assert w.grpc.case(mine).key_project
    elif action == "warnings":
        assert 'id="warning-lights"' in replies[0].text
    elif action == "accountability":
        assert "超时默许与问责" in replies[0].text
    elif action == "statistics":
        assert "统计分析" in replies[0].text
        assert isinstance(replies[1].json().get("rows", []), list)
    elif action == "users":
        assert 'id="password-shown"' in replies[0].text
        fresh = Web(w.node.gateway_url)
        assert fresh.sign_in(USERS_TARGET_ALLOWED, f"matrix-new-{row.username}-password").status == 303
    elif action == "case":
        assert w.shared.case_number in replies[0].text and 'id="staff-tasks"' in replies[0].text
    elif action == "track":
        if row.staff:
            assert w.key_project in replies[0].text
        else:
            assert replies[0].json()["case"]["case_number"] == w.concluded[0]
    elif action == "evaluate":
        assert "done=evaluated" in replies[0].location
        wait_for(lambda: w.evaluations() >= 1, what="the evaluation counted")
    elif action == "carried":
        assert w.carried in replies[0].text
    elif action == "document":
        number = w.concluded[0] if row.username == "+code" else w.shared.case_number
        assert hashlib.sha256(replies[0].body).hexdigest() == w.grpc.case(number).documents[0].digest
        if row.staff:  # reading a case's document is recorded, not only refused attempts
            (rec,) = w.db.audit(replies[0].request_id)
            assert (rec["action"], rec["detail"]["outcome"], rec["actor"]) == (
                "view_document",
                "ok",
                row.username,
            )
    elif action == "calendar":
        assert 'id="calendar-loaded"' in replies[0].text and str(CALENDAR_YEAR) in replies[0].text
    elif action == "interconnect":  # the matrix's node is the root: no parent, no case listed
        assert 'id="link-none"' in replies[0].text and 'id="waiting"' not in replies[0].text
    elif action == "answer":  # accepted at once: nothing is missing any more; the answerer is named
        assert replies[0].location == f"/staff/carried/{mine}/supplement?done=supplemented"
        case = w.intake_case(mine)
        assert case.case_number and not case.open_supplement
        entries = w.grpc.intake.GetTimeline(intake_pb2.GetCaseRequest(case_id=mine), timeout=5).entries
        assert [e.actor for e in entries if e.kind == "case_supplemented"] == [row.username]
    elif action == "fee-report":
        assert replies[0].text.startswith("<!DOCTYPE html>") and "收费日对账单" in replies[0].text
        assert f"日期 Day: {w.fee_day}" in replies[0].text and "全中心 whole center" in replies[0].text
    for reply in replies:
        assert reply.status < 400, f"{reply.method} {reply.path}: {reply.status} {reply.text[:300]}"


def _state(w: World, action: str) -> object:
    """What a refused attempt of this column must leave exactly as it was."""
    if action in ("claim", "decide", "supplement", "extension"):
        t = w.task(w.shared.task_id)
        return (t.status, t.claimed_by.username, t.decided_by.username, t.extension_days, len(w.extensions()))
    if action == "extension-decision":
        return [(e.extension_id, e.state) for e in w.extensions() if e.extension_id == w.pending_extension]
    if action == "designate":
        return w.grpc.case(w.shared.case_number).key_project
    if action == "users":
        return w.db.account(USERS_TARGET_REFUSED)
    if action == "evaluate":
        return w.evaluations()
    if action == "answer":
        case = w.intake_case(w.notice)
        return (case.status, sorted(d.digest for d in case.documents), len(case.open_supplement))
    if action == "calendar":  # the year a refused cell tries to load stays unknown to supervision
        return w.visitors["admin"].get("/staff/admin/calendar").text.count(f"<td>{CALENDAR_YEAR + 1}</td>")
    return None


def _assert_refused(w: World, row: Row, reply: Reply) -> None:
    """Refused the way this visitor is refused, with a message, and audited as a refusal."""
    where = f"{reply.method} {reply.path}"
    if row.staff:
        assert reply.status == 403, f"{where}: {reply.status} {reply.text[:300]}"
    else:
        to_sign_in = reply.status == 303 and reply.location.startswith("/staff/login")
        assert reply.status in (401, 403, 404) or to_sign_in, f"{where}: {reply.status} {reply.location}"
    if reply.status >= 400:
        if reply.path.startswith("/api/"):
            assert reply.json()["error"]["message"], where
        else:
            assert re.search(r'<p class="error" role="alert">[^<]+</p>', reply.text), where
        assert "Traceback" not in reply.text
    records = w.db.audit(reply.request_id)
    assert len(records) == 1, f"{where}: {len(records)} audit records for one refusal"
    (rec,) = records
    assert rec["action"] == reply.action and rec["detail"]["outcome"] == "refused", rec
    if row.staff:
        assert (rec["actor"], rec["role"], rec["detail"]["center"]) == (row.username, row.role, row.center), (
            rec
        )
        assert rec["detail"]["reason"], rec
    else:
        assert rec["actor"] == "anonymous", rec


@pytest.mark.parametrize(
    ("row", "action", "allowed"),
    CELLS,
    ids=[f"{row.label}-{action}-{'allowed' if ok else 'refused'}" for row, action, ok in CELLS],
)
def test_cell(world: World, row: Row, action: str, allowed: bool) -> None:
    before = None if allowed else _state(world, action)
    replies = _attempt(world, row, action, allowed)
    if allowed:
        _effect(world, row, action, replies)
        for reply in replies:
            if reply.method == "POST" and row.staff:  # every forwarded staff action is chained, outcome ok
                (rec,) = world.db.audit(reply.request_id)
                assert (rec["action"], rec["detail"]["outcome"], rec["actor"]) == (
                    reply.action,
                    "ok",
                    row.username,
                )
        return
    for reply in replies:
        _assert_refused(world, row, reply)
    assert _state(world, action) == before, f"a refused {action} changed something"


def test_the_gateway_audit_chain_verifies(world: World) -> None:
    verdict = world.db.run(verify_chain(world.node.config.database))
    assert verdict.ok, verdict.problem
    refused = sum(1 for _, _, ok in CELLS if not ok)
    assert verdict.records >= refused


def test_a_district_administrator_manages_only_staff_who_act_within_the_district(world: World) -> None:
    admin = world.web(Row(DISTRICT, "administrator", "admin.gjz"))
    page = admin.get("/staff/admin/users")
    assert page.status == 200
    listed = set(re.findall(r"/staff/admin/users/([^/]+)/password", page.text))
    assert "chief.gjz.land" in listed and "director" not in listed and "liaison1" in listed
    reset = admin.form("/staff/admin/users/chief.gjz.land/password", {"password": "district-password-1"})
    assert reset.status == 200 and 'id="password-shown"' in reset.text
    assert Web(world.node.gateway_url).sign_in("chief.gjz.land", "district-password-1").status == 303
    (rec,) = world.db.audit(reset.request_id)
    assert (rec["action"], rec["subject"], rec["detail"]["outcome"]) == (
        "reset_password",
        "chief.gjz.land",
        "ok",
    )
    assert "district-password-1" not in json.dumps(rec["detail"])
