"""The organisation: centers as a tree, service points, departments, windows and staff.

Pure domain (frozen dataclasses, no I/O).  Parsing and validation live in ``org_validation``;
import everything from ``services.routing.org``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from services.routing.catalogue_fields import DataFileError

__all__ = [
    "CENTER_CODE",
    "DEPARTMENT_CODE",
    "USERNAME",
    "Center",
    "CenterLevel",
    "Department",
    "OrgError",
    "Organisation",
    "Role",
    "RoleGrant",
    "ServicePoint",
    "ServicePointKind",
    "Staff",
    "StaffingWarning",
    "Tier",
    "Window",
]

CENTER_CODE = re.compile(r"[0-9A-Z][0-9A-Z-]{1,31}")
DEPARTMENT_CODE = re.compile(r"[A-Z][A-Z0-9_]{1,15}")
USERNAME = re.compile(r"[a-z][a-z0-9._-]{1,63}")


class OrgError(DataFileError):
    """The organisation file is invalid; the message names file, entry and field."""


class Tier(StrEnum):
    """An administrative tier: where a matter is decided, and what a center belongs to."""

    VILLAGE = "village"
    TOWNSHIP = "township"
    DISTRICT = "district"
    CITY = "city"
    PROVINCE = "province"
    NATION = "nation"

    @property
    def rank(self) -> int:
        """0 for village up to 5 for nation."""
        return _TIER_ORDER.index(self)


_TIER_ORDER = tuple(Tier)


class CenterLevel(StrEnum):
    """The kind of a center in the tree."""

    NATION = "nation"
    PROVINCE = "province"
    CITY = "city"
    DISTRICT = "district"
    COUNTY = "county"
    PILOT_ZONE = "pilot_zone"
    SUB_CENTER = "sub_center"
    TOWNSHIP = "township"
    STREET = "street"

    @property
    def tier(self) -> Tier:
        """The administrative tier: a county is district-tier, a sub-center is city-tier."""
        return _LEVEL_TIER[self]

    @property
    def depth(self) -> int:
        """Nesting depth; a parent's depth must be smaller than its child's."""
        return _LEVEL_DEPTH[self]


_LEVEL_TIER = {
    CenterLevel.NATION: Tier.NATION,
    CenterLevel.PROVINCE: Tier.PROVINCE,
    CenterLevel.CITY: Tier.CITY,
    CenterLevel.DISTRICT: Tier.DISTRICT,
    CenterLevel.COUNTY: Tier.DISTRICT,
    CenterLevel.PILOT_ZONE: Tier.DISTRICT,
    CenterLevel.SUB_CENTER: Tier.CITY,
    CenterLevel.TOWNSHIP: Tier.TOWNSHIP,
    CenterLevel.STREET: Tier.TOWNSHIP,
}
# Sub-centers hang directly under the city (R17), hence depth 3 like a district.
_LEVEL_DEPTH = {
    CenterLevel.NATION: 0,
    CenterLevel.PROVINCE: 1,
    CenterLevel.CITY: 2,
    CenterLevel.DISTRICT: 3,
    CenterLevel.COUNTY: 3,
    CenterLevel.PILOT_ZONE: 3,
    CenterLevel.SUB_CENTER: 3,
    CenterLevel.TOWNSHIP: 4,
    CenterLevel.STREET: 4,
}


class ServicePointKind(StrEnum):
    """A village or an urban community."""

    VILLAGE = "village"
    COMMUNITY = "community"


class Role(StrEnum):
    """A staff role; each grant is scoped to a center and maybe a department or service point."""

    WINDOW_CLERK = "window_clerk"
    CHIEF_REPRESENTATIVE = "chief_representative"
    DEPARTMENT_HEAD = "department_head"
    CENTER_DIRECTOR = "center_director"
    SUPERVISOR = "supervisor"
    TRACKER = "tracker"
    LIAISON_OFFICER = "liaison_officer"
    AGENT = "agent"
    FEE_COLLECTOR = "fee_collector"
    ADMINISTRATOR = "administrator"

    @property
    def needs_department(self) -> bool:
        """Window and department roles only make sense for one department."""
        return self in (Role.WINDOW_CLERK, Role.CHIEF_REPRESENTATIVE, Role.DEPARTMENT_HEAD)

    @property
    def needs_window(self) -> bool:
        """Roles that work at a department's window at that center."""
        return self in (Role.WINDOW_CLERK, Role.CHIEF_REPRESENTATIVE)


@dataclass(frozen=True, slots=True)
class Center:
    """An administrative service center (or a province/nation node above the city)."""

    code: str
    name_zh: str
    name_en: str
    level: CenterLevel
    parent: str | None
    convenience: bool

    @property
    def tier(self) -> Tier:
        """The administrative tier of this center."""
        return self.level.tier


@dataclass(frozen=True, slots=True)
class ServicePoint:
    """A village or community service point under a township or street center (R19)."""

    code: str
    name_zh: str
    name_en: str
    kind: ServicePointKind
    center: str


@dataclass(frozen=True, slots=True)
class Department:
    """A government department (委办局) with a stable short code."""

    code: str
    name_zh: str
    name_en: str


@dataclass(frozen=True, slots=True)
class Window:
    """A department's window at a center; its chief representative decides there (R15)."""

    center: str
    department: str
    chief_representative: str

    @property
    def code(self) -> str:
        """``<center>/<department>``, e.g. ``210200/PLAN``."""
        return f"{self.center}/{self.department}"


@dataclass(frozen=True, slots=True)
class RoleGrant:
    """One role of a staff member, scoped to a center and maybe a department or service point."""

    role: Role
    center: str
    department: str | None = None
    service_point: str | None = None


@dataclass(frozen=True, slots=True)
class Staff:
    """A staff member; credentials are kept elsewhere."""

    username: str
    display_name: str
    roles: tuple[RoleGrant, ...]

    def has_role(self, *, role: Role, center: str, department: str | None = None) -> bool:
        """Whether a grant of ``role`` at ``center`` (and ``department``, if given) exists."""
        return any(
            g.role is role and g.center == center and (department is None or g.department == department)
            for g in self.roles
        )


@dataclass(frozen=True, slots=True)
class StaffingWarning:
    """A convenience center below the R20 minimum of liaison officers or fee collectors."""

    center: str
    liaison_officers: int
    fee_collectors: int
    minimum: int

    @property
    def message(self) -> str:
        """Human-readable warning."""
        return (
            f"center {self.center!r} has {self.liaison_officers} liaison officer(s) and "
            f"{self.fee_collectors} fee collector(s); at least {self.minimum} of each are required"
        )


@dataclass(frozen=True)
class Organisation:
    """The validated organisation: build it with ``parse_org`` or ``load_org``."""

    centers: Mapping[str, Center]
    service_points: Mapping[str, ServicePoint]
    departments: Mapping[str, Department]
    windows: tuple[Window, ...]
    staff: Mapping[str, Staff]
    demo: bool = False
    _children: Mapping[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)
    _windows_at: Mapping[str, tuple[Window, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("centers", "service_points", "departments", "staff"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))
        children: dict[str, list[str]] = {}
        for center in self.centers.values():
            if center.parent is not None:
                children.setdefault(center.parent, []).append(center.code)
        object.__setattr__(self, "_children", {k: tuple(sorted(v)) for k, v in children.items()})
        windows: dict[str, list[Window]] = {}
        for window in self.windows:
            windows.setdefault(window.center, []).append(window)
        object.__setattr__(
            self,
            "_windows_at",
            {k: tuple(sorted(v, key=lambda w: w.department)) for k, v in windows.items()},
        )

    def center(self, code: str) -> Center:
        """The center with ``code``; ``KeyError`` if unknown."""
        try:
            return self.centers[code]
        except KeyError:
            raise KeyError(f"unknown center {code!r}") from None

    def ancestors(self, code: str) -> tuple[Center, ...]:
        """The centers above ``code``, parent first, root last."""
        result: list[Center] = []
        parent = self.center(code).parent
        while parent is not None:
            center = self.centers[parent]
            result.append(center)
            parent = center.parent
        return tuple(result)

    def children(self, code: str) -> tuple[Center, ...]:
        """The centers directly under ``code``, by code."""
        self.center(code)
        return tuple(self.centers[c] for c in self._children.get(code, ()))

    def descendants(self, code: str) -> tuple[Center, ...]:
        """Every center below ``code``, depth first, by code within each level."""
        result: list[Center] = []
        for child in self.children(code):
            result.append(child)
            result.extend(self.descendants(child.code))
        return tuple(result)

    def service_points_of(self, center: str) -> tuple[ServicePoint, ...]:
        """The service points under ``center``, by code."""
        self.center(center)
        return tuple(
            sorted(
                (p for p in self.service_points.values() if p.center == center),
                key=lambda p: p.code,
            )
        )

    def windows_at(self, center: str) -> tuple[Window, ...]:
        """The department windows of ``center``, by department code."""
        self.center(center)
        return self._windows_at.get(center, ())

    def window(self, *, center: str, department: str) -> Window | None:
        """The window of ``department`` at ``center``, if there is one."""
        for window in self.windows_at(center):
            if window.department == department:
                return window
        return None

    def staff_with_role(self, *, center: str, role: Role, department: str | None = None) -> tuple[Staff, ...]:
        """Staff holding ``role`` at ``center`` (and ``department``, if given), by username."""
        self.center(center)
        return tuple(
            s
            for _, s in sorted(self.staff.items())
            if s.has_role(role=role, center=center, department=department)
        )

    def deciding_center(self, *, intake_center: str, tier: Tier) -> Center | None:
        """The nearest center at or above ``intake_center`` whose tier reaches ``tier``."""
        for center in (self.center(intake_center), *self.ancestors(intake_center)):
            if center.tier.rank >= tier.rank:
                return center
        return None

    def liaison_and_fee_minimum_warnings(self, *, minimum: int = 2) -> list[StaffingWarning]:
        """Convenience centers with under ``minimum`` liaison officers or fee collectors (R20)."""
        warnings: list[StaffingWarning] = []
        for code in sorted(self.centers):
            if not self.centers[code].convenience:
                continue
            liaison = len(self.staff_with_role(center=code, role=Role.LIAISON_OFFICER))
            fees = len(self.staff_with_role(center=code, role=Role.FEE_COLLECTOR))
            if liaison < minimum or fees < minimum:
                warnings.append(StaffingWarning(code, liaison, fees, minimum))
        return warnings
