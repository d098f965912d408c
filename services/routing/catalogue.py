"""The matter catalogue (事项目录): versions, loading, validation, diffs and task plans.

Pure domain: no SQL, protobuf or network.  A catalogue file is YAML::

    demo: true                      # optional; demo data is marked
    version: 1                      # optional; checked against the version an import creates
    changed_by: seed                # optional when given by the caller
    changed_at: 2007-11-03T09:00:00+08:00
    matters: [ {code: ..., workflow: [...], ...}, ... ]

Every validation error raises :class:`CatalogueError` whose message reads
``<file>: matter '<code>' (or #index): <field>: <problem>``; all failing matters are reported.
"The previous version stays in force": :func:`apply` returns a new version or raises, and never
changes the catalogue it was given.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from types import MappingProxyType

from services.routing.catalogue_fields import Fields, Where, read_yaml_text
from services.routing.catalogue_model import (
    CatalogueError,
    Category,
    DecisionLevel,
    Fee,
    FeeKind,
    Material,
    Matter,
    SpecialProcedure,
    Step,
)
from services.routing.catalogue_validation import parse_matters

__all__ = [
    "Catalogue",
    "CatalogueDiff",
    "CatalogueError",
    "Category",
    "DecisionLevel",
    "Fee",
    "FeeKind",
    "Material",
    "Matter",
    "PlannedTask",
    "SpecialProcedure",
    "Step",
    "apply",
    "diff",
    "load_catalogue",
    "parse_catalogue",
    "plan_tasks",
]

_TOP = ("demo", "description", "version", "changed_by", "changed_at", "matters")


@dataclass(frozen=True)
class Catalogue:
    """One version of the catalogue, with who changed it and when."""

    version: int
    matters: Mapping[str, Matter]
    changed_by: str
    changed_at: datetime
    demo: bool = False

    def __post_init__(self) -> None:
        ordered = {code: self.matters[code] for code in sorted(self.matters)}
        object.__setattr__(self, "matters", MappingProxyType(ordered))

    def matter(self, code: str) -> Matter:
        """The matter with ``code``; ``KeyError`` if it is not in this version."""
        try:
            return self.matters[code]
        except KeyError:
            raise KeyError(f"unknown matter {code!r} in catalogue version {self.version}") from None

    def in_category(self, category: Category) -> tuple[Matter, ...]:
        """The matters of ``category``, by code."""
        return tuple(m for m in self.matters.values() if m.category is category)

    @property
    def departments(self) -> frozenset[str]:
        """Every department some workflow uses."""
        return frozenset(d for m in self.matters.values() for d in m.departments)


@dataclass(frozen=True, slots=True)
class CatalogueDiff:
    """What changed between two versions, by matter code (each tuple sorted)."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    changed_fields: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """Whether nothing changed."""
        return not (self.added or self.removed or self.changed)


@dataclass(frozen=True, slots=True)
class PlannedTask:
    """One task routing creates for a case of a matter."""

    order: int
    department: str
    group: int
    prerequisites: tuple[str, ...]
    lead: bool
    starts_immediately: bool


def load_catalogue(path: str | Path, *, departments: Collection[str] | None = None) -> Catalogue:
    """Read and validate a catalogue file (errors name it by its base name)."""
    path = Path(path)
    where = Where(source=path.name, entry=None, error=CatalogueError)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        where.fail(None, f"cannot read file: {exc.strerror}")
    return parse_catalogue(read_yaml_text(raw, where=where), source=path.name, departments=departments)


def parse_catalogue(
    data: object,
    *,
    source: str,
    departments: Collection[str] | None = None,
    version: int | None = None,
    changed_by: str | None = None,
    changed_at: datetime | None = None,
) -> Catalogue:
    """Validate parsed YAML into a ``Catalogue``.

    ``departments`` are the organisation's department codes (None skips that check); the
    keyword arguments, when given, override the file's metadata.
    """
    where = Where(source=source, entry=None, error=CatalogueError)
    top = Fields(data, where=where, allowed=_TOP)
    file_version = top.opt_integer("version", minimum=1)
    if version is not None and file_version is not None and file_version != version:
        top.fail(
            "version",
            f"the file is version {file_version} but this import creates version {version} "
            "(was it edited from an older copy?)",
        )
    if changed_by is None:
        changed_by = top.string("changed_by") if top.has("changed_by") else "file:" + source
    if changed_at is None:
        changed_at = top.timestamp("changed_at")
    elif changed_at.tzinfo is None:
        raise ValueError("changed_at must be timezone-aware")
    if not changed_by.strip():
        raise ValueError("changed_by must not be empty")
    matters = parse_matters(top, where=where, departments=departments)
    return Catalogue(
        version=version or file_version or 1,
        matters=matters,
        changed_by=changed_by,
        changed_at=changed_at,
        demo=top.boolean("demo", default=False),
    )


def apply(
    current: Catalogue,
    *,
    candidate: Mapping[str, object] | str | bytes,
    changed_by: str,
    at: datetime,
    departments: Collection[str] | None = None,
    source: str = "candidate",
) -> Catalogue:
    """Validate ``candidate`` into version ``current.version + 1``, or raise leaving all as is."""
    where = Where(source=source, entry=None, error=CatalogueError)
    data: object = candidate
    if isinstance(candidate, str | bytes):
        data = read_yaml_text(candidate, where=where)
    return parse_catalogue(
        data,
        source=source,
        departments=departments,
        version=current.version + 1,
        changed_by=changed_by,
        changed_at=at,
    )


def diff(*, old: Catalogue, new: Catalogue) -> CatalogueDiff:
    """Matter codes added, removed and changed from ``old`` to ``new``, with changed fields."""
    added = tuple(sorted(new.matters.keys() - old.matters.keys()))
    removed = tuple(sorted(old.matters.keys() - new.matters.keys()))
    changed_fields: dict[str, tuple[str, ...]] = {}
    for code in sorted(old.matters.keys() & new.matters.keys()):
        before, after = old.matters[code], new.matters[code]
        if before != after:
            changed_fields[code] = tuple(
                f.name for f in fields(Matter) if getattr(before, f.name) != getattr(after, f.name)
            )
    return CatalogueDiff(
        added=added,
        removed=removed,
        changed=tuple(changed_fields),
        changed_fields=MappingProxyType(changed_fields),
    )


def plan_tasks(matter: Matter) -> list[PlannedTask]:
    """The workflow's steps as tasks in a deterministic order respecting groups and prerequisites.

    Order: by group, then by depth of the prerequisite chain (so every prerequisite comes before
    the steps needing it), then the lead first, then by department code.
    """
    steps = {step.department: step for step in matter.workflow}
    depth: dict[str, int] = {}

    def depth_of(department: str, trail: tuple[str, ...]) -> int:
        if department in trail:  # only an unvalidated Matter can get here
            raise ValueError(f"matter {matter.code!r}: prerequisite cycle through {department}")
        if department not in depth:
            prerequisites = steps[department].prerequisites
            depth[department] = 1 + max(
                (depth_of(p, (*trail, department)) for p in prerequisites), default=-1
            )
        return depth[department]

    first_group = min(step.group for step in matter.workflow)
    ordered = sorted(
        matter.workflow,
        key=lambda s: (s.group, depth_of(s.department, ()), not s.lead, s.department),
    )
    return [
        PlannedTask(
            order=index,
            department=step.department,
            group=step.group,
            prerequisites=tuple(sorted(step.prerequisites)),
            lead=step.lead,
            starts_immediately=step.group == first_group and not step.prerequisites,
        )
        for index, step in enumerate(ordered)
    ]
