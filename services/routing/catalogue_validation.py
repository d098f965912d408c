"""Validate one matter of a catalogue file, raising errors that name matter and field."""

from __future__ import annotations

import re
from collections.abc import Collection

from services.routing.catalogue_fields import Fields, Where, index_entry
from services.routing.catalogue_model import (
    CODE,
    MATTER_CODE,
    MAX_PRELIMINARY_REVIEW_DAYS,
    MAX_UPLOAD_BYTES,
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
from services.routing.org_model import DEPARTMENT_CODE

__all__ = ["MATTER_FIELDS", "parse_matters"]

MATTER_FIELDS = (
    "code",
    "name_zh",
    "name_en",
    "description_zh",
    "description_en",
    "category",
    "decision_level",
    "workflow",
    "statutory_limit_days",
    "promised_limit_days",
    "on_the_spot",
    "warning_threshold_days",
    "deemed_approval_allowed",
    "special_procedures",
    "materials",
    "fees",
    "legal_basis",
    "green_channel_eligible",
    "preliminary_review_days",
)
_STEP = ("department", "group", "prerequisites", "lead")
_MATERIAL = (
    "code",
    "name_zh",
    "name_en",
    "mandatory",
    "form_template",
    "accepted_types",
    "max_bytes",
)
_FEE = ("code", "name_zh", "name_en", "amount", "kind")
_MIME = re.compile(r"[a-z]+/[a-z0-9][a-z0-9.+-]*")
_TEMPLATE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_./-]*")
_DEFAULT_TYPES = ("application/pdf", "image/jpeg", "image/png")
_DEFAULT_MAX_BYTES = 10 * 1024 * 1024


def parse_matters(top: Fields, *, where: Where, departments: Collection[str] | None) -> dict[str, Matter]:
    """Every matter of ``top['matters']``; all failing matters are reported, each precisely."""
    problems: list[str] = []
    matters: dict[str, Matter] = {}
    first_index: dict[str, int] = {}
    for index, raw in top.items("matters"):
        entry = where.named(index_entry("matter", index, raw, "code", MATTER_CODE))
        try:
            matter = _matter(Fields(raw, where=entry, allowed=MATTER_FIELDS), departments)
            if matter.code in matters:
                first = first_index[matter.code]
                entry.fail("code", f"duplicate matter code (also matter #{first})")
        except CatalogueError as exc:
            problems.extend(exc.problems)
            continue
        matters[matter.code] = matter
        first_index[matter.code] = index
    if problems:
        raise CatalogueError(
            problems, zh=f"事项目录文件 {where.source} 中有 {len(problems)} 处错误，请按下方英文说明逐项改正"
        )
    if not matters:
        top.fail("matters", "at least one matter is required")
    return matters


def _matter(f: Fields, departments: Collection[str] | None) -> Matter:
    code = f.string("code", pattern=MATTER_CODE)
    level = f.choice("decision_level", DecisionLevel)
    workflow = _workflow(f, departments)
    statutory = f.integer("statutory_limit_days")
    promised = f.integer("promised_limit_days")
    if promised > statutory:
        f.fail(
            "promised_limit_days",
            f"promised limit {promised} exceeds the statutory limit {statutory}",
        )
    on_the_spot = f.boolean("on_the_spot", default=False)
    if on_the_spot and promised != 0:
        f.fail("promised_limit_days", f"an on-the-spot matter promises 0 days, not {promised}")
    if promised == 0 and not on_the_spot:
        f.fail("on_the_spot", "a promised limit of 0 days means on the spot: set on_the_spot: true")
    threshold = f.integer("warning_threshold_days", default=1)
    if not on_the_spot and threshold > promised:
        f.fail(
            "warning_threshold_days",
            f"warning threshold {threshold} exceeds the promised limit {promised}",
        )
    preliminary = f.opt_integer("preliminary_review_days", minimum=1)
    if preliminary is None and level.rank > DecisionLevel.CITY.rank:
        f.fail("preliminary_review_days", f"required for matters decided at {level.value} level")
    if preliminary is not None and preliminary > MAX_PRELIMINARY_REVIEW_DAYS:
        f.fail(
            "preliminary_review_days",
            f"{preliminary} exceeds the {MAX_PRELIMINARY_REVIEW_DAYS} days a lower level has "
            "for its preliminary review (行政许可法 Art. 43)",
        )
    return Matter(
        code=code,
        name_zh=f.string("name_zh"),
        name_en=f.string("name_en"),
        category=f.choice("category", Category),
        decision_level=level,
        workflow=workflow,
        statutory_limit_days=statutory,
        promised_limit_days=promised,
        on_the_spot=on_the_spot,
        warning_threshold_days=threshold,
        deemed_approval_allowed=f.boolean("deemed_approval_allowed"),
        special_procedures=f.choices("special_procedures", SpecialProcedure),
        materials=_materials(f),
        fees=_fees(f),
        legal_basis=f.string("legal_basis"),
        green_channel_eligible=f.boolean("green_channel_eligible", default=False),
        preliminary_review_days=preliminary,
        description_zh=f.text("description_zh"),
        description_en=f.text("description_en"),
    )


def _workflow(f: Fields, departments: Collection[str] | None) -> tuple[Step, ...]:
    steps: list[Step] = []
    position: dict[str, int] = {}
    for index, raw in f.items("workflow"):
        name = f"workflow[{index}]"
        s = f.nested(name, raw, allowed=_STEP)
        department = s.string("department", pattern=DEPARTMENT_CODE)
        if departments is not None and department not in departments:
            s.fail("department", f"unknown department {department!r}")
        if department in position:
            earlier = position[department]
            s.fail("department", f"{department} already has a step (workflow[{earlier}])")
        prerequisites = s.strings("prerequisites", pattern=DEPARTMENT_CODE)
        for prerequisite in prerequisites:
            if departments is not None and prerequisite not in departments:
                s.fail("prerequisites", f"unknown department {prerequisite!r}")
        position[department] = index
        steps.append(
            Step(
                department=department,
                group=s.integer("group", minimum=1),
                prerequisites=prerequisites,
                lead=s.boolean("lead", default=False),
            )
        )
    if not steps:
        f.fail("workflow", "at least one step is required")
    _check_prerequisites(f, steps, position)
    leads = [i for i, step in enumerate(steps) if step.lead]
    if not leads:
        f.fail("workflow", "no lead step: exactly one step must have lead: true")
    if len(leads) > 1:
        others = ", ".join(f"workflow[{i}]" for i in leads[:-1])
        f.fail(
            f"workflow[{leads[-1]}].lead",
            f"several lead steps (also {others}); exactly one is allowed",
        )
    return tuple(steps)


def _check_prerequisites(f: Fields, steps: list[Step], position: dict[str, int]) -> None:
    for index, step in enumerate(steps):
        for prerequisite in step.prerequisites:
            field = f"workflow[{index}].prerequisites"
            if prerequisite not in position:
                f.fail(field, f"{prerequisite!r} is not a step of this workflow")
            other = steps[position[prerequisite]]
            if other.group > step.group:
                f.fail(
                    field,
                    f"{prerequisite!r} is in group {other.group}, after this step's group "
                    f"{step.group}; a prerequisite must be in the same or an earlier group",
                )
    for index, step in enumerate(steps):
        cycle = _cycle_from(step.department, steps, position)
        if cycle:
            f.fail(f"workflow[{index}].prerequisites", f"prerequisite cycle {' -> '.join(cycle)}")


def _cycle_from(start: str, steps: list[Step], position: dict[str, int]) -> list[str]:
    """A prerequisite path from ``start`` back to itself, or an empty list."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    visited: set[str] = set()
    while stack:
        department, path = stack.pop()
        for prerequisite in sorted(steps[position[department]].prerequisites, reverse=True):
            if prerequisite == start:
                return [*path, start]
            if prerequisite not in visited:
                visited.add(prerequisite)
                stack.append((prerequisite, [*path, prerequisite]))
    return []


def _materials(f: Fields) -> tuple[Material, ...]:
    result: list[Material] = []
    codes: set[str] = set()
    for index, raw in f.items("materials", required=False):
        m = f.nested(f"materials[{index}]", raw, allowed=_MATERIAL)
        code = m.string("code", pattern=CODE)
        if code in codes:
            m.fail("code", f"duplicate material code {code!r}")
        codes.add(code)
        template = m.opt_string("form_template", pattern=_TEMPLATE)
        if template is not None and ".." in template.split("/"):
            m.fail("form_template", f"{template!r} must stay inside the templates folder")
        types = m.strings("accepted_types", pattern=_MIME) or _DEFAULT_TYPES
        max_bytes = m.integer("max_bytes", minimum=1, default=_DEFAULT_MAX_BYTES)
        if max_bytes > MAX_UPLOAD_BYTES:
            m.fail("max_bytes", f"{max_bytes} exceeds the upload ceiling of {MAX_UPLOAD_BYTES}")
        result.append(
            Material(
                code=code,
                name_zh=m.string("name_zh"),
                name_en=m.string("name_en"),
                mandatory=m.boolean("mandatory", default=True),
                form_template=template,
                accepted_types=types,
                max_bytes=max_bytes,
            )
        )
    return tuple(result)


def _fees(f: Fields) -> tuple[Fee, ...]:
    result: list[Fee] = []
    codes: set[str] = set()
    for index, raw in f.items("fees", required=False):
        m = f.nested(f"fees[{index}]", raw, allowed=_FEE)
        code = m.string("code", pattern=CODE)
        if code in codes:
            m.fail("code", f"duplicate fee code {code!r}")
        codes.add(code)
        result.append(
            Fee(
                code=code,
                name_zh=m.string("name_zh"),
                name_en=m.string("name_en"),
                amount=m.money("amount"),
                kind=m.choice("kind", FeeKind),
            )
        )
    return tuple(result)
