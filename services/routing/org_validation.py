"""Parse and validate the organisation file into an ``Organisation``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from services.routing.catalogue_fields import Fields, Where, index_entry, read_yaml_text
from services.routing.org_model import (
    CENTER_CODE,
    DEPARTMENT_CODE,
    USERNAME,
    Center,
    CenterLevel,
    Department,
    Organisation,
    OrgError,
    Role,
    RoleGrant,
    ServicePoint,
    ServicePointKind,
    Staff,
    Window,
)

__all__ = ["load_org", "parse_org"]

_TOP = ("demo", "description", "centers", "service_points", "departments", "windows", "staff")
_CENTER = ("code", "name_zh", "name_en", "level", "parent", "convenience")
_POINT = ("code", "name_zh", "name_en", "kind", "center")
_DEPARTMENT = ("code", "name_zh", "name_en")
_WINDOW = ("center", "department", "chief_representative")
_STAFF = ("username", "display_name", "roles")
_GRANT = ("role", "center", "department", "service_point")
_CONVENIENCE_LEVELS = (CenterLevel.TOWNSHIP, CenterLevel.STREET)


def load_org(path: str | Path) -> Organisation:
    """Read and validate an organisation YAML file; errors name the file by its base name."""
    path = Path(path)
    where = Where(source=path.name, entry=None, error=OrgError)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        where.fail(None, f"cannot read file: {exc.strerror}")
    return parse_org(read_yaml_text(raw, where=where), source=path.name)


def parse_org(data: object, *, source: str) -> Organisation:
    """Validate parsed YAML (a mapping) into an ``Organisation``; raises ``OrgError``."""
    where = Where(source=source, entry=None, error=OrgError)
    top = Fields(data, where=where, allowed=_TOP)
    departments = _departments(top, where)
    centers = _centers(top, where)
    _check_tree(centers, where)
    points = _service_points(top, where, centers)
    staff = _staff(top, where, centers=centers, departments=departments, points=points)
    windows = _windows(top, where, centers=centers, departments=departments, staff=staff)
    _check_window_roles(staff, windows, where)
    return Organisation(
        centers=centers,
        service_points=points,
        departments=departments,
        windows=windows,
        staff=staff,
        demo=top.boolean("demo", default=False),
    )


def _departments(top: Fields, where: Where) -> dict[str, Department]:
    result: dict[str, Department] = {}
    for index, raw in top.items("departments"):
        entry = where.named(index_entry("department", index, raw, "code", DEPARTMENT_CODE))
        f = Fields(raw, where=entry, allowed=_DEPARTMENT)
        code = f.string("code", pattern=DEPARTMENT_CODE)
        if code in result:
            f.fail("code", f"duplicate department code {code!r}")
        result[code] = Department(code, f.string("name_zh"), f.string("name_en"))
    return result


def _centers(top: Fields, where: Where) -> dict[str, Center]:
    result: dict[str, Center] = {}
    for index, raw in top.items("centers"):
        entry = where.named(index_entry("center", index, raw, "code", CENTER_CODE))
        f = Fields(raw, where=entry, allowed=_CENTER)
        code = f.string("code", pattern=CENTER_CODE)
        if code in result:
            f.fail("code", f"duplicate center code {code!r}")
        level = f.choice("level", CenterLevel)
        parent = f.opt_string("parent", pattern=CENTER_CODE)
        if parent == code:
            f.fail("parent", f"cycle {code} -> {code}")
        result[code] = Center(
            code=code,
            name_zh=f.string("name_zh"),
            name_en=f.string("name_en"),
            level=level,
            parent=parent,
            convenience=f.boolean("convenience", default=level in _CONVENIENCE_LEVELS),
        )
    if not result:
        top.fail("centers", "at least one center is required")
    return result


def _check_tree(centers: Mapping[str, Center], where: Where) -> None:
    for code, center in centers.items():
        if center.parent is not None and center.parent not in centers:
            where.named(f"center {code!r}").fail("parent", f"unknown center {center.parent!r}")
    for code in centers:
        path = [code]
        parent = centers[code].parent
        while parent is not None:
            if parent in path:
                cycle = " -> ".join([*path[path.index(parent) :], parent])
                where.named(f"center {code!r}").fail("parent", f"cycle {cycle}")
            path.append(parent)
            parent = centers[parent].parent
    for code, center in centers.items():
        if center.parent is None:
            continue
        parent_level = centers[center.parent].level
        if parent_level.depth >= center.level.depth:
            where.named(f"center {code!r}").fail(
                "parent",
                f"a {center.level.value} center cannot sit under the "
                f"{parent_level.value} center {center.parent!r}",
            )


def _service_points(top: Fields, where: Where, centers: Mapping[str, Center]) -> dict[str, ServicePoint]:
    result: dict[str, ServicePoint] = {}
    for index, raw in top.items("service_points", required=False):
        entry = where.named(index_entry("service point", index, raw, "code", CENTER_CODE))
        f = Fields(raw, where=entry, allowed=_POINT)
        code = f.string("code", pattern=CENTER_CODE)
        if code in result or code in centers:
            f.fail("code", f"duplicate code {code!r} (already a center or service point)")
        center = f.string("center", pattern=CENTER_CODE)
        if center not in centers:
            f.fail("center", f"unknown center {center!r}")
        if not centers[center].convenience:
            f.fail(
                "center",
                f"service points belong to a township, street or convenience center, "
                f"not the {centers[center].level.value} center {center!r}",
            )
        result[code] = ServicePoint(
            code=code,
            name_zh=f.string("name_zh"),
            name_en=f.string("name_en"),
            kind=f.choice("kind", ServicePointKind),
            center=center,
        )
    return result


def _staff(
    top: Fields,
    where: Where,
    *,
    centers: Mapping[str, Center],
    departments: Mapping[str, Department],
    points: Mapping[str, ServicePoint],
) -> dict[str, Staff]:
    result: dict[str, Staff] = {}
    for index, raw in top.items("staff", required=False):
        entry = where.named(index_entry("staff", index, raw, "username", USERNAME))
        f = Fields(raw, where=entry, allowed=_STAFF)
        username = f.string("username", pattern=USERNAME)
        if username in result:
            f.fail("username", f"duplicate username {username!r}")
        grants: list[RoleGrant] = []
        for g_index, g_raw in f.items("roles"):
            g = f.nested(f"roles[{g_index}]", g_raw, allowed=_GRANT)
            grant = _grant(g, centers=centers, departments=departments, points=points)
            if grant in grants:
                g.fail("role", f"the same grant is listed twice ({grant.role.value})")
            grants.append(grant)
        if not grants:
            f.fail("roles", "at least one role is required")
        result[username] = Staff(username, f.string("display_name"), tuple(grants))
    return result


def _grant(
    g: Fields,
    *,
    centers: Mapping[str, Center],
    departments: Mapping[str, Department],
    points: Mapping[str, ServicePoint],
) -> RoleGrant:
    role = g.choice("role", Role)
    center = g.string("center", pattern=CENTER_CODE)
    if center not in centers:
        g.fail("center", f"unknown center {center!r}")
    department = g.opt_string("department", pattern=DEPARTMENT_CODE)
    if department is not None and department not in departments:
        g.fail("department", f"unknown department {department!r}")
    if department is None and role.needs_department:
        g.fail("department", f"required for role {role.value}")
    point = g.opt_string("service_point", pattern=CENTER_CODE)
    if point is not None:
        if point not in points:
            g.fail("service_point", f"unknown service point {point!r}")
        if points[point].center != center:
            g.fail(
                "service_point",
                f"service point {point!r} belongs to center {points[point].center!r}, not {center!r}",
            )
    return RoleGrant(role=role, center=center, department=department, service_point=point)


def _windows(
    top: Fields,
    where: Where,
    *,
    centers: Mapping[str, Center],
    departments: Mapping[str, Department],
    staff: Mapping[str, Staff],
) -> tuple[Window, ...]:
    seen: set[tuple[str, str]] = set()
    result: list[Window] = []
    for index, raw in top.items("windows", required=False):
        f = Fields(raw, where=where.named(f"window #{index}"), allowed=_WINDOW)
        center = f.string("center", pattern=CENTER_CODE)
        department = f.string("department", pattern=DEPARTMENT_CODE)
        f = Fields(raw, where=where.named(f"window '{center}/{department}'"), allowed=_WINDOW)
        if center not in centers:
            f.fail("center", f"unknown center {center!r}")
        if department not in departments:
            f.fail("department", f"unknown department {department!r}")
        if (center, department) in seen:
            f.fail("department", f"a {department} window at center {center!r} is listed twice")
        seen.add((center, department))
        chief = f.string("chief_representative", pattern=USERNAME)
        if chief not in staff:
            f.fail("chief_representative", f"unknown staff member {chief!r}")
        if not staff[chief].has_role(role=Role.CHIEF_REPRESENTATIVE, center=center, department=department):
            f.fail(
                "chief_representative",
                f"{chief!r} holds no chief_representative role for {department} at {center!r}",
            )
        result.append(Window(center=center, department=department, chief_representative=chief))
    return tuple(sorted(result, key=lambda w: (w.center, w.department)))


def _check_window_roles(staff: Mapping[str, Staff], windows: tuple[Window, ...], where: Where) -> None:
    existing = {(w.center, w.department) for w in windows}
    for username, member in staff.items():
        for index, grant in enumerate(member.roles):
            if grant.role.needs_window and (grant.center, grant.department) not in existing:
                where.named(f"staff {username!r}").fail(
                    f"roles[{index}].department",
                    f"no {grant.department} window at center {grant.center!r} for role {grant.role.value}",
                )
