"""Human names of departments and of this center, looked up in routing's catalogue when it is near."""

from __future__ import annotations

import asyncio

from onestop.routing.v1 import routing_pb2, routing_pb2_grpc
from services.common.logging import get_logger
from services.common.rpc import insecure_channel

log = get_logger(__name__)
REFRESH_S = 600.0


class RoutingDirectory:
    """Names from routing, refreshed in the background; a code stands in for a name it lacks."""

    def __init__(self, *, address: str, center: str, center_zh: str, center_en: str, fixed: bool) -> None:
        self._address = address
        self._center = center
        self._fixed = fixed
        self._center_names = (center_zh, center_en)
        self._departments: dict[str, tuple[str, str]] = {}

    def department(self, code: str, language: str) -> str:
        """The department's name, or its code until routing has answered."""
        names = self._departments.get(code)
        if not names:
            return code
        return names[1] if language == "en" else names[0]

    def center(self, language: str) -> str:
        """This center's name."""
        return self._center_names[1] if language == "en" else self._center_names[0]

    async def refresh(self, stub: routing_pb2_grpc.RoutingServiceStub) -> None:
        """Load the department and center names once."""
        deps = await stub.ListDepartments(routing_pb2.ListDepartmentsRequest(), timeout=5)
        self._departments = {d.code: (d.name_zh or d.code, d.name_en or d.code) for d in deps.departments}
        centers = await stub.ListCenters(routing_pb2.ListCentersRequest(), timeout=5)
        for c in centers.centers:
            if c.code == self._center and c.name_zh and not self._fixed:
                self._center_names = (c.name_zh, c.name_en or c.name_zh)

    async def run(self) -> None:
        """Refresh forever; routing being away only means codes instead of names for a while."""
        channel = insecure_channel(self._address)
        stub = routing_pb2_grpc.RoutingServiceStub(channel)
        try:
            while True:
                try:
                    await self.refresh(stub)
                    delay = REFRESH_S
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - names are a nicety; retry soon
                    log.warning("department names not available from routing", error=repr(exc))
                    delay = 15.0
                await asyncio.sleep(delay)
        finally:
            await channel.close()
