"""Who holds which role where (from routing's organisation over gRPC), and the R20 staffing minimum."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import grpc

from onestop.common.v1 import common_pb2
from onestop.routing.v1 import routing_pb2, routing_pb2_grpc
from services.common.errors import PermissionDenied, Unavailable
from services.common.rpc import insecure_channel

LIAISON, FEE_COLLECTOR, AGENT = "liaison_officer", "fee_collector", "agent"
CONVENIENCE_LEVELS = ("township", "street")  # R19: townships and streets run convenience centers
R20_MINIMUM = 2
TTL_S = 30.0
# Role names in a Chinese refusal (as gateway/labels.py ROLE_NAMES has them).
ROLE_ZH = {
    "window_clerk": "窗口工作人员",
    "chief_representative": "首席代表",
    "department_head": "部门负责人",
    "center_director": "中心主任",
    "supervisor": "管理办（督查）人员",
    AGENT: "代办员",
    LIAISON: "联络员",
    FEE_COLLECTOR: "收费员",
}
UNREACHABLE_ZH = "暂时无法连接组织机构信息，请稍后重试"


@dataclass(frozen=True)
class Grant:
    """One role grant of a staff member."""

    username: str
    display_name: str
    role: str
    center: str
    service_point: str


@dataclass(frozen=True)
class Staffing:
    """A convenience center below the minimum (R20)."""

    center: str
    level: str
    liaison_officers: int
    fee_collectors: int
    minimum: int


class StaffDirectory(Protocol):
    """Role grants and centers, as routing's organisation has them."""

    async def grants(self, center: str, role: str) -> list[Grant]: ...

    async def centers(self) -> list[tuple[str, str]]: ...


class RoutingStaff:
    """StaffDirectory over routing's gRPC `ListStaff` and `ListCenters`, with a short cache."""

    def __init__(self, address: str) -> None:
        self._stub = routing_pb2_grpc.RoutingServiceStub(insecure_channel(address))
        self._cache: dict[tuple[str, str], tuple[float, list[Grant]]] = {}

    async def grants(self, center: str, role: str) -> list[Grant]:
        """The grants of `role` at `center`."""
        hit = self._cache.get((center, role))
        if hit and time.monotonic() - hit[0] < TTL_S:
            return hit[1]
        try:
            reply = await self._stub.ListStaff(
                routing_pb2.ListStaffRequest(center=center, role=role), timeout=5
            )
        except grpc.aio.AioRpcError as exc:
            raise Unavailable(
                f"the organisation is not reachable: {exc.details()}", zh=UNREACHABLE_ZH
            ) from None
        out = [
            Grant(s.username, s.display_name, g.role, g.center, g.service_point)
            for s in reply.staff
            for g in s.roles
            if g.center == center and g.role == role
        ]
        self._cache[(center, role)] = (time.monotonic(), out)
        return out

    async def centers(self) -> list[tuple[str, str]]:
        """Every center as (code, level)."""
        try:
            reply = await self._stub.ListCenters(routing_pb2.ListCentersRequest(), timeout=5)
        except grpc.aio.AioRpcError as exc:
            raise Unavailable(
                f"the organisation is not reachable: {exc.details()}", zh=UNREACHABLE_ZH
            ) from None
        return [(c.code, c.level) for c in reply.centers]


async def require(
    staff: StaffDirectory, actor: common_pb2.Actor, *, center: str, role: str, service_point: str = ""
) -> Grant:
    """The named person's grant of `role` at `center` (and service point), or PermissionDenied (R22)."""
    if not actor.username:
        raise PermissionDenied(f"a named {role} is required (R22)", zh=f"须由具名的{role_zh(role)}办理")
    for grant in await staff.grants(center, role):
        if grant.username == actor.username and (not service_point or grant.service_point == service_point):
            return grant
    where = f"service point {service_point}" if service_point else f"center {center}"
    where_zh = f"便民服务点 {service_point} " if service_point else f"中心 {center} "
    raise PermissionDenied(
        f"{actor.username} is not a {role} of {where}",
        zh=f"{actor.username} 不是{where_zh}的{role_zh(role)}",
    )


def role_zh(role: str) -> str:
    """A role as a Chinese refusal names it."""
    return ROLE_ZH.get(role, role)


def below_minimum(
    centers: Iterable[tuple[str, str]], counts: dict[str, tuple[int, int]], minimum: int = R20_MINIMUM
) -> list[Staffing]:
    """Convenience centers with fewer than `minimum` liaison officers or fee collectors."""
    out = []
    for code, level in sorted(centers):
        if level not in CONVENIENCE_LEVELS:
            continue
        liaison, fees = counts.get(code, (0, 0))
        if liaison < minimum or fees < minimum:
            out.append(Staffing(code, level, liaison, fees, minimum))
    return out


async def staffing_warnings(staff: StaffDirectory, minimum: int = R20_MINIMUM) -> list[Staffing]:
    """The R20 warning computed from the organisation's role grants."""
    centers = [(c, lvl) for c, lvl in await staff.centers() if lvl in CONVENIENCE_LEVELS]
    counts: dict[str, tuple[int, int]] = {}
    for code, _ in centers:
        liaison = {g.username for g in await staff.grants(code, LIAISON)}
        fees = {g.username for g in await staff.grants(code, FEE_COLLECTOR)}
        counts[code] = (len(liaison), len(fees))
    return below_minimum(centers, counts, minimum)
