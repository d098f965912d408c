"""gRPC clients of the node's services, opened once per gateway process."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from onestop.approval.v1 import approval_pb2_grpc
from onestop.intake.v1 import intake_pb2_grpc
from onestop.notification.v1 import notification_pb2_grpc
from onestop.routing.v1 import routing_pb2_grpc
from onestop.supervision.v1 import supervision_pb2_grpc
from services.common.rpc import insecure_channel
from services.common.settings import Settings


@dataclass
class Clients:
    """Stubs for every service of the node."""

    channels: dict[str, grpc.aio.Channel]
    intake: intake_pb2_grpc.IntakeServiceStub
    routing: routing_pb2_grpc.RoutingServiceStub
    approval: approval_pb2_grpc.ApprovalServiceStub
    supervision: supervision_pb2_grpc.SupervisionServiceStub
    notification: notification_pb2_grpc.NotificationServiceStub

    @classmethod
    def open(cls, settings: Settings) -> Clients:
        """Channels to every peer named in the settings."""
        channels = {name: insecure_channel(settings.peer(name))
                    for name in ("intake", "routing", "approval", "supervision", "notification")}
        return cls(
            channels=channels,
            intake=intake_pb2_grpc.IntakeServiceStub(channels["intake"]),
            routing=routing_pb2_grpc.RoutingServiceStub(channels["routing"]),
            approval=approval_pb2_grpc.ApprovalServiceStub(channels["approval"]),
            supervision=supervision_pb2_grpc.SupervisionServiceStub(channels["supervision"]),
            notification=notification_pb2_grpc.NotificationServiceStub(channels["notification"]),
        )

    async def ready(self) -> dict[str, bool]:
        """Which services answer their health check with SERVING."""
        out = {}
        for name, channel in self.channels.items():
            try:
                reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
                out[name] = reply.status == health_pb2.HealthCheckResponse.SERVING
            except grpc.aio.AioRpcError:
                out[name] = False
        return out

    async def close(self) -> None:
        """Close every channel."""
        for channel in self.channels.values():
            await channel.close()
