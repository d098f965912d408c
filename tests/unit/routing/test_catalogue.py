"""The matter catalogue: demo contents against the directive, validation errors, versions, plans."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import services.routing
from services.routing.catalogue import (
    Catalogue,
    CatalogueError,
    Category,
    DecisionLevel,
    FeeKind,
    apply,
    diff,
    load_catalogue,
    parse_catalogue,
    plan_tasks,
)
from services.routing.org import Organisation, load_org

DATA = Path(services.routing.__file__).parent / "data"
DEPARTMENTS = {"DRC", "PLAN", "LAND", "CONS", "ENV", "FIRE", "AIC", "LTAX", "NTAX"}
AT = datetime(2024, 5, 6, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def org() -> Organisation:
    return load_org(DATA / "demo_org.yaml")


@pytest.fixture(scope="module")
def demo(org: Organisation) -> Catalogue:
    return load_catalogue(DATA / "demo_catalogue.yaml", departments=org.departments)


def matter(code: object = "CC-001", **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "code": code,
        "name_zh": "基本建设项目并联审批",
        "name_en": "Parallel approval of a capital construction project",
        "category": "capital_construction",
        "decision_level": "city",
        "workflow": [
            {"department": "DRC", "group": 1, "lead": True},
            {"department": "PLAN", "group": 1},
            {"department": "LAND", "group": 1, "prerequisites": ["PLAN"]},
            {"department": "CONS", "group": 2, "prerequisites": ["LAND"]},
        ],
        "statutory_limit_days": 45,
        "promised_limit_days": 20,
        "deemed_approval_allowed": True,
        "legal_basis": "《中华人民共和国行政许可法》第二十六条",
        "materials": [{"code": "APP", "name_zh": "申请表", "name_en": "Application form"}],
        "fees": [
            {
                "code": "F1",
                "name_zh": "工本费",
                "name_en": "Fee",
                "amount": "10.00",
                "kind": "administrative",
            }
        ],
    }
    base.update(overrides)
    return base


def catalogue_data(*matters: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": 1,
        "changed_by": "seed",
        "changed_at": "2007-11-03T09:00:00+08:00",
        "matters": list(matters) or [matter()],
    }


def parse(data: dict[str, Any]) -> Catalogue:
    return parse_catalogue(data, source="demo.yaml", departments=DEPARTMENTS)


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(CatalogueError) as caught:
        parse(data)
    return str(caught.value)


# --------------------------------------------------------------- the demo catalogue ----------


def test_demo_catalogue_loads_validates_and_is_marked_demo(demo: Catalogue) -> None:
    assert demo.demo is True
    assert demo.version == 1
    assert demo.changed_by == "seed"
    assert demo.changed_at == datetime.fromisoformat("2007-11-03T09:00:00+08:00")
    assert len(demo.matters) == 18


def test_city_approved_key_project_is_done_in_seven_working_days_by_five_departments_in_parallel(
    demo: Catalogue,
) -> None:
    kp = demo.matter("KP-001")
    assert kp.decision_level is DecisionLevel.CITY
    assert kp.promised_limit_days == 7
    assert set(kp.departments) == {"DRC", "PLAN", "LAND", "ENV", "FIRE"}
    assert {step.group for step in kp.workflow} == {1}
    assert all(task.starts_immediately for task in plan_tasks(kp))
    assert kp.green_channel_eligible and kp.deemed_approval_allowed
    assert kp.lead.department == "DRC"


def test_province_approved_project_gets_a_seven_day_city_preliminary_review(
    demo: Catalogue,
) -> None:
    kp = demo.matter("KP-002")
    assert kp.decision_level is DecisionLevel.PROVINCE
    assert kp.preliminary_review_days == 7
    assert kp.deemed_approval_allowed is False


def test_single_planning_permit_takes_nineteen_working_days(demo: Catalogue) -> None:
    permit = demo.matter("PL-001")
    assert permit.departments == ("PLAN",)
    assert permit.promised_limit_days == 19


def test_business_and_tax_registration_are_done_on_the_spot(demo: Catalogue) -> None:
    assert demo.matter("AIC-001").departments == ("AIC",)
    assert set(demo.matter("TAX-001").departments) == {"LTAX", "NTAX"}
    for code in ("AIC-001", "TAX-001"):
        assert demo.matter(code).on_the_spot
        assert demo.matter(code).promised_limit_days == 0


def test_each_of_the_five_parallel_categories_has_a_joint_matter(demo: Catalogue) -> None:
    five = [
        Category.BUSINESS_REGISTRATION,
        Category.CAPITAL_CONSTRUCTION,
        Category.FOREIGN_INVESTMENT,
        Category.REAL_ESTATE,
        Category.TECHNICAL_RENOVATION,
    ]
    joint = [m for c in five for m in demo.in_category(c) if len(m.workflow) >= 3]
    assert {m.category for m in joint} == set(five)
    cc = demo.matter("CC-001").workflow
    assert next(s for s in cc if s.department == "CONS").prerequisites == ("LAND",)
    assert any(not m.deemed_approval_allowed for m in joint)


def test_first_batch_convenience_matters_are_decided_at_township_or_district(
    demo: Catalogue,
) -> None:
    convenience = demo.in_category(Category.CONVENIENCE)
    assert len(convenience) == 8
    assert {m.decision_level for m in convenience} == {
        DecisionLevel.TOWNSHIP,
        DecisionLevel.DISTRICT,
    }
    for m in convenience:
        assert m.materials, m.code
        if m.decision_level is DecisionLevel.DISTRICT:
            assert m.preliminary_review_days is not None, m.code


def test_demo_limits_keep_promised_within_statutory_and_the_licensing_law_ceilings(
    demo: Catalogue,
) -> None:
    for m in demo.matters.values():
        assert m.promised_limit_days <= m.statutory_limit_days, m.code
        assert m.statutory_limit_days <= (45 if m.joint else 20), m.code


def test_every_demo_matter_has_windows_where_it_is_decided(demo: Catalogue, org: Organisation) -> None:
    intake = "210211101"  # a case may start at the Yingchengzi town center
    for m in demo.matters.values():
        # Above the city, the city does the preliminary review with its own windows.
        tier = min(m.decision_level, DecisionLevel.CITY, key=lambda t: t.rank)
        center = org.deciding_center(intake_center=intake, tier=tier)
        assert center is not None
        for department in m.departments:
            assert org.window(center=center.code, department=department), (m.code, department)


def test_fees_are_decimal_yuan(demo: Catalogue) -> None:
    fee = demo.matter("CV-006").fees[0]
    assert fee.amount == Decimal("20.00")
    assert isinstance(fee.amount, Decimal)
    assert fee.kind is FeeKind.ADMINISTRATIVE


# ------------------------------------------------------------------ validation errors --------


def test_unknown_workflow_department_is_rejected_naming_the_matter_and_field() -> None:
    bad = matter()
    bad["workflow"][1]["department"] = "XYZ"
    assert error_of(catalogue_data(bad)) == (
        "demo.yaml: matter 'CC-001': workflow[1].department: unknown department 'XYZ'"
    )


def test_unknown_prerequisite_department_is_rejected_naming_the_matter_and_field() -> None:
    bad = matter()
    bad["workflow"][2]["prerequisites"] = ["XYZ"]
    assert error_of(catalogue_data(bad)) == (
        "demo.yaml: matter 'CC-001': workflow[2].prerequisites: unknown department 'XYZ'"
    )


def test_prerequisite_cycle_is_rejected_naming_the_matter_and_field() -> None:
    bad = matter()
    bad["workflow"][1]["prerequisites"] = ["LAND"]  # PLAN <- LAND <- PLAN
    assert error_of(catalogue_data(bad)) == (
        "demo.yaml: matter 'CC-001': workflow[1].prerequisites: prerequisite cycle PLAN -> LAND -> PLAN"
    )


def test_step_that_is_its_own_prerequisite_is_a_cycle() -> None:
    bad = matter()
    bad["workflow"][0]["prerequisites"] = ["DRC"]
    assert error_of(catalogue_data(bad)).endswith("workflow[0].prerequisites: prerequisite cycle DRC -> DRC")


def test_prerequisite_that_is_not_a_step_of_the_workflow_is_rejected() -> None:
    bad = matter()
    bad["workflow"][3]["prerequisites"] = ["ENV"]
    assert error_of(catalogue_data(bad)) == (
        "demo.yaml: matter 'CC-001': workflow[3].prerequisites: 'ENV' is not a step of this workflow"
    )


def test_prerequisite_in_a_later_group_is_rejected_because_it_would_never_start() -> None:
    bad = matter()
    bad["workflow"][0]["prerequisites"] = ["CONS"]
    assert "workflow[0].prerequisites: 'CONS' is in group 2, after this step's group 1" in (
        error_of(catalogue_data(bad))
    )


def test_workflow_without_a_lead_step_is_rejected() -> None:
    bad = matter()
    bad["workflow"][0]["lead"] = False
    assert error_of(catalogue_data(bad)) == (
        "demo.yaml: matter 'CC-001': workflow: no lead step: exactly one step must have lead: true"
    )


def test_workflow_with_several_lead_steps_is_rejected() -> None:
    bad = matter()
    bad["workflow"][2]["lead"] = True
    assert error_of(catalogue_data(bad)) == (
        "demo.yaml: matter 'CC-001': workflow[2].lead: several lead steps (also workflow[0]); "
        "exactly one is allowed"
    )


def test_department_with_two_steps_in_one_workflow_is_rejected() -> None:
    bad = matter()
    bad["workflow"].append({"department": "PLAN", "group": 3})
    assert error_of(catalogue_data(bad)).endswith(
        "workflow[4].department: PLAN already has a step (workflow[1])"
    )


def test_promised_limit_longer_than_statutory_is_rejected() -> None:
    bad = matter(statutory_limit_days=20, promised_limit_days=25)
    assert error_of(catalogue_data(bad)) == (
        "demo.yaml: matter 'CC-001': promised_limit_days: promised limit 25 exceeds the statutory limit 20"
    )


@pytest.mark.parametrize(
    ("field", "minimum"),
    [
        ("statutory_limit_days", 0),
        ("promised_limit_days", 0),
        ("warning_threshold_days", 0),
        ("preliminary_review_days", 1),
    ],
)
def test_negative_days_are_rejected(field: str, minimum: int) -> None:
    bad = matter()
    bad[field] = -3
    assert error_of(catalogue_data(bad)) == (
        f"demo.yaml: matter 'CC-001': {field}: must be >= {minimum}, got -3"
    )


def test_duplicate_matter_codes_are_rejected_naming_both_entries() -> None:
    assert error_of(catalogue_data(matter(), matter())) == (
        "demo.yaml: matter 'CC-001': code: duplicate matter code (also matter #0)"
    )


@pytest.mark.parametrize("amount", [12.5, 10, "12.345", "-1.00", "abc", "1e3", "NaN", "", "01.5"])
def test_bad_money_is_rejected(amount: object) -> None:
    bad = matter()
    bad["fees"][0]["amount"] = amount
    message = error_of(catalogue_data(bad))
    assert message.startswith("demo.yaml: matter 'CC-001': fees[0].amount: bad amount"), message


def test_wrong_type_is_rejected_naming_the_field_and_value() -> None:
    bad = matter()
    bad["workflow"][3]["group"] = "2"
    assert error_of(catalogue_data(bad)) == (
        "demo.yaml: matter 'CC-001': workflow[3].group: expected an integer, got str '2'"
    )


def test_missing_field_is_rejected() -> None:
    bad = matter()
    del bad["legal_basis"]
    assert error_of(catalogue_data(bad)) == (
        "demo.yaml: matter 'CC-001': legal_basis: missing required field"
    )


def test_misspelt_field_is_rejected_instead_of_ignored() -> None:
    bad = matter(statutry_limit_days=10)
    assert error_of(catalogue_data(bad)) == ("demo.yaml: matter 'CC-001': statutry_limit_days: unknown field")


def test_matter_without_a_readable_code_is_named_by_its_index() -> None:
    assert error_of(catalogue_data(matter(code=210200))) == (
        "demo.yaml: matter #0: code: expected a string, got int 210200 (quote it)"
    )


def test_matter_decided_above_the_city_needs_a_preliminary_review_limit() -> None:
    bad = matter(decision_level="province")
    assert error_of(catalogue_data(bad)) == (
        "demo.yaml: matter 'CC-001': preliminary_review_days: required for matters decided at province level"
    )


def test_on_the_spot_flag_must_agree_with_a_zero_day_promise() -> None:
    assert "on_the_spot: a promised limit of 0 days means on the spot" in error_of(
        catalogue_data(matter(promised_limit_days=0))
    )
    assert "promised_limit_days: an on-the-spot matter promises 0 days, not 20" in error_of(
        catalogue_data(matter(on_the_spot=True))
    )


def test_form_template_may_not_escape_the_templates_folder() -> None:
    bad = matter()
    bad["materials"][0]["form_template"] = "forms/../../etc/passwd"
    assert "materials[0].form_template: 'forms/../../etc/passwd' must stay inside" in (
        error_of(catalogue_data(bad))
    )


def test_every_failing_matter_is_reported_each_precisely() -> None:
    first = matter(code="A-001", promised_limit_days=50)
    second = matter(code="B-001", category="nonsense")
    with pytest.raises(CatalogueError) as caught:
        parse(catalogue_data(first, second))
    assert [p.split(": ")[1] for p in caught.value.problems] == ["matter 'A-001'", "matter 'B-001'"]


def test_top_level_that_is_not_a_mapping_is_rejected() -> None:
    with pytest.raises(CatalogueError, match=r"^x\.yaml: expected a mapping, got list$"):
        parse_catalogue([1, 2], source="x.yaml")


def test_malformed_yaml_is_rejected_naming_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("matters:\n  - code: [unclosed\n", encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"^broken\.yaml: not valid YAML: .* at line 3"):
        load_catalogue(path)


def test_repeated_yaml_key_is_rejected_instead_of_silently_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text("matters: []\nmatters: []\n", encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"duplicate key 'matters' at line 2"):
        load_catalogue(path)


def test_missing_file_is_reported_by_name(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match=r"^absent\.yaml: cannot read file"):
        load_catalogue(tmp_path / "absent.yaml")


# ------------------------------------------------------------- versions and apply ------------


def test_apply_creates_the_next_version_recording_who_and_when() -> None:
    current = parse(catalogue_data())
    candidate = catalogue_data(matter(), matter(code="PL-001"))
    del candidate["version"]
    new = apply(current, candidate=candidate, changed_by="admin", at=AT, departments=DEPARTMENTS)
    assert (new.version, new.changed_by, new.changed_at) == (2, "admin", AT)
    assert sorted(new.matters) == ["CC-001", "PL-001"]


def test_failed_apply_leaves_the_previous_version_in_force() -> None:
    current = parse(catalogue_data())
    before = copy.deepcopy(dict(current.matters))
    bad = catalogue_data(matter(promised_limit_days=99))
    bad["version"] = 2
    with pytest.raises(CatalogueError, match="promised limit 99 exceeds"):
        apply(current, candidate=bad, changed_by="admin", at=AT, departments=DEPARTMENTS)
    assert current.version == 1
    assert dict(current.matters) == before
    assert current.matter("CC-001").promised_limit_days == 20
    # The next good import still builds on the version in force.
    good = catalogue_data(matter(promised_limit_days=10))
    good["version"] = 2
    new = apply(current, candidate=good, changed_by="admin", at=AT, departments=DEPARTMENTS)
    assert (new.version, new.matter("CC-001").promised_limit_days) == (2, 10)


def test_apply_accepts_yaml_bytes_as_imported_over_grpc() -> None:
    current = parse(catalogue_data())
    text = (DATA / "demo_catalogue.yaml").read_bytes().replace(b"version: 1", b"version: 2")
    new = apply(current, candidate=text, changed_by="admin", at=AT, source="upload.yaml")
    assert new.version == 2
    assert "KP-001" in new.matters


def test_apply_rejects_a_candidate_edited_from_a_stale_version() -> None:
    current = parse(catalogue_data())
    stale = catalogue_data()  # says version 1, but the import would create version 2
    with pytest.raises(CatalogueError, match="file is version 1 but this import creates version 2"):
        apply(current, candidate=stale, changed_by="admin", at=AT, departments=DEPARTMENTS)


def test_diff_lists_added_removed_and_changed_matters_with_their_fields() -> None:
    old = parse(catalogue_data(matter(), matter(code="OLD-001")))
    new = parse(catalogue_data(matter(promised_limit_days=15), matter(code="NEW-001")))
    change = diff(old=old, new=new)
    assert (change.added, change.removed, change.changed) == (
        ("NEW-001",),
        ("OLD-001",),
        ("CC-001",),
    )
    assert change.changed_fields["CC-001"] == ("promised_limit_days",)
    assert diff(old=old, new=old).empty


# ----------------------------------------------------------------------- task plans ----------


def test_plan_orders_by_group_with_prerequisites_before_the_steps_needing_them(
    demo: Catalogue,
) -> None:
    plan = plan_tasks(demo.matter("CC-001"))
    assert [(t.department, t.group) for t in plan] == [
        ("DRC", 1),
        ("ENV", 1),
        ("PLAN", 1),
        ("QUAKE", 1),
        ("LAND", 1),
        ("FIRE", 2),
        ("UCON", 2),
        ("CONS", 2),
    ]
    assert [t.order for t in plan] == list(range(8))
    assert [t.department for t in plan if t.starts_immediately] == ["DRC", "ENV", "PLAN", "QUAKE"]
    assert [t.department for t in plan if t.lead] == ["DRC"]


@st.composite
def workflows(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(st.sampled_from(sorted(DEPARTMENTS)), min_size=1, max_size=9, unique=True))
    steps: list[dict[str, Any]] = []
    for index, name in enumerate(names):
        group = draw(st.integers(1, 3))
        earlier = [s["department"] for s in steps[:index] if s["group"] <= group]
        prerequisites = draw(st.lists(st.sampled_from(earlier), unique=True)) if earlier else []
        steps.append({"department": name, "group": group, "prerequisites": prerequisites})
    steps[draw(st.integers(0, len(steps) - 1))]["lead"] = True
    return steps


@given(workflow=workflows(), data=st.data())
def test_plan_respects_groups_and_prerequisites_whatever_the_file_order(
    workflow: list[dict[str, Any]], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(workflow))
    plans = [
        plan_tasks(parse(catalogue_data(matter(workflow=w))).matter("CC-001")) for w in (workflow, shuffled)
    ]
    assert plans[0] == plans[1]
    position = {t.department: t.order for t in plans[0]}
    for task in plans[0]:
        assert all(position[p] < task.order for p in task.prerequisites)
    assert [t.group for t in plans[0]] == sorted(t.group for t in plans[0])
