"""Role and scope checks on the server: the session decides who acts, never the form."""

from __future__ import annotations

from typing import Any

from onestop.approval.v1 import approval_pb2
from tests.unit.gateway.conftest import Gateway
from tests.unit.gateway.fakes import NUMBER, Fakes, FakeSupervision


async def test_anonymous_visitors_are_sent_to_sign_in(gw: Gateway) -> None:
    resp = await gw.client.get("/staff/queue", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/staff/login?next=/staff/queue"
    assert (await gw.client.get("/api/v1/staff/queue")).status == 401


async def test_a_clerk_of_another_department_is_refused_the_case_and_its_task(gw: Gateway) -> None:
    assert await gw.sign_in("clerk.drc") == 303
    resp = await gw.client.get(f"/staff/cases/{NUMBER}")
    assert resp.status == 403
    assert "403" in await resp.text()
    assert await gw.post("/staff/tasks/t-plan/claim", page="/staff") == 403
    assert gw.fakes.approval.acted == []


async def test_a_clerk_sees_only_the_own_departments_queue(gw: Gateway) -> None:
    assert await gw.sign_in("clerk.drc") == 303
    page = await (await gw.client.get("/staff/queue")).text()
    assert "210200-20250106-0009" in page and NUMBER not in page
    data = await (await gw.client.get("/api/v1/staff/queue")).json()
    assert {t["department"] for t in data["tasks"]} == {"DRC"}
    # Asking for another department's queue is refused, never widened (and audited as a refusal).
    refused = await gw.client.get("/api/v1/staff/queue?department=PLAN")
    assert refused.status == 403
    assert (await gw.client.get("/api/v1/staff/queue?department=DRC")).status == 200


async def test_a_clerk_may_claim_but_not_approve(gw: Gateway) -> None:
    assert await gw.sign_in("clerk.plan") == 303
    assert await gw.post("/staff/tasks/t-plan/claim", page="/staff") == 303
    assert (
        await gw.post("/staff/tasks/t-plan/approve", {"role": "chief_representative"}, page="/staff") == 403
    )
    assert [name for name, _ in gw.fakes.approval.acted] == ["claim"]


async def test_the_actor_comes_from_the_session_not_from_form_fields(gw: Gateway) -> None:
    assert await gw.sign_in("chief.plan") == 303
    forged = {"role": "center_director", "department": "DRC", "username": "someone", "center": "999999"}
    assert await gw.post("/staff/tasks/t-plan/approve", forged, page="/staff") == 303
    ((name, by),) = gw.fakes.approval.acted
    assert name == f"decide:{approval_pb2.VERDICT_APPROVE}"
    assert (by.username, by.role, by.department, by.center) == (
        "chief.plan",
        "chief_representative",
        "PLAN",
        "210200",
    )
    assert by.display_name == "CHIEF.PLAN"


async def test_a_supplement_request_sends_every_ticked_material_at_once(gw: Gateway) -> None:
    assert await gw.sign_in("clerk.plan") == 303
    token = await gw.csrf("/staff")
    resp = await gw.client.post(
        "/staff/tasks/t-plan/supplement",
        data=[
            ("_csrf", token),
            ("material", "APPLICATION"),
            ("reason_APPLICATION", "未签字"),
            ("material", "SITE-PLAN"),
            ("reason_SITE-PLAN", "比例尺不清"),
        ],
        allow_redirects=False,
    )
    assert resp.status == 303
    assert [n for n, _ in gw.fakes.approval.acted] == [f"decide:{approval_pb2.VERDICT_REQUEST_SUPPLEMENT}"]


async def test_a_ticked_material_without_its_reason_refuses_the_whole_notice_instead_of_dropping_it(
    gw: Gateway,
) -> None:
    assert await gw.sign_in("clerk.plan") == 303
    token = await gw.csrf("/staff")
    resp = await gw.client.post(
        "/staff/tasks/t-plan/supplement",
        data=[
            ("_csrf", token),
            ("material", "SITE-PLAN"),
            ("reason_SITE-PLAN", "比例尺不清"),
            ("material", "DRAWINGS"),
            ("reason_DRAWINGS", ""),
        ],
        headers={"Referer": str(gw.client.make_url("/staff/cases/210200-X"))},
        allow_redirects=False,
    )
    assert resp.status == 400
    page = await resp.text()
    assert "DRAWINGS" in page
    assert gw.fakes.approval.acted == []  # nothing half-sent: the notice goes whole or not at all
    # The page leads back to the form (the browser's back keeps what was typed), not only to the start.
    assert '<a href="/staff/cases/210200-X" id="go-back">' in page


async def test_a_refusal_links_back_only_to_a_page_of_this_site(gw: Gateway) -> None:
    assert await gw.sign_in("clerk.plan") == 303
    token = await gw.csrf("/staff")
    resp = await gw.client.post(
        "/staff/tasks/t-plan/supplement",
        data=[("_csrf", token)],
        headers={"Referer": "https://evil.example/phish"},
        allow_redirects=False,
    )
    assert resp.status == 400 and 'id="go-back"' not in await resp.text()


async def test_pages_of_other_roles_are_forbidden(gw: Gateway) -> None:
    assert await gw.sign_in("clerk.plan") == 303
    for path in (
        "/staff/admin/users",
        "/staff/warnings",
        "/staff/dashboard",
        "/staff/extensions",
        "/staff/carried",
        "/staff/key-projects",
    ):
        assert (await gw.client.get(path)).status == 403, path


async def test_staff_of_another_node_cannot_sign_in_here(gw: Gateway) -> None:
    token = await gw.csrf("/staff/login")
    resp = await gw.client.post(
        "/staff/login", data={"username": "elsewhere", "password": "correct horse battery", "_csrf": token}
    )
    assert resp.status == 401
    assert "no role at this center" in await resp.text() or "没有任何岗位权限" in await resp.text()


async def test_the_supervisor_sees_the_warning_board_and_a_clear_message_when_supervision_is_down(
    make_gateway: Any,
) -> None:
    gw = await make_gateway()
    assert await gw.sign_in("supervisor") == 303
    page = await (await gw.client.get("/staff/warnings")).text()
    assert 'id="warnings-degraded"' in page
    up = await make_gateway(Fakes(supervision=FakeSupervision()))
    assert await up.sign_in("supervisor") == 303
    page = await (await up.client.get("/staff/warnings?lang=en")).text()
    assert 'id="warnings-degraded"' not in page
    assert NUMBER in page and "dot-red" in page and "<svg" in page


async def test_an_administrator_resets_a_password_and_the_old_one_stops_working(gw: Gateway) -> None:
    assert await gw.sign_in("admin") == 303
    token = await gw.csrf("/staff/admin/users")
    resp = await gw.client.post("/staff/admin/users/clerk.plan/password", data={"_csrf": token})
    page = await resp.text()
    assert resp.status == 200 and 'id="password-shown"' in page
    assert await gw.sign_in("clerk.plan") == 401


async def test_only_the_director_or_an_authorized_department_designates_a_key_project(gw: Gateway) -> None:
    assert await gw.sign_in("chief.plan") == 303
    form = {"promised_date": "2025-02-28", "tracker": "tracker"}
    assert await gw.post(f"/staff/cases/{NUMBER}/key-project", form, page="/staff") == 403
    await gw.post("/staff/logout", page="/staff")
    assert await gw.sign_in("director") == 303
    assert await gw.post(f"/staff/cases/{NUMBER}/key-project", form, page="/staff") == 303
    (req,) = gw.fakes.intake.designated
    assert req.designated_by.role == "center_director" and req.tracker == "tracker"
    assert req.promised_deadline.ToDatetime().isoformat() == "2025-02-28T15:59:59"
    assert (
        await gw.post(f"/staff/cases/{NUMBER}/key-project", {**form, "tracker": "clerk.plan"}, page="/staff")
        == 400
    )
