"""The staff console's link page: the parent link's state and what waits to go up, for the roles that follow it."""

from __future__ import annotations

from typing import Any

from gateway.keys import STORE
from tests.unit.gateway.fakes import FakeInterconnect, Fakes


async def test_the_director_sees_the_link_down_and_the_waiting_and_failed_cases_in_chinese(
    make_gateway: Any,
) -> None:
    gw = await make_gateway(Fakes(interconnect=FakeInterconnect()))
    assert await gw.sign_in("director") == 303
    home = await (await gw.client.get("/staff")).text()
    assert 'href="/staff/interconnect"' in home
    resp = await gw.client.get("/staff/interconnect")
    page = await resp.text()
    assert resp.status == 200
    assert "上级联网状态" in page and "未连接" in page and 'id="link-alarm"' in page
    assert "210211-20250106-0007" in page and "3 小时 5 分" in page and "9" in page
    assert "210211-20250106-0003" in page and "unknown matter XX-999" in page


async def test_the_supervisor_reads_it_in_english_with_the_link_up(make_gateway: Any) -> None:
    gw = await make_gateway(Fakes(interconnect=FakeInterconnect(connected=True)))
    assert await gw.sign_in("supervisor") == 303
    page = await (await gw.client.get("/staff/interconnect?lang=en")).text()
    assert "Link to the parent center" in page and ">connected<" in page
    assert 'id="link-alarm"' not in page and "Nothing waits to upload" in page


async def test_the_administrator_sees_the_link_but_no_case_numbers(make_gateway: Any) -> None:
    fake = FakeInterconnect()
    gw = await make_gateway(Fakes(interconnect=fake))
    assert await gw.sign_in("admin") == 303
    page = await (await gw.client.get("/staff/interconnect")).text()
    assert "未连接" in page and 'id="link-waiting"' in page
    assert "210211-20250106-0007" not in page and fake.listed == []


async def test_window_staff_trackers_and_agents_may_not_open_it(make_gateway: Any) -> None:
    gw = await make_gateway(Fakes(interconnect=FakeInterconnect()))
    refused = ("clerk.plan", "head.plan", "tracker", "agent1")
    for who in refused:
        assert await gw.sign_in(who) == 303
        assert (await gw.client.get("/staff/interconnect")).status == 403, who
        assert 'href="/staff/interconnect"' not in await (await gw.client.get("/staff")).text()
    app = gw.client.app
    assert app is not None
    rows = [r for r in await app[STORE].audit_records() if r["action"] == "view_interconnect"]
    assert [(r["actor"], r["detail"]["outcome"], r["detail"]["status"]) for r in rows] == [
        (who, "refused", 403) for who in refused
    ]


async def test_a_root_node_and_a_node_without_intake_say_so(make_gateway: Any) -> None:
    root = await make_gateway(Fakes(interconnect=FakeInterconnect(parent="")))
    assert await root.sign_in("director") == 303
    assert 'id="link-none"' in await (await root.client.get("/staff/interconnect")).text()
    absent = await make_gateway(Fakes())
    assert await absent.sign_in("director") == 303
    resp = await absent.client.get("/staff/interconnect")
    assert resp.status == 200 and 'id="interconnect-degraded"' in await resp.text()
