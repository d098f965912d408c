"""Default ports of a node's processes: the one source the launcher, Kubernetes and tests read."""

from __future__ import annotations

GRPC_PORTS: dict[str, int] = {
    "intake": 50051,
    "routing": 50052,
    "approval": 50053,
    "supervision": 50054,
    "notification": 50055,
}
INTERCONNECT_PORT = 50060
HTTP_PORT = 8080
METRICS_PORT = 9090
SERVICES: tuple[str, ...] = tuple(GRPC_PORTS)
