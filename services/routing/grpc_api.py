"""RoutingService over gRPC: the catalogue, the organisation and routes."""

from __future__ import annotations

from typing import Any

from onestop.routing.v1 import routing_pb2
from services.common.errors import InvalidArgument, NotFound
from services.common.events import timestamp
from services.common.runtime import Runtime
from services.routing import handlers
from services.routing.catalogue import diff
from services.routing.convert import centers_message, matter_message, staff_message
from services.routing.handlers import RoutingContext

MAX_CATALOGUE_BYTES = 4 * 1024 * 1024


class RoutingApi:
    """Implements onestop.routing.v1.RoutingService."""

    def __init__(self, *, runtime: Runtime, ctx: RoutingContext) -> None:
        self.rt = runtime
        self.ctx = ctx

    async def ListMatters(
        self, req: routing_pb2.ListMattersRequest, _: Any
    ) -> routing_pb2.ListMattersResponse:
        catalogue = self.ctx.catalogue(req.version)
        query = req.query.strip().lower()
        matters = [
            m
            for m in catalogue.matters.values()
            if (not req.category or str(m.category) == req.category)
            and (
                not query
                or query in m.code.lower()
                or query in m.name_zh.lower()
                or query in m.name_en.lower()
            )
        ]
        return routing_pb2.ListMattersResponse(
            matters=[matter_message(m, catalogue.version) for m in matters], version=catalogue.version
        )

    async def GetMatter(self, req: routing_pb2.GetMatterRequest, _: Any) -> routing_pb2.Matter:
        if not req.code:
            raise InvalidArgument("code is required", field="code", zh="请填写事项编码")
        catalogue = self.ctx.catalogue(req.version)
        try:
            return matter_message(catalogue.matter(req.code), catalogue.version)
        except KeyError:
            raise NotFound(
                f"unknown matter code {req.code!r}", field="code", zh=f"未找到事项编码为 {req.code} 的事项"
            ) from None

    async def ListCenters(
        self, req: routing_pb2.ListCentersRequest, _: Any
    ) -> routing_pb2.ListCentersResponse:
        if req.parent and req.parent not in self.ctx.org.centers:
            raise NotFound(
                f"unknown center {req.parent!r}", field="parent", zh=f"未找到编码为 {req.parent} 的中心"
            )
        return centers_message(self.ctx.org, req.parent)

    async def ListDepartments(
        self, req: routing_pb2.ListDepartmentsRequest, _: Any
    ) -> routing_pb2.ListDepartmentsResponse:
        return routing_pb2.ListDepartmentsResponse(
            departments=[
                routing_pb2.Department(code=d.code, name_zh=d.name_zh, name_en=d.name_en)
                for d in self.ctx.org.departments.values()
            ]
        )

    async def ListWindows(
        self, req: routing_pb2.ListWindowsRequest, _: Any
    ) -> routing_pb2.ListWindowsResponse:
        center = req.center or self.ctx.center
        if center not in self.ctx.org.centers:
            raise NotFound(f"unknown center {center!r}", field="center", zh=f"未找到编码为 {center} 的中心")
        return routing_pb2.ListWindowsResponse(
            windows=[
                routing_pb2.Window(
                    code=w.code,
                    center=w.center,
                    department=w.department,
                    chief_representative=w.chief_representative,
                )
                for w in self.ctx.org.windows_at(center)
            ]
        )

    async def ImportCatalogue(
        self, req: routing_pb2.ImportCatalogueRequest, _: Any
    ) -> routing_pb2.CatalogueVersion:
        if len(req.content) > MAX_CATALOGUE_BYTES:
            raise InvalidArgument(
                f"catalogue larger than {MAX_CATALOGUE_BYTES} bytes",
                field="content",
                zh=f"事项目录文件不能超过 {MAX_CATALOGUE_BYTES // (1024 * 1024)} MB",
            )
        try:
            content = req.content.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument(
                "catalogue is not UTF-8 text", field="content", zh="事项目录文件须为 UTF-8 编码的文本"
            ) from None
        async with self.rt.uow() as uow:
            new, change = await handlers.import_catalogue(
                uow, self.ctx, content=content, source=req.source or "import.yaml", changed_by=req.changed_by
            )
            await uow.commit()
        self.ctx.versions[new.version] = new
        return _version_message(
            new.version, new.changed_by, new.changed_at, change.added, change.removed, change.changed
        )

    async def ListCatalogueVersions(
        self, req: routing_pb2.ListCatalogueVersionsRequest, _: Any
    ) -> routing_pb2.ListCatalogueVersionsResponse:
        out = routing_pb2.ListCatalogueVersionsResponse()
        previous = None
        for version in sorted(self.ctx.versions):
            cat = self.ctx.versions[version]
            # What each version changed, against the one before it (the first one adds every matter).
            change = diff(old=previous, new=cat) if previous is not None else None
            added = change.added if change else tuple(sorted(cat.matters))
            removed, changed = (change.removed, change.changed) if change else ((), ())
            out.versions.append(
                _version_message(version, cat.changed_by, cat.changed_at, added, removed, changed)
            )
            previous = cat
        return out

    async def GetRoute(self, req: routing_pb2.GetRouteRequest, _: Any) -> routing_pb2.Route:
        async with self.rt.engine.connect() as conn:
            row = await handlers.get_route(conn, req.case_id)
        return routing_pb2.Route(
            case_id=row["case_id"],
            case_number=row["case_number"],
            decided_at_center=row["decided_at_center"],
            forwarded=row["forwarded"],
            forward_state=row["forward_state"],
        )

    async def GetStaff(self, req: routing_pb2.GetStaffRequest, _: Any) -> routing_pb2.Staff:
        staff = self.ctx.org.staff.get(req.username)
        if staff is None:
            raise NotFound(
                f"no staff member {req.username!r}",
                field="username",
                zh=f"未找到用户名为 {req.username} 的工作人员",
            )
        return staff_message(staff)

    async def ListStaff(self, req: routing_pb2.ListStaffRequest, _: Any) -> routing_pb2.ListStaffResponse:
        out = routing_pb2.ListStaffResponse()
        for staff in self.ctx.org.staff.values():
            grants = [
                g
                for g in staff.roles
                if (not req.center or g.center == req.center) and (not req.role or str(g.role) == req.role)
            ]
            if grants:
                out.staff.append(staff_message(staff))
        return out

    async def ListServicePoints(
        self, req: routing_pb2.ListServicePointsRequest, _: Any
    ) -> routing_pb2.ListServicePointsResponse:
        if req.center and req.center not in self.ctx.org.centers:
            raise NotFound(
                f"unknown center {req.center!r}", field="center", zh=f"未找到编码为 {req.center} 的中心"
            )
        points = (
            self.ctx.org.service_points_of(req.center) if req.center else self.ctx.org.service_points.values()
        )
        return routing_pb2.ListServicePointsResponse(
            service_points=[
                routing_pb2.ServicePoint(
                    code=p.code, name_zh=p.name_zh, name_en=p.name_en, kind=str(p.kind), center=p.center
                )
                for p in points
            ]
        )


def _version_message(
    version: int, by: str, at: Any, added: Any, removed: Any, changed: Any
) -> routing_pb2.CatalogueVersion:
    msg = routing_pb2.CatalogueVersion(
        version=version, changed_by=by, added=list(added), removed=list(removed), changed=list(changed)
    )
    msg.changed_at.CopyFrom(timestamp(at))
    return msg
