"""Where a case is decided: here, above after a preliminary review here, or above at once."""

from __future__ import annotations

from pathlib import Path

import pytest

import services.routing
from services.routing.catalogue import Catalogue, load_catalogue
from services.routing.forwarding import AFTER_PRELIMINARY_REVIEW, DECIDED_ABOVE, place
from services.routing.org import Organisation, load_org

DATA = Path(services.routing.__file__).parent / "data"


@pytest.fixture(scope="module")
def org() -> Organisation:
    return load_org(DATA / "demo_org.yaml")


@pytest.fixture(scope="module")
def catalogue(org: Organisation) -> Catalogue:
    return load_catalogue(DATA / "demo_catalogue.yaml", departments=set(org.departments))


def test_a_city_matter_at_the_district_goes_to_the_city_without_a_review_here(org, catalogue) -> None:
    p = place(org=org, center="210211", matter=catalogue.matter("TR-001"), has_parent=True)
    assert (p.forwarded, p.parent_center, p.preliminary, p.reason) == (True, "210200", (), DECIDED_ABOVE)
    assert p.forward_state == "forwarded"


def test_a_province_matter_at_the_city_is_reviewed_by_the_city_windows_first(org, catalogue) -> None:
    p = place(org=org, center="210200", matter=catalogue.matter("KP-002"), has_parent=True)
    assert p.forwarded and p.parent_center == "210000" and p.reason == AFTER_PRELIMINARY_REVIEW
    assert sorted(t.department for t in p.preliminary) == ["DRC", "ENV", "LAND", "PLAN"]
    assert p.forward_state == "preliminary_review"


def test_a_province_matter_at_the_district_is_passed_up_to_the_city(org, catalogue) -> None:
    p = place(org=org, center="210211", matter=catalogue.matter("KP-002"), has_parent=True)
    assert (p.forwarded, p.parent_center, p.preliminary) == (True, "210200", ())


def test_a_district_matter_at_a_township_without_its_windows_goes_up_at_once(org, catalogue) -> None:
    p = place(org=org, center="210211101", matter=catalogue.matter("CV-004"), has_parent=True)
    assert (p.forwarded, p.parent_center, p.preliminary) == (True, "210211", ())


@pytest.mark.parametrize(
    ("center", "code"), [("210200", "TR-001"), ("210211", "CV-004"), ("210211101", "CV-005")]
)
def test_a_matter_at_or_below_this_tier_is_decided_here(org, catalogue, center: str, code: str) -> None:
    assert not place(org=org, center=center, matter=catalogue.matter(code), has_parent=True).forwarded


def test_without_a_parent_node_everything_is_decided_here(org, catalogue) -> None:
    assert not place(org=org, center="210211", matter=catalogue.matter("TR-001"), has_parent=False).forwarded
    assert not place(org=org, center="999999", matter=catalogue.matter("TR-001"), has_parent=True).forwarded
