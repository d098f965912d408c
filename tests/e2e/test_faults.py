"""Fault campaign on one node: cases keep flowing while each process is killed and restarted.

After every fault: every case concluded, none lost, none concluded twice, no event applied twice.
Short variant always on; ONESTOP_LONG=1 runs more cases and more rounds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections import Counter

import grpc
import pytest

from onestop.approval.v1 import approval_pb2
from onestop.common.v1 import common_pb2
from onestop.notification.v1 import notification_pb2, notification_pb2_grpc
from services.common.ports import SERVICES
from tests.harness import NodeClients, chief, wait_for

pytestmark = pytest.mark.e2e
LONG = os.environ.get("ONESTOP_LONG") == "1"
DEPARTMENTS = ("ECON", "ENV", "FIRE", "SAFETY")  # TR-001


class Bot(threading.Thread):
    """Decides every pending task of the departments, riding out restarts."""

    def __init__(self, node) -> None:
        super().__init__(daemon=True)
        self.node = node
        self.stop = threading.Event()
        self.decided: Counter[str] = Counter()

    def run(self) -> None:
        while not self.stop.is_set():
            c = NodeClients.of(self.node)
            try:
                while not self.stop.is_set():
                    for dept in DEPARTMENTS:
                        queue = c.approval.ListQueue(
                            approval_pb2.ListQueueRequest(department=dept), timeout=5
                        )
                        for task in queue.tasks:
                            if task.status != common_pb2.TASK_STATUS_PENDING:
                                continue
                            try:
                                c.decide(task, by=chief(dept))
                                self.decided[task.task_id] += 1
                            except grpc.RpcError as exc:
                                if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
                                    raise
                    time.sleep(0.05)
            except grpc.RpcError:
                time.sleep(0.2)  # a service is restarting
            finally:
                c.close()


def _submit_some(node, n: int, tag: str) -> list[str]:
    numbers = []
    deadline = time.monotonic() + 60
    i = 0
    while len(numbers) < n and time.monotonic() < deadline:
        c = NodeClients.of(node)
        try:
            numbers.append(c.submit("TR-001", request_id=f"{tag}-{i}").case.case_number)
            i += 1
        except grpc.RpcError:
            time.sleep(0.2)  # retried with the same request id: never a second case
        finally:
            c.close()
    return numbers


def _restart_postgres() -> bool:
    if not shutil.which("pg_ctlcluster") or os.geteuid() != 0:
        return False
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return True


def test_cases_survive_sigkill_of_every_service_and_restarts_of_nats_and_postgres(node_factory) -> None:
    node = node_factory()
    bot = Bot(node)
    bot.start()
    per_round = 12 if LONG else 4
    rounds = 3 if LONG else 1
    numbers: list[str] = []
    try:
        for r in range(rounds):
            for name in SERVICES:
                numbers += _submit_some(node, per_round, f"r{r}-{name}")
                node.kill(name)
                numbers += _submit_some(node, 1, f"r{r}-{name}-during") if name != "intake" else []
                node.restart(name)
            numbers += _submit_some(node, per_round, f"r{r}-nats")
            node.kill("nats")
            node.restart("nats")
            for name in SERVICES:
                node.wait_healthy(name, timeout=60)
            numbers += _submit_some(node, per_round, f"r{r}-pg")
            if _restart_postgres():
                for name in SERVICES:
                    node.wait_healthy(name, timeout=90)
        numbers += _submit_some(node, per_round, "after")
        c = NodeClients.of(node)
        for number in numbers:
            try:
                case = c.wait_case(number, common_pb2.CASE_STATUS_CONCLUDED, timeout=120)
            except AssertionError as exc:  # say where the case stopped: its trail and its tasks
                tasks = [(t.department, common_pb2.TaskStatus.Name(t.status)) for t in c.tasks(number)]
                raise AssertionError(f"{exc}; timeline {c.timeline(number)}; tasks {tasks}") from None
            assert case.outcome == common_pb2.OUTCOME_APPROVED
    finally:
        bot.stop.set()
        bot.join(10)
    assert len(set(numbers)) == len(numbers)
    assert all(n == 1 for n in bot.decided.values()), "a task was decided twice"
    inbox = notification_pb2_grpc.NotificationServiceStub(grpc.insecure_channel(node.address("notification")))
    for number in numbers:
        trail = c.timeline(number)
        assert trail.count("case_concluded") == 1, (number, trail)
        assert trail.count("case_accepted") == 1, (number, trail)
        assert trail.count("task_decided") == 4, (number, trail)
        decisions = wait_for(
            lambda n=number: [
                m
                for m in inbox.ListInbox(
                    notification_pb2.ListInboxRequest(recipient=f"case:{n}"), timeout=5
                ).messages
                if "decision" in m.kind
            ],
            timeout=180,
            what=f"the decision message of {number}",
        )
        assert len(decisions) == 1, (number, [m.kind for m in decisions])
