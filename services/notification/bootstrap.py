"""Wires notification: channels, templates, the delivery worker, the live hub, servicer and consumer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

from onestop.events.v1 import events_pb2
from onestop.notification.v1 import notification_pb2
from services.common.logging import get_logger
from services.common.outbox import UnitOfWork
from services.common.runtime import Runtime, ServiceParts
from services.notification import handlers, orm
from services.notification.channels import SmsGateway, SmtpMailer
from services.notification.config import NotifyConfig, load_config
from services.notification.directory import RoutingDirectory
from services.notification.grpc_api import NotificationApi
from services.notification.live import CaseHub
from services.notification.model import Channels
from services.notification.templates import Directory, StaticDirectory, Templates
from services.notification.worker import DeliveryWorker

log = get_logger(__name__)


async def build(
    runtime: Runtime, *, config: NotifyConfig | None = None, hub: CaseHub | None = None
) -> ServiceParts:
    """Notification's servicer, event handlers and delivery worker."""
    settings = runtime.settings
    config = config or load_config(center=settings.center)
    log.info("notification channels", config=config.redacted())
    background: list[Callable[[], Awaitable[None]]] = []
    directory: Directory = StaticDirectory(config.center_name_zh, config.center_name_en)
    if "routing" in settings.peers:
        routing = RoutingDirectory(
            address=settings.peer("routing"),
            center=settings.center,
            center_zh=config.center_name_zh,
            center_en=config.center_name_en,
            fixed=config.center_name_given,
        )
        directory = routing
        background.append(routing.run)
    sms = SmsGateway(url=config.sms_url, timeout_s=config.send_timeout_s) if config.sms_url else None
    mail = None
    if config.smtp_host:
        mail = SmtpMailer(
            host=config.smtp_host,
            port=config.smtp_port,
            sender=config.smtp_from,
            timeout_s=config.send_timeout_s,
            user=config.smtp_user,
            password=config.smtp_password,
            starttls=config.smtp_starttls,
        )
    templates = Templates(directory=directory, override_dir=config.template_dir)
    worker = DeliveryWorker(
        engine=runtime.engine,
        clock=runtime.clock,
        templates=templates,
        policy=config.retry_policy(),
        sms=sms,
        mail=mail,
        poll_s=config.poll_s,
        concurrency=config.concurrency,
    )
    background.insert(0, worker.run)
    hub = hub or CaseHub()
    ctx = handlers.NotificationContext(
        clock=runtime.clock,
        channels=Channels(sms=sms is not None, email=mail is not None),
        hub=hub,
        wake=worker.wake,
        templates=templates,
    )
    api = NotificationApi(runtime=runtime, ctx=ctx, hub=hub)
    return ServiceParts(
        servicers=[(api, notification_pb2.DESCRIPTOR.services_by_name["NotificationService"])],
        handlers=dict.fromkeys(handlers.EVENT_KINDS, partial(_on_event, ctx)),
        prefetch=handlers.prefetch,
        background=background,
    )


async def _on_event(ctx: handlers.NotificationContext, uow: UnitOfWork, env: events_pb2.Envelope) -> None:
    await handlers.on_event(uow, ctx, env)


TABLES = (orm.outbox, orm.inbox)
