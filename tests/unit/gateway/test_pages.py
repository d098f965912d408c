"""Every page renders for the roles that may open it, in both languages, with supervision up or down."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from onestop.supervision.v1 import supervision_pb2
from services.common.calendar import default_calendar
from tests.unit.gateway.fake_convenience import NOTICE_ID, notice_case
from tests.unit.gateway.fakes import NUMBER, FakeNotification, Fakes, FakeSupervision

PUBLIC = [
    "/",
    "/?q=PL&category=capital_construction",
    "/guide/PL-001",
    "/apply/PL-001",
    "/track",
    "/announcements",
    "/statistics",
    "/verify",
    "/seal-key.pem",
    "/api/v1/matters",
    "/api/v1/matters/PL-001",
    "/healthz",
    "/staff/login",
]
BY_ROLE = {
    "clerk.plan": [
        "/staff",
        "/staff/queue",
        "/staff/queue?closed=1",
        f"/staff/cases/{NUMBER}",
        f"/staff/cases/{NUMBER}/notices/acceptance",
        f"/staff/cases/{NUMBER}/notices/supplement",
        f"/staff/cases/{NUMBER}/notices/extension",
        "/staff/questions",
    ],
    "chief.plan": [f"/staff/cases/{NUMBER}", "/staff/queue"],
    "head.plan": ["/staff/extensions", f"/staff/cases/{NUMBER}"],
    "supervisor": [
        "/staff",
        "/staff/warnings",
        "/staff/accountability",
        "/staff/dashboard",
        "/staff/key-projects",
        "/staff/questions",
        "/staff/interconnect",
        f"/staff/cases/{NUMBER}",
    ],
    "admin": [
        "/staff",
        "/staff/interconnect",
        "/staff/admin/users",
        "/staff/admin/catalogue",
        "/staff/admin/calendar",
    ],
    "agent1": ["/staff", "/staff/carried", "/apply/PL-001"],
    "agent.here": [
        "/staff/carried",
        "/staff/carried?done=delivered",
        f"/staff/carried/{NOTICE_ID}/supplement",
        f"/staff/carried/{NOTICE_ID}/supplement?done=supplemented",
    ],
    "liaison1": [
        "/staff",
        "/staff/carried",
        "/staff/carried?done=assigned",
        f"/staff/carried/{NOTICE_ID}/supplement",
    ],
    "fee1": ["/staff", "/staff/fees", "/staff/fees?day=2025-01-05", "/staff/carried"],
    "director": ["/staff/fees"],
}


@pytest.mark.parametrize("supervision_up", [False, True])
@pytest.mark.parametrize("lang", ["zh-CN", "en"])
async def test_every_page_renders_for_its_roles(make_gateway: Any, supervision_up: bool, lang: str) -> None:
    fakes = Fakes(supervision=FakeSupervision()) if supervision_up else Fakes()
    if supervision_up:
        fakes.notification = FakeNotification()
    fakes.intake.cases[NOTICE_ID] = notice_case()  # agent.here's case waiting for its site plan
    gw = await make_gateway(fakes)
    await gw.client.get(f"/lang/{lang}")
    for path in PUBLIC:
        resp = await gw.client.get(path)
        assert resp.status == 200, (path, await resp.text())
    for username, paths in BY_ROLE.items():
        assert await gw.sign_in(username) == 303, username
        for path in paths:
            resp = await gw.client.get(path)
            assert resp.status == 200, (username, path, (await resp.text())[-600:])
        await gw.post("/staff/logout", page="/staff")


async def test_an_agent_applies_for_a_resident_and_carries_the_case(make_gateway: Any) -> None:
    gw = await make_gateway()
    assert await gw.sign_in("agent1") == 303
    from aiohttp import FormData

    from tests.unit.gateway.fakes import PDF

    token = await gw.csrf("/apply/PL-001")
    form = FormData()
    for name, value in (("_csrf", token), ("name", "村民甲"), ("applicant_kind", "1")):
        form.add_field(name, value)
    form.add_field("file_APPLICATION", PDF, filename="a.pdf", content_type="application/pdf")
    assert (await gw.client.post("/apply/PL-001", data=form)).status == 200
    case = gw.fakes.intake.cases["210200-20250106-0002"]
    assert case.channel == 3  # CHANNEL_AGENT
    page = await (await gw.client.get("/staff/carried")).text()
    assert "210200-20250106-0002" in page and "agent1" in page


async def test_a_head_decides_only_extensions_of_the_own_department(make_gateway: Any) -> None:
    gw = await make_gateway()
    assert await gw.sign_in("head.plan") == 303
    assert await gw.post("/staff/extensions/e1", {"approve": "1"}, page="/staff") == 303
    assert await gw.post("/staff/extensions/other", {"approve": "1"}, page="/staff") == 403
    assert [n for n, _ in gw.fakes.approval.acted] == ["decide_extension"]


class _NotYetSupervised(FakeSupervision):
    """Supervision up, but the case was accepted a moment ago: it has no clocks for it yet."""

    async def GetClocks(self, req: Any, timeout: float = 0) -> Any:
        import grpc

        from tests.unit.gateway.fakes import rpc_error

        raise rpc_error(grpc.StatusCode.NOT_FOUND, f"no clocks for case {req.case_number}")


async def test_a_case_supervision_has_not_seen_yet_still_shows_to_staff_and_applicant(
    make_gateway: Any,
) -> None:
    gw = await make_gateway(Fakes(supervision=_NotYetSupervised()))
    assert await gw.sign_in("clerk.plan") == 303
    staff = await gw.client.get(f"/staff/cases/{NUMBER}")
    assert staff.status == 200, (await staff.text())[-400:]
    await gw.post("/staff/logout", page="/staff")
    from tests.unit.gateway.fakes import CODE

    token = await gw.csrf("/track")
    await gw.client.post(
        "/track", data={"number": NUMBER, "code": CODE, "_csrf": token}, allow_redirects=False
    )
    applicant = await gw.client.get(f"/track/{NUMBER}")
    assert applicant.status == 200, (await applicant.text())[-400:]
    assert NUMBER in await applicant.text()


async def test_staff_see_on_every_page_which_calendar_year_is_missing_and_the_public_does_not(
    make_gateway: Any,
) -> None:
    sup = FakeSupervision()
    sup.missing_years = [2027]
    sup.loaded_years = [
        supervision_pb2.CalendarYear(year=2087, holidays={"2087-01-01": "元旦"}, source="test")
    ]
    gw = await make_gateway(Fakes(supervision=sup))
    for _ in range(50):  # the watch asks supervision as the gateway starts
        if 2087 in default_calendar().years():
            break
        await asyncio.sleep(0.05)
    assert 2087 in default_calendar().years()  # the year loaded at supervision counts here too
    public = await (await gw.client.get("/")).text()
    assert 'id="calendar-missing"' not in public
    assert await gw.sign_in("clerk.plan") == 303
    page = await (await gw.client.get("/staff/queue")).text()
    assert 'id="calendar-missing"' in page and "2027" in page


async def test_the_extension_notice_is_offered_only_for_a_case_with_an_approved_extension(gw: Any) -> None:
    assert await gw.sign_in("clerk.plan") == 303
    link = f'href="/staff/cases/{NUMBER}/notices/extension"'
    assert link not in await (await gw.client.get(f"/staff/cases/{NUMBER}")).text()
    plain = gw.fakes.approval.tasks()
    for task in plain:
        if task.task_id == "t-plan":
            task.extension_days = 5
    gw.fakes.approval.tasks = lambda: plain
    assert link in await (await gw.client.get(f"/staff/cases/{NUMBER}")).text()
