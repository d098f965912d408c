"""A service's refusal reaches the visitor in Chinese first: a real gRPC server behind the services'
own error edge refuses with the approval rules' Chinese text (a zh-CN google.rpc.LocalizedMessage in
the status details), and the gateway shows it above the English; English pages and the JSON API keep
the English; a refusal without Chinese still reads in English."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gateway.i18n import service_reason_zh
from onestop.approval.v1 import approval_pb2, approval_pb2_grpc
from services.approval import model
from services.common import errors
from services.common.grpc_server import add_servicer, new_server
from tests.unit.gateway.conftest import Gateway
from tests.unit.gateway.fakes import FakeApproval, Fakes

ALREADY_DECIDED = "cannot decide task t-plan: it is approved"
ALREADY_DECIDED_ZH = "该审批任务已准予许可，不能审批"
QUEUE_REFUSED = "this queue is not yours"


class _Approval:
    """Approval's rules at a real gRPC edge: the task was approved by a colleague a moment ago."""

    async def DecideTask(self, req: approval_pb2.DecideTaskRequest, context: Any) -> Any:
        task = model.TaskView(req.task_id, "PLAN", model.APPROVED, ())
        model.check_open(task, action="decide")
        raise AssertionError("an approved task is closed")

    async def ClaimTask(self, req: approval_pb2.ClaimTaskRequest, context: Any) -> Any:
        raise errors.FailedPrecondition("the window is closed for maintenance")  # no Chinese given

    async def ListQueue(self, req: approval_pb2.ListQueueRequest, context: Any) -> Any:
        raise errors.PermissionDenied(QUEUE_REFUSED, zh="您不能查看该部门的待办队列")


@pytest.fixture
async def approval_stub() -> AsyncIterator[approval_pb2_grpc.ApprovalServiceStub]:
    server = new_server()
    add_servicer(server, _Approval(), approval_pb2.DESCRIPTOR.services_by_name["ApprovalService"])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield approval_pb2_grpc.ApprovalServiceStub(channel)
    finally:
        await channel.close()
        await server.stop(None)


class _RealApproval(FakeApproval):
    """The fake's queue and tasks, but deciding and claiming go to the real server."""

    def __init__(self, stub: approval_pb2_grpc.ApprovalServiceStub, *, queue: bool = False) -> None:
        super().__init__()
        self.stub = stub
        self.queue = queue  # the queue too (the pages need the fake's)

    async def ListQueue(self, req: Any, timeout: float = 0) -> Any:
        if self.queue:
            return await self.stub.ListQueue(req, timeout=5)
        return await super().ListQueue(req, timeout)

    async def DecideTask(self, req: Any, timeout: float = 0) -> Any:
        return await self.stub.DecideTask(req, timeout=5)

    async def ClaimTask(self, req: Any, timeout: float = 0) -> Any:
        return await self.stub.ClaimTask(req, timeout=5)


async def test_the_status_carries_the_chinese_beside_the_english_and_the_reason(
    approval_stub: approval_pb2_grpc.ApprovalServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await approval_stub.DecideTask(approval_pb2.DecideTaskRequest(task_id="t-plan"))
    exc = refused.value
    assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION and exc.details() == ALREADY_DECIDED
    assert service_reason_zh(exc) == ALREADY_DECIDED_ZH
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    assert status is not None
    localized, info = error_details_pb2.LocalizedMessage(), error_details_pb2.ErrorInfo()
    kinds = [d for d in status.details if d.Unpack(localized) or d.Unpack(info)]
    assert len(kinds) == 2 and localized.locale == "zh-CN" and info.reason == "FAILED_PRECONDITION"

    with pytest.raises(grpc.aio.AioRpcError) as plain:
        await approval_stub.ClaimTask(approval_pb2.ClaimTaskRequest(task_id="t-plan"))
    assert service_reason_zh(plain.value) == ""


async def test_a_decision_refused_by_approval_reads_in_chinese_then_english_on_the_console(
    make_gateway: Any, approval_stub: approval_pb2_grpc.ApprovalServiceStub
) -> None:
    gw: Gateway = await make_gateway(Fakes(approval=_RealApproval(approval_stub)))
    assert await gw.sign_in("chief.plan") == 303
    token = await gw.csrf("/staff")
    resp = await gw.client.post("/staff/tasks/t-plan/approve", data={"_csrf": token})
    page = await resp.text()
    assert resp.status == 409
    assert f'<p class="error" role="alert">{ALREADY_DECIDED_ZH}</p>' in page
    assert f'<p class="error-original" lang="en">{ALREADY_DECIDED}</p>' in page

    claimed = await gw.client.post("/staff/tasks/t-plan/claim", data={"_csrf": token})
    text = await claimed.text()
    assert claimed.status == 409 and "the window is closed for maintenance" in text
    assert "error-original" not in text  # nothing to show beneath: the English is the message

    await gw.client.get("/lang/en")
    token = await gw.csrf("/staff")
    english = await (await gw.client.post("/staff/tasks/t-plan/approve", data={"_csrf": token})).text()
    assert ALREADY_DECIDED in english and ALREADY_DECIDED_ZH not in english


async def test_the_json_api_keeps_the_services_english(
    make_gateway: Any, approval_stub: approval_pb2_grpc.ApprovalServiceStub
) -> None:
    gw: Gateway = await make_gateway(Fakes(approval=_RealApproval(approval_stub, queue=True)))
    assert await gw.sign_in("chief.plan") == 303
    resp = await gw.client.get("/api/v1/staff/queue?department=PLAN")
    body = await resp.json()
    assert resp.status == 403 and body["error"]["message"] == QUEUE_REFUSED
    assert "您" not in await resp.text()
