"""gRPC clients of the node's services, opened once per gateway process; unconfigured peers are absent."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from onestop.approval.v1 import approval_pb2_grpc
from onestop.intake.v1 import convenience_pb2_grpc, intake_pb2_grpc
from onestop.interconnect.v1 import interconnect_pb2_grpc
from onestop.notification.v1 import notification_pb2_grpc
from onestop.routing.v1 import routing_pb2_grpc
from onestop.supervision.v1 import supervision_pb2_grpc
from services.common.ports import SERVICES
from services.common.rpc import insecure_channel
from services.common.settings import Settings

if TYPE_CHECKING:
    from onestop.approval.v1.approval_pb2_grpc import ApprovalServiceAsyncStub
    from onestop.intake.v1.convenience_pb2_grpc import ConvenienceServiceAsyncStub
    from onestop.intake.v1.intake_pb2_grpc import IntakeServiceAsyncStub
    from onestop.interconnect.v1.interconnect_pb2_grpc import InterconnectStatusAsyncStub
    from onestop.notification.v1.notification_pb2_grpc import NotificationServiceAsyncStub
    from onestop.routing.v1.routing_pb2_grpc import RoutingServiceAsyncStub
    from onestop.supervision.v1.supervision_pb2_grpc import SupervisionServiceAsyncStub

T = TypeVar("T")
DEGRADED_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.DEADLINE_EXCEEDED}
)
_STUBS: dict[str, Any] = {
    "intake": intake_pb2_grpc.IntakeServiceStub,
    "routing": routing_pb2_grpc.RoutingServiceStub,
    "approval": approval_pb2_grpc.ApprovalServiceStub,
    "supervision": supervision_pb2_grpc.SupervisionServiceStub,
    "notification": notification_pb2_grpc.NotificationServiceStub,
}
GRPC_HTTP = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.UNIMPLEMENTED: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
SERVICE_NAMES = {
    "intake": ("收件服务", "intake"),
    "routing": ("事项与分送服务", "routing"),
    "approval": ("审批服务", "approval"),
    "supervision": ("监察服务", "supervision"),
    "notification": ("通知服务", "notification"),
    "convenience": ("便民服务(收件服务)", "convenience (intake)"),
}


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status a service's gRPC status becomes at the gateway (502 for the unexpected)."""
    return GRPC_HTTP.get(code, 502)


class ServiceMissing(Exception):
    """A peer the page needs is not configured or not reachable; pages degrade with a message."""

    def __init__(self, service: str) -> None:
        super().__init__(f"the {service} service is not available right now")
        self.service = service


class Clients:
    """Stubs for the configured services of the node (tests pass fakes with the same methods)."""

    def __init__(
        self, stubs: Mapping[str, Any], channels: Mapping[str, grpc.aio.Channel] | None = None
    ) -> None:
        self.stubs = dict(stubs)
        self.channels = dict(channels or {})

    @classmethod
    def open(cls, settings: Settings) -> Clients:
        """Channels to every peer named in the settings; the others stay absent."""
        channels = {
            name: insecure_channel(settings.peers[name]) for name in SERVICES if settings.peers.get(name)
        }
        stubs = {name: _STUBS[name](ch) for name, ch in channels.items()}
        if "intake" in channels:  # InterconnectStatus is served on intake's internal port
            stubs["interconnect"] = interconnect_pb2_grpc.InterconnectStatusStub(channels["intake"])
            # intake serves the convenience service on the same port
            stubs["convenience"] = convenience_pb2_grpc.ConvenienceServiceStub(channels["intake"])
        return cls(stubs, channels)

    def _get(self, name: str) -> Any:
        try:
            return self.stubs[name]
        except KeyError:
            raise ServiceMissing(name) from None

    def has(self, name: str) -> bool:
        """Whether the peer is configured."""
        return name in self.stubs

    @property
    def intake(self) -> IntakeServiceAsyncStub:
        """IntakeService."""
        return cast("IntakeServiceAsyncStub", self._get("intake"))

    @property
    def interconnect(self) -> InterconnectStatusAsyncStub:
        """InterconnectStatus (on intake's internal port): the link to the parent node."""
        return cast("InterconnectStatusAsyncStub", self._get("interconnect"))

    @property
    def convenience(self) -> ConvenienceServiceAsyncStub:
        """ConvenienceService (served by intake): agency, delivery, fees."""
        return cast("ConvenienceServiceAsyncStub", self._get("convenience"))

    @property
    def routing(self) -> RoutingServiceAsyncStub:
        """RoutingService."""
        return cast("RoutingServiceAsyncStub", self._get("routing"))

    @property
    def approval(self) -> ApprovalServiceAsyncStub:
        """ApprovalService."""
        return cast("ApprovalServiceAsyncStub", self._get("approval"))

    @property
    def supervision(self) -> SupervisionServiceAsyncStub:
        """SupervisionService."""
        return cast("SupervisionServiceAsyncStub", self._get("supervision"))

    @property
    def notification(self) -> NotificationServiceAsyncStub:
        """NotificationService."""
        return cast("NotificationServiceAsyncStub", self._get("notification"))

    async def ready(self) -> dict[str, str]:
        """Each service's health: SERVING, NOT_SERVING, UNREACHABLE, or NOT_CONFIGURED."""
        out: dict[str, str] = {}
        for name in SERVICES:
            channel = self.channels.get(name)
            if channel is None:
                out[name] = "SERVING" if name in self.stubs else "NOT_CONFIGURED"
                continue
            try:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1
                )
                out[name] = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.aio.AioRpcError:
                out[name] = "UNREACHABLE"
        return out

    async def close(self) -> None:
        """Close every channel."""
        for channel in self.channels.values():
            await channel.close()


async def optional(
    call: Awaitable[T] | None, service: str, *, absent_ok: bool = False
) -> tuple[T | None, str]:
    """Await a call to a service that may be absent: (reply, "") or (None, the service's name).

    `absent_ok`: NOT_FOUND means there is nothing to show (None, ""), not that the page is wrong: a
    case decided at the parent node has no decision in this node's approval, a case forwarded before
    supervision heard of it has no clocks here.
    """
    if call is None:
        return None, service
    try:
        return await call, ""
    except grpc.aio.AioRpcError as exc:
        if exc.code() in DEGRADED_CODES:
            return None, service
        if absent_ok and exc.code() == grpc.StatusCode.NOT_FOUND:
            return None, ""
        raise
    except ServiceMissing:
        return None, service


def call_or_none(clients: Clients, service: str, method: str, request: Any, *, timeout: float = 3) -> Any:
    """An awaitable call when the service is configured, else None (for `optional`)."""
    if not clients.has(service):
        return None
    stub = clients.stubs[service]
    return getattr(stub, method)(request, timeout=timeout)
