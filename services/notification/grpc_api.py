"""NotificationService over gRPC: inboxes, deliveries, dead letters, notices and live case pages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from onestop.notification.v1 import notification_pb2
from services.common.errors import InvalidArgument, NotFound
from services.common.events import timestamp
from services.common.runtime import Runtime
from services.notification import convert, handlers, repository
from services.notification.live import CaseHub
from services.notification.model import DEAD

# The written notices by kind (templates/notices/zh-CN), for GetNotice's refusal.
_NOTICE_ZH = {
    "supplement": "补正材料一次性告知书",
    "extension": "延期办理告知书",
    "decision": "行政许可决定书",
    "deemed_approval": "超时默许告知书",
    "special_procedure": "特别程序告知书",
}


class NotificationApi:
    """Implements onestop.notification.v1.NotificationService."""

    def __init__(self, *, runtime: Runtime, ctx: handlers.NotificationContext, hub: CaseHub) -> None:
        self.rt = runtime
        self.ctx = ctx
        self.hub = hub

    async def ListInbox(
        self, req: notification_pb2.ListInboxRequest, _: Any
    ) -> notification_pb2.ListInboxResponse:
        if not req.recipient and not req.case_number:
            raise InvalidArgument(
                "recipient (case:<number>, window:<code>, head:<department>, staff:<user>) "
                "or case_number is required",
                field="recipient",
                zh="请指定收件人或报件编号",
            )
        async with self.rt.engine.connect() as conn:
            rows = await repository.inbox(conn, recipient=req.recipient, case_number=req.case_number)
        return notification_pb2.ListInboxResponse(messages=[convert.inbox_message(r) for r in rows])

    async def ListDeliveries(
        self, req: notification_pb2.ListDeliveriesRequest, _: Any
    ) -> notification_pb2.ListDeliveriesResponse:
        async with self.rt.engine.connect() as conn:
            rows = await repository.deliveries(conn, case_number=req.case_number)
        return notification_pb2.ListDeliveriesResponse(deliveries=[convert.delivery_message(r) for r in rows])

    async def ListDeadLetters(
        self, req: notification_pb2.ListDeadLettersRequest, _: Any
    ) -> notification_pb2.ListDeliveriesResponse:
        async with self.rt.engine.connect() as conn:
            rows = await repository.deliveries(conn, states=(DEAD,))
        return notification_pb2.ListDeliveriesResponse(deliveries=[convert.delivery_message(r) for r in rows])

    async def RetryDeadLetter(
        self, req: notification_pb2.RetryDeadLetterRequest, _: Any
    ) -> notification_pb2.Delivery:
        async with self.rt.uow() as uow:
            row = await handlers.retry_dead_letter(uow, self.ctx, req.delivery_id)
            await uow.commit()
        return convert.delivery_message(row)

    async def GetNotice(self, req: notification_pb2.GetNoticeRequest, _: Any) -> notification_pb2.Notice:
        if not req.notice_id and not req.case_number:
            raise InvalidArgument(
                "notice_id or case_number is required",
                field="notice_id",
                zh="请指定要查看的告知书，或填写报件编号",
            )
        async with self.rt.engine.connect() as conn:
            row = await repository.notice(
                conn, notice_id=req.notice_id, case_number=req.case_number, kind=req.kind
            )
        if row is None:
            name = _NOTICE_ZH.get(req.kind, "书面告知书")
            raise NotFound(
                f"no {req.kind or 'written'} notice {req.notice_id or 'for case ' + req.case_number}",
                zh=f"未找到该{name}" if req.notice_id else f"报件 {req.case_number} 暂无{name}",
            )
        return convert.notice_message(row)

    async def WatchCase(
        self, req: notification_pb2.WatchCaseRequest, _: Any
    ) -> AsyncIterator[notification_pb2.CaseUpdate]:
        # The gateway checks the query code before it relays a page; updates carry no personal data.
        if not req.case_number:
            raise InvalidArgument("case_number is required", field="case_number", zh="请填写报件编号")
        with self.hub.watch(req.case_number) as queue:
            # The first message tells the client it is subscribed, so nothing published after it is missed.
            first = notification_pb2.CaseUpdate(case_number=req.case_number, kind="subscribed")
            first.at.CopyFrom(timestamp(self.ctx.clock.now()))
            yield first
            while True:
                yield convert.case_update(await queue.get())
