"""Notification against the real things: PostgreSQL, nats-server, an aiosmtpd server, the fakesms process.

The service runs as `python -m services.notification`; the tests publish real event envelopes on
JetStream and look where a person would: the SMS gateway's log, the mailbox, the inbox, the stream.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import inspect
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar, overload

import asyncpg
import grpc
import nats
import pytest
from aiosmtpd.controller import Controller
from grpc_health.v1 import health_pb2, health_pb2_grpc

from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from onestop.notification.v1 import notification_pb2 as pb
from onestop.notification.v1 import notification_pb2_grpc
from services.common.events import kind, new_event, subject_for
from services.common.jetstream import ensure_streams

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[2]
PG = "postgresql://postgres@127.0.0.1:5432/postgres"
NATS_BIN = ROOT / ".venv" / "bin" / "nats-server"
CENTER = "210200"
POISONED = "case_delivered"  # its zh-CN template is overridden by one asking for a missing field
T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unavailable(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required in CI", pytrace=False)
    pytest.skip(f"{what} not available")


def _http(url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


@overload
async def eventually(check: Callable[[], Awaitable[T]], *, timeout: float = ..., what: str = ...) -> T: ...


@overload
async def eventually(check: Callable[[], T], *, timeout: float = ..., what: str = ...) -> T: ...


async def eventually(check: Callable[[], Any], *, timeout: float = 10.0, what: str = "") -> Any:
    """Poll `check` (sync or async) until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
        except Exception:  # noqa: BLE001 - not there yet (connection refused, NOT_FOUND, ...)
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.1)


class Mailbox:
    """An aiosmtpd handler keeping every message; addresses at bounce.example are refused (550)."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.endswith("@bounce.example"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.messages.append(msg)  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    def to(self, address: str, case_number: str) -> list[EmailMessage]:
        """Messages for `address` about `case_number`."""
        return [m for m in self.messages if m["To"] == address and case_number in str(m["Subject"])]


class Node:
    """Handles on the running pieces."""

    def __init__(self, *, sms_url: str, mailbox: Mailbox, js: Any, stub: Any, tmp: Path, log: Path) -> None:
        self.sms_url, self.mailbox, self.js, self.stub, self.tmp, self.log = (
            sms_url,
            mailbox,
            js,
            stub,
            tmp,
            log,
        )

    def sms(self, needle: str) -> list[dict[str, Any]]:
        """Messages the fake gateway accepted whose text contains `needle`."""
        return [m for m in _http(f"{self.sms_url}/messages")["messages"] if needle in m["text"]]

    def sms_control(self, **body: Any) -> None:
        """Switch the fake gateway."""
        _http(f"{self.sms_url}/control", body)

    async def publish(self, env: events_pb2.Envelope) -> None:
        """Publish an envelope as a producer's outbox relay would."""
        await self.js.publish(
            subject_for(kind(env)), env.SerializeToString(), headers={"Nats-Msg-Id": env.event_id}
        )

    async def inbox(self, recipient: str) -> list[pb.InboxMessage]:
        """A recipient's web inbox."""
        return list((await self.stub.ListInbox(pb.ListInboxRequest(recipient=recipient))).messages)

    async def deliveries(self, case_number: str) -> list[pb.Delivery]:
        """Every delivery recorded for a case."""
        return list(
            (await self.stub.ListDeliveries(pb.ListDeliveriesRequest(case_number=case_number))).deliveries
        )


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A throwaway PostgreSQL database, dropped afterwards."""
    name = f"onestop_notification_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG, timeout=3)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        _unavailable(f"PostgreSQL at 127.0.0.1:5432 ({exc})")
    yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def processes(database: str) -> Iterator[dict[str, Any]]:
    """nats-server, the SMTP server, fakesms and the notification service, started and stopped."""
    if not NATS_BIN.exists():
        _unavailable(f"nats-server at {NATS_BIN}")
    tmp = Path(tempfile.mkdtemp(prefix="onestop-notification-"))
    procs: list[subprocess.Popen[bytes]] = []
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=_free_port())
    smtp.start()
    nats_port, sms_port, grpc_port = _free_port(), _free_port(), _free_port()
    poison = tmp / "templates" / "messages" / "zh-CN"
    poison.mkdir(parents=True)
    (poison / f"{POISONED}.txt").write_text(
        "{% block title %}送达 {{ case_number }}{% endblock %}{% block sms %}{{ courier_name }}{% endblock %}"
        "{% block body %}{{ courier_name }}{% endblock %}",
        encoding="utf-8",
    )
    env = os.environ | {
        "ONESTOP_ENV": "test",
        "ONESTOP_CENTER": CENTER,
        "ONESTOP_DATABASE_URL": database,
        "ONESTOP_NATS_URL": f"nats://127.0.0.1:{nats_port}",
        "ONESTOP_GRPC_PORT": str(grpc_port),
        "ONESTOP_METRICS_PORT": "0",
        "ONESTOP_DATA_DIR": str(tmp / "data"),
        "ONESTOP_SMS_URL": f"http://127.0.0.1:{sms_port}/send",
        "ONESTOP_SMTP_HOST": "127.0.0.1",
        "ONESTOP_SMTP_PORT": str(smtp.port),
        "ONESTOP_SMTP_FROM": "noreply@center.example",
        "ONESTOP_CENTER_NAME": "大连市人民政府行政服务中心",
        "ONESTOP_NOTIFY_TEMPLATE_DIR": str(tmp / "templates"),
        "ONESTOP_NOTIFY_RETRY_BASE_S": "0.2",
        "ONESTOP_NOTIFY_RETRY_MAX_S": "0.8",
        "ONESTOP_NOTIFY_POLL_S": "0.2",
        "ONESTOP_NOTIFY_MAX_ATTEMPTS": "100",
    }
    log = tmp / "notification.log"

    def start(args: list[str], out: Path) -> None:
        procs.append(
            subprocess.Popen(args, cwd=ROOT, env=env, stdout=out.open("wb"), stderr=subprocess.STDOUT)
        )

    try:
        start(
            [str(NATS_BIN), "-js", "-sd", str(tmp / "js"), "-a", "127.0.0.1", "-p", str(nats_port)],
            tmp / "nats.log",
        )
        start(
            [
                sys.executable,
                "-m",
                "services.fakesms",
                "--port",
                str(sms_port),
                "--log",
                str(tmp / "sms.jsonl"),
            ],
            tmp / "fakesms.log",
        )
        start([sys.executable, "-m", "services.notification"], log)
        yield {
            "tmp": tmp,
            "mailbox": mailbox,
            "nats_port": nats_port,
            "sms_port": sms_port,
            "grpc_port": grpc_port,
            "log": log,
            "procs": procs,
        }
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        smtp.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
async def node(processes: dict[str, Any]) -> AsyncIterator[Node]:
    """Connected clients, once the service reports SERVING."""
    nc = await eventually(
        lambda: nats.connect(f"nats://127.0.0.1:{processes['nats_port']}"), what="nats-server"
    )
    js = nc.jetstream()
    await ensure_streams(js, name="ONESTOP")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{processes['grpc_port']}")
    health = health_pb2_grpc.HealthStub(channel)

    async def serving() -> bool:
        for proc in processes["procs"]:
            assert proc.poll() is None, f"a process died; see {processes['log'].read_text()[-3000:]}"
        reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    await eventually(serving, timeout=40, what="notification SERVING")
    yield Node(
        sms_url=f"http://127.0.0.1:{processes['sms_port']}",
        mailbox=processes["mailbox"],
        js=js,
        stub=notification_pb2_grpc.NotificationServiceStub(channel),
        tmp=processes["tmp"],
        log=processes["log"],
    )
    await channel.close()
    await nc.close()


def case_number() -> str:
    """A fresh case number."""
    return f"{CENTER}-20261126-{uuid.uuid4().int % 10**6:06d}"


def event(case: str, body: Any, *, producer: str = "approval") -> events_pb2.Envelope:
    """An envelope about `case`."""
    return new_event(
        center=CENTER,
        producer=producer,
        at=datetime.now(UTC),
        body=body,
        case_id=f"id-{case}",
        case_number=case,
    )


def accepted(
    case: str,
    *,
    phone: str = "13812345678",
    email_: str = "",
    language: str = "zh-CN",
    channel: common_pb2.Channel.ValueType = common_pb2.CHANNEL_COUNTER,
    agent: str = "",
) -> events_pb2.Envelope:
    """The case_accepted event carrying the applicant's contact."""
    body = events_pb2.CaseAccepted(
        matter_code="KP-INVEST",
        applicant_name="王小明",
        applicant_phone=phone,
        applicant_email=email_ or f"wang.{case[-6:]}@example.com",
        applicant_language=language,
        title="新建厂房项目",
        channel=channel,
    )
    body.accepted_by.username = agent or "clerk.zhang"
    return event(case, body, producer="intake")


async def settled(node: Node, case: str, count: int) -> list[pb.Delivery]:
    """The case's deliveries once there are `count` and none is still pending or failed."""
    rows = await node.deliveries(case)
    return rows if len(rows) >= count and all(d.state in ("sent", "skipped", "dead") for d in rows) else []


async def test_applicant_is_told_of_acceptance_supplement_and_decision_by_sms_email_and_inbox(
    node: Node,
) -> None:
    case = case_number()
    address = f"wang.{case[-6:]}@example.com"
    await node.publish(accepted(case, email_=address))
    [sms] = await eventually(lambda: node.sms(case), what="acceptance SMS")
    assert sms["to"] == "13812345678"
    assert sms["text"].startswith("【大连市人民政府行政服务中心】王小明您好")
    assert f"报件编号{case}" in sms["text"] and "受理回执上的查询码" in sms["text"]
    [mail] = await eventually(lambda: node.mailbox.to(address, case), what="acceptance e-mail")
    assert "受理回执上的查询码" in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]

    items = events_pb2.SupplementRoundOpened(round=1)
    items.items.add(material_code="SITE-PLAN", reason="总平面图未盖<章>", department="PLAN")
    items.items.add(material_code="FIRE-DESIGN", reason="消防设计说明缺失", department="FIRE")
    await node.publish(event(case, items))
    [notice_sms] = await eventually(lambda: [m for m in node.sms(case) if "一次性告知" in m["text"]])
    assert "1.SITE-PLAN:总平面图未盖<章>;2.FIRE-DESIGN:消防设计说明缺失" in notice_sms["text"]
    notice = await eventually(
        lambda: node.stub.GetNotice(pb.GetNoticeRequest(case_number=case, kind="supplement"))
    )
    assert "补正材料一次性告知书" in notice.html and "总平面图未盖&lt;章&gt;" in notice.html
    [mail] = await eventually(
        lambda: [m for m in node.mailbox.to(address, case) if "补正" in str(m["Subject"])]
    )
    html = mail.get_body(("html",))
    assert html is not None and "FIRE-DESIGN" in html.get_content()

    concluded = events_pb2.CaseConcluded(
        outcome=common_pb2.OUTCOME_REJECTED, reasons=["选址不符合控制性详细规划"]
    )
    await node.publish(event(case, concluded))
    texts = await eventually(
        lambda: at_least([m["text"] for m in node.sms(case) if "已办结" in m["text"]], 2),
        what="decision SMS and evaluation invitation",
    )
    assert any("决定不予许可,理由:选址不符合控制性详细规划" in t for t in texts)
    assert any("对本次服务作出评价" in t for t in texts)
    letter = await eventually(
        lambda: node.stub.GetNotice(pb.GetNoticeRequest(case_number=case, kind="decision"))
    )
    assert "不予行政许可决定书" in letter.html and "选址不符合控制性详细规划" in letter.html

    deliveries = await eventually(lambda: settled(node, case, 14), what="all deliveries settled")
    assert {d.state for d in deliveries} == {"sent"}
    assert {d.address_masked for d in deliveries if d.channel == "sms"} == {"138****5678"}
    assert {d.address_masked for d in deliveries if d.channel == "email"} == {"w***@example.com"}
    inbox = await node.inbox(f"case:{case}")
    assert {m.kind for m in inbox} == {
        "case_accepted",
        "supplement_notice",
        "decision",
        "evaluation_invitation",
    }


async def test_english_applicant_and_their_agent(node: Node) -> None:
    case = case_number()
    await node.publish(
        accepted(case, language="en", phone="13900001111", channel=common_pb2.CHANNEL_AGENT, agent="agent.li")
    )
    [sms] = await eventually(lambda: node.sms(case))
    assert sms["text"].startswith("[") and f"as case {case}" in sms["text"]
    assert "query code printed on your receipt" in sms["text"]
    [copy] = await eventually(lambda: node.inbox("staff:agent.li"))
    assert copy.case_number == case and copy.title == f"Application accepted: case {case}"


async def test_staff_warnings_land_in_the_right_inbox(node: Node) -> None:
    case = case_number()
    window, head = f"window:W-PLAN-{case[-6:]}", "head:PLAN"
    opened = events_pb2.TaskOpened()
    opened.task.task_id, opened.task.department, opened.task.window = f"t-{case}", "PLAN", window[7:]
    opened.task.key_project = True
    await node.publish(event(case, opened))
    red = events_pb2.ClockWarned(task_id=f"t-{case}", department="PLAN", level=common_pb2.CLOCK_STATE_RED)
    await node.publish(event(case, red, producer="supervision"))
    ext = events_pb2.ExtensionRequested(task_id=f"t-{case}", extension_id="x-1", days=5, reason="需专家评审")
    ext.by.username = "clerk.liu"
    await node.publish(event(case, ext))
    key = events_pb2.KeyProjectDesignated(tracker=f"tracker-{case[-6:]}")
    await node.publish(event(case, key, producer="supervision"))

    queue = {m.kind: m for m in await eventually(lambda: inbox_of(node, window, 2), what="window inbox")}
    assert set(queue) == {"clock_warned", "task_opened"}
    assert (
        queue["clock_warned"].title == f"红灯:已超期 {case}" and "【重点项目】" in queue["task_opened"].title
    )
    head_box = await eventually(lambda: inbox_of(node, head, 2))
    assert {m.kind for m in head_box if m.case_number == case} == {"clock_warned", "extension_requested"}
    [tracked] = await eventually(lambda: node.inbox(f"staff:tracker-{case[-6:]}"))
    assert tracked.kind == "key_project_designated" and tracked.case_number == case
    assert not node.sms(case) and not await node.inbox(f"case:{case}")


def at_least(items: list[T], count: int) -> list[T]:
    """`items` when there are `count` of them, else nothing (so `eventually` keeps waiting)."""
    return items if len(items) >= count else []


async def inbox_of(node: Node, recipient: str, count: int) -> list[pb.InboxMessage]:
    """A recipient's inbox once it holds `count` messages."""
    return at_least(await node.inbox(recipient), count)


async def test_sms_gateway_outage_delays_every_message_and_loses_none(node: Node) -> None:
    cases = [case_number() for _ in range(4)]
    node.sms_control(mode="down")
    try:
        envelopes = [accepted(c, phone=f"1370000{i:04d}") for i, c in enumerate(cases)]
        for env in envelopes:
            await node.publish(env)
        await node.publish(envelopes[0])  # a redelivered event must not send twice

        async def retrying() -> bool:
            sms = [d for c in cases for d in await node.deliveries(c) if d.channel == "sms"]
            return len(sms) == 4 and all(d.state == "failed" and d.attempts >= 2 for d in sms)

        await eventually(retrying, what="SMS deliveries retrying")
        failed = [d for d in await node.deliveries(cases[0]) if d.channel == "sms"][0]
        assert "HTTP 503" in failed.last_error
        assert [len(await node.inbox(f"case:{c}")) for c in cases] == [1, 1, 1, 1]  # other channels went on
    finally:
        node.sms_control(mode="up")
    await eventually(lambda: all(node.sms(c) for c in cases), timeout=15, what="SMS after the outage")
    await asyncio.sleep(1.0)
    await node.publish(envelopes[1])
    await asyncio.sleep(0.5)
    assert [len(node.sms(c)) for c in cases] == [1, 1, 1, 1]


async def test_bad_addresses_and_a_poison_template_end_up_as_dead_letters(node: Node) -> None:
    case = case_number()
    await node.publish(accepted(case, phone="12345", email_="nobody@bounce.example"))
    delivered = events_pb2.CaseDelivered(method="posted", receiver="王小明")
    await node.publish(event(case, delivered))

    async def dead() -> list[pb.Delivery]:
        letters = [
            d
            for d in (await node.stub.ListDeadLetters(pb.ListDeadLettersRequest())).deliveries
            if d.case_number == case
        ]
        return letters if len(letters) == 5 else []

    letters = {(d.kind, d.channel): d for d in await eventually(dead, what="dead letters")}
    assert "is not a mainland mobile number" in letters["case_accepted", "sms"].last_error
    assert letters["case_accepted", "sms"].address_masked == "*****"
    assert letters["case_accepted", "email"].last_error.startswith("SMTP 550")
    assert letters["case_accepted", "email"].address_masked == "n***@bounce.example"
    for ch in ("inbox", "sms", "email"):
        assert letters[POISONED, ch].last_error.startswith("template error: UndefinedError: 'courier_name'")
    assert [m.kind for m in await node.inbox(f"case:{case}")] == ["case_accepted"]  # nothing else held up

    (node.tmp / "templates" / "messages" / "zh-CN" / f"{POISONED}.txt").unlink()  # staff fix the template
    retried = await node.stub.RetryDeadLetter(
        pb.RetryDeadLetterRequest(delivery_id=letters[POISONED, "inbox"].delivery_id)
    )
    assert retried.state == "pending"
    inbox = await eventually(lambda: inbox_of(node, f"case:{case}", 2), what="retried inbox message")
    assert "邮寄送达" in inbox[0].body
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await node.stub.RetryDeadLetter(pb.RetryDeadLetterRequest(delivery_id=retried.delivery_id))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_an_open_case_page_receives_live_updates(node: Node) -> None:
    case = case_number()
    stream = node.stub.WatchCase(pb.WatchCaseRequest(case_number=case))
    first = await asyncio.wait_for(stream.read(), 10)
    assert first.kind == "subscribed"
    await node.publish(accepted(case))
    decided = events_pb2.TaskDecided(task_id="t-1", department="PLAN", status=common_pb2.TASK_STATUS_APPROVED)
    await node.publish(event(case, decided))
    await node.publish(event(case, events_pb2.CaseConcluded(outcome=common_pb2.OUTCOME_APPROVED)))
    updates = [await asyncio.wait_for(stream.read(), 10) for _ in range(3)]
    stream.cancel()
    assert [(u.kind, u.summary, u.department) for u in updates] == [
        ("case_accepted", f"已正式受理,报件编号 {case}", ""),
        ("task_decided", "部门审批意见:同意", "PLAN"),  # the page names the department
        ("case_concluded", "已办结:准予许可", ""),
    ]


def test_logs_never_show_a_phone_number_or_an_e_mail_address(node: Node) -> None:
    text = node.log.read_text(encoding="utf-8", errors="replace")
    assert "138****5678" in text
    for secret in ("13812345678", "13900001111", "13700000001", "@example.com"):
        assert secret not in text.replace("w***@example.com", "").replace("n***@bounce.example", "")
