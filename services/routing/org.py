"""The organisation model: centers, service points, departments, windows and staff (R15-R20).

Centers form a tree (nation > province > city > district/county/pilot zone and sub-centers >
township/street); service points (villages, communities) sit under a township or street center.
A window is one department at one center, with a chief representative who decides there (R15).
Staff hold roles scoped to a center and maybe a department or service point.

Load with :func:`load_org` (file) or :func:`parse_org` (parsed YAML); both raise
:class:`OrgError` whose message names the file, the entry and the field.
"""

from __future__ import annotations

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
    StaffingWarning,
    Tier,
    Window,
)
from services.routing.org_validation import load_org, parse_org

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
    "load_org",
    "parse_org",
]
