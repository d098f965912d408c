"""The organisation model: the demo against the directive, tree helpers and validation errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import services.routing
from services.routing.org import (
    CenterLevel,
    Organisation,
    OrgError,
    Role,
    StaffingWarning,
    Tier,
    load_org,
    parse_org,
)

DATA = Path(services.routing.__file__).parent / "data"


@pytest.fixture(scope="module")
def demo() -> Organisation:
    return load_org(DATA / "demo_org.yaml")


def org_data() -> dict[str, Any]:
    """A small valid organisation: city, district, town with one village, two windows."""
    return {
        "centers": [
            {"code": "210200", "level": "city", "name_zh": "大连市", "name_en": "Dalian"},
            {
                "code": "210211",
                "level": "district",
                "parent": "210200",
                "name_zh": "甘井子区",
                "name_en": "Ganjingzi",
            },
            {
                "code": "210211101",
                "level": "township",
                "parent": "210211",
                "name_zh": "营城子镇",
                "name_en": "Yingchengzi",
            },
        ],
        "service_points": [
            {
                "code": "210211101201",
                "kind": "village",
                "center": "210211101",
                "name_zh": "营城子村",
                "name_en": "Yingchengzi Village",
            },
        ],
        "departments": [
            {"code": "PLAN", "name_zh": "规划局", "name_en": "Planning Bureau"},
            {"code": "LAND", "name_zh": "国土资源和房屋局", "name_en": "Land and Housing Bureau"},
        ],
        "windows": [
            {"center": "210200", "department": "PLAN", "chief_representative": "chief.plan"},
        ],
        "staff": [
            {
                "username": "chief.plan",
                "display_name": "赵敏",
                "roles": [{"role": "chief_representative", "center": "210200", "department": "PLAN"}],
            },
            {
                "username": "clerk.plan",
                "display_name": "王丽",
                "roles": [{"role": "window_clerk", "center": "210200", "department": "PLAN"}],
            },
            {
                "username": "liaison1",
                "display_name": "刘春华",
                "roles": [{"role": "liaison_officer", "center": "210211101"}],
            },
            {
                "username": "liaison2",
                "display_name": "张德福",
                "roles": [{"role": "liaison_officer", "center": "210211101"}],
            },
            {
                "username": "fee1",
                "display_name": "孙秀芝",
                "roles": [{"role": "fee_collector", "center": "210211101"}],
            },
            {
                "username": "fee2",
                "display_name": "赵金凤",
                "roles": [{"role": "fee_collector", "center": "210211101"}],
            },
            {
                "username": "agent1",
                "display_name": "李玉兰",
                "roles": [{"role": "agent", "center": "210211101", "service_point": "210211101201"}],
            },
        ],
    }


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(OrgError) as caught:
        parse_org(data, source="org.yaml")
    return str(caught.value)


def staff_entry(data: dict[str, Any], username: str) -> dict[str, Any]:
    return next(s for s in data["staff"] if s["username"] == username)


# --------------------------------------------------------------------- the demo org ----------


def test_demo_org_loads_validates_and_is_marked_demo(demo: Organisation) -> None:
    assert demo.demo is True
    assert len(demo.departments) >= 22


def test_thirteen_centers_exist_at_the_city_and_district_levels(demo: Organisation) -> None:
    two_levels = [c for c in demo.centers.values() if c.tier in (Tier.CITY, Tier.DISTRICT)]
    two_levels = [c for c in two_levels if c.level is not CenterLevel.SUB_CENTER]
    assert len(two_levels) == 13
    assert [c.code for c in two_levels if c.level is CenterLevel.CITY] == ["210200"]
    assert all(c.parent == "210200" for c in two_levels if c.code != "210200")


def test_districts_and_counties_use_their_gbt_2260_codes(demo: Organisation) -> None:
    expected = {
        "210202": "中山区",
        "210203": "西岗区",
        "210204": "沙河口区",
        "210211": "甘井子区",
        "210212": "旅顺口区",
        "210213": "金州区",
        "210214": "普兰店",
        "210224": "长海县",
        "210281": "瓦房店市",
        "210283": "庄河市",
    }
    for code, name in expected.items():
        assert demo.center(code).name_zh.startswith(name), code
    assert {c.code for c in demo.centers.values() if c.level is CenterLevel.PILOT_ZONE} == {
        "210200-KFQ",
        "210200-GXQ",
    }


def test_exit_entry_driver_and_vehicle_sub_centers_sit_under_the_city(demo: Organisation) -> None:
    subs = [c for c in demo.children("210200") if c.level is CenterLevel.SUB_CENTER]
    assert [c.code for c in subs] == ["210200-CRJ", "210200-JCZ", "210200-JSZ"]


def test_ancestors_run_from_the_parent_to_the_province(demo: Organisation) -> None:
    assert [c.code for c in demo.ancestors("210211101")] == ["210211", "210200", "210000"]
    assert demo.ancestors("210000") == ()
    with pytest.raises(KeyError, match="unknown center '999999'"):
        demo.ancestors("999999")


def test_children_are_the_direct_ones_sorted_by_code(demo: Organisation) -> None:
    assert [c.code for c in demo.children("210211")] == ["210211001", "210211101"]
    assert demo.children("210211101") == ()
    assert [p.code for p in demo.service_points_of("210211101")] == [
        "210211101201",
        "210211101202",
    ]


def test_the_sixteen_joint_review_departments_have_city_windows_with_chief_representatives(
    demo: Organisation,
) -> None:
    r4 = {
        "DRC",
        "ECON",
        "FIRE",
        "LAND",
        "CONS",
        "PLAN",
        "UCON",
        "OCEAN",
        "FTRADE",
        "LTAX",
        "QS",
        "ENV",
        "SAFETY",
        "QUAKE",
        "NTAX",
        "AIC",
    }
    windows = demo.windows_at("210200")
    assert {w.department for w in windows} == r4
    assert [w.department for w in windows] == sorted(r4)
    plan = demo.window(center="210200", department="PLAN")
    assert plan is not None and plan.chief_representative == "chief.plan"
    assert plan.code == "210200/PLAN"


def test_staff_with_role_is_scoped_to_the_center(demo: Organisation) -> None:
    assert [s.username for s in demo.staff_with_role(center="210211101", role=Role.LIAISON_OFFICER)] == [
        "liaison1",
        "liaison2",
    ]
    assert demo.staff_with_role(center="210200", role=Role.LIAISON_OFFICER) == ()
    clerks = demo.staff_with_role(center="210200", role=Role.WINDOW_CLERK, department="PLAN")
    assert [s.username for s in clerks] == ["clerk.plan"]


def test_convenience_center_below_two_liaison_officers_or_fee_collectors_is_warned(
    demo: Organisation,
) -> None:
    assert demo.liaison_and_fee_minimum_warnings() == [
        StaffingWarning(center="210211001", liaison_officers=1, fee_collectors=1, minimum=2)
    ]


def test_losing_one_fee_collector_puts_a_center_under_the_minimum() -> None:
    data = org_data()
    assert parse_org(data, source="org.yaml").liaison_and_fee_minimum_warnings() == []
    data["staff"] = [s for s in data["staff"] if s["username"] != "fee2"]
    warnings = parse_org(data, source="org.yaml").liaison_and_fee_minimum_warnings()
    assert warnings == [StaffingWarning("210211101", 2, 1, 2)]
    assert "1 fee collector(s)" in warnings[0].message


def test_deciding_center_is_the_nearest_one_at_the_matters_tier(demo: Organisation) -> None:
    def decided(intake: str, tier: Tier) -> str | None:
        center = demo.deciding_center(intake_center=intake, tier=tier)
        return None if center is None else center.code

    assert decided("210211101", Tier.TOWNSHIP) == "210211101"
    assert decided("210211101", Tier.DISTRICT) == "210211"
    assert decided("210200-CRJ", Tier.CITY) == "210200-CRJ"
    assert decided("210211", Tier.PROVINCE) == "210000"
    assert decided("210211", Tier.NATION) is None


# ------------------------------------------------------------------ validation errors --------


def test_unknown_parent_is_rejected() -> None:
    data = org_data()
    data["centers"][1]["parent"] = "999999"
    assert error_of(data) == "org.yaml: center '210211': parent: unknown center '999999'"


def test_cycle_in_the_center_tree_is_rejected() -> None:
    data = org_data()
    data["centers"][0]["parent"] = "210211101"
    assert error_of(data) == (
        "org.yaml: center '210200': parent: cycle 210200 -> 210211101 -> 210211 -> 210200"
    )


def test_center_under_a_lower_level_center_is_rejected() -> None:
    data = org_data()
    data["centers"].append(
        {
            "code": "210211-X",
            "level": "district",
            "parent": "210211101",
            "name_zh": "错",
            "name_en": "Wrong",
        }
    )
    assert error_of(data) == (
        "org.yaml: center '210211-X': parent: a district center cannot sit under "
        "the township center '210211101'"
    )


def test_window_of_an_unknown_department_is_rejected() -> None:
    data = org_data()
    data["windows"][0]["department"] = "XYZ"
    assert error_of(data) == "org.yaml: window '210200/XYZ': department: unknown department 'XYZ'"


def test_window_at_an_unknown_center_is_rejected() -> None:
    data = org_data()
    data["windows"][0]["center"] = "210299"
    assert error_of(data) == "org.yaml: window '210299/PLAN': center: unknown center '210299'"


def test_chief_representative_must_hold_that_role_at_that_window() -> None:
    data = org_data()
    data["windows"][0]["chief_representative"] = "clerk.plan"
    assert error_of(data) == (
        "org.yaml: window '210200/PLAN': chief_representative: 'clerk.plan' holds no "
        "chief_representative role for PLAN at '210200'"
    )


@pytest.mark.parametrize(
    ("grant", "expected"),
    [
        ({"center": "210299"}, "roles[0].center: unknown center '210299'"),
        ({"department": "XYZ"}, "roles[0].department: unknown department 'XYZ'"),
        (
            {"service_point": "210211101999"},
            "roles[0].service_point: unknown service point '210211101999'",
        ),
        (
            {"center": "210211"},
            "roles[0].service_point: service point '210211101201' belongs to center '210211101', "
            "not '210211'",
        ),
    ],
)
def test_staff_role_scoped_to_an_unknown_or_wrong_place_is_rejected(
    grant: dict[str, str], expected: str
) -> None:
    data = org_data()
    staff_entry(data, "agent1")["roles"][0].update(grant)
    assert error_of(data) == f"org.yaml: staff 'agent1': {expected}"


def test_window_role_without_a_window_there_is_rejected() -> None:
    data = org_data()
    staff_entry(data, "clerk.plan")["roles"][0]["department"] = "LAND"
    assert error_of(data) == (
        "org.yaml: staff 'clerk.plan': roles[0].department: no LAND window at center '210200' "
        "for role window_clerk"
    )


def test_department_role_without_a_department_is_rejected() -> None:
    data = org_data()
    del staff_entry(data, "clerk.plan")["roles"][0]["department"]
    assert error_of(data) == (
        "org.yaml: staff 'clerk.plan': roles[0].department: required for role window_clerk"
    )


def test_unknown_role_is_rejected_listing_the_known_ones() -> None:
    data = org_data()
    staff_entry(data, "fee1")["roles"][0]["role"] = "cashier"
    assert error_of(data).startswith(
        "org.yaml: staff 'fee1': roles[0].role: unknown value 'cashier' (expected one of: "
        "window_clerk, chief_representative"
    )


def test_service_point_under_a_district_center_is_rejected() -> None:
    data = org_data()
    data["service_points"][0]["center"] = "210211"
    assert error_of(data).startswith(
        "org.yaml: service point '210211101201': center: service points belong to a township"
    )


def test_duplicate_center_code_is_rejected() -> None:
    data = org_data()
    data["centers"].append(dict(data["centers"][1]))
    assert error_of(data) == "org.yaml: center '210211': code: duplicate center code '210211'"


def test_unquoted_numeric_code_is_rejected_with_a_hint() -> None:
    data = org_data()
    data["centers"][0]["code"] = 210200
    assert error_of(data) == ("org.yaml: center #0: code: expected a string, got int 210200 (quote it)")


def test_malformed_org_file_is_rejected_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "org.yaml"
    path.write_text("centers: {code: \n", encoding="utf-8")
    with pytest.raises(OrgError, match=r"^org\.yaml: not valid YAML"):
        load_org(path)
