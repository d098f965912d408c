"""Fee collectors, liaison officers and agents in the console (R19, R20): the session decides who acts."""

from __future__ import annotations

from typing import Any

from gateway.keys import STORE
from tests.unit.gateway.conftest import Gateway
from tests.unit.gateway.fake_convenience import CARRIED, DAY

FEE = {
    "matter_code": "CV-006",
    "fee_code": "ID-CARD",
    "fee_kind": "administrative",
    "amount": "20.00",
    "payer": "孙小梅",
    "method": "cash",
}


async def _post(gw: Gateway, path: str, data: dict[str, str], page: str) -> Any:
    token = await gw.csrf(page)
    return await gw.client.post(path, data={**data, "_csrf": token}, allow_redirects=False)


async def test_a_fee_collector_records_a_fee_and_sees_its_receipt(gw: Gateway) -> None:
    assert await gw.sign_in("fee1") == 303
    forged = {**FEE, "collector": "fee2", "username": "director"}
    resp = await _post(gw, "/staff/fees/collect", forged, "/staff/fees")
    assert resp.status == 303
    assert resp.headers["Location"] == f"/staff/fees?day={DAY}&receipt=210200-2025-000001#receipt"
    ((_, req),) = gw.fakes.convenience.calls
    assert (req.collector.username, req.collector.role, req.amount) == ("fee1", "fee_collector", "20.00")
    page = await (await gw.client.get(resp.headers["Location"])).text()
    assert 'id="receipt"' in page and "210200-2025-000001" in page and "¥20.00" in page
    assert "收费票据" in page and "孙小梅" in page
    english = await (await gw.client.get(f"/staff/fees?day={DAY}&lang=en")).text()
    assert "Record a fee" in english and "Reconcile the day" in english
    app = gw.client.app
    assert app is not None
    (*_, audited) = await app[STORE].audit_records()
    assert (audited["actor"], audited["action"], audited["detail"]["outcome"]) == (
        "fee1",
        "collect_fee",
        "ok",
    )
    assert audited["detail"]["receipt"] == "210200-2025-000001" and audited["detail"]["amount"] == "20.00"


async def test_bad_fee_input_is_refused_with_a_reason_before_any_call(gw: Gateway) -> None:
    assert await gw.sign_in("fee1") == 303
    for change, reason in [
        ({"amount": "-5"}, "amount must be an amount in yuan"),
        ({"amount": "1.005"}, "amount must be an amount in yuan"),
        ({"amount": "abc"}, "amount must be an amount in yuan"),
        ({"method": "cheque"}, "method must be one of cash, card, transfer"),
        ({"fee_kind": "tip"}, "fee_kind must be one of"),
        ({"payer": ""}, "field payer is required"),
        ({"matter_code": ""}, "a fee is for a case"),
    ]:
        resp = await _post(gw, "/staff/fees/collect", {**FEE, **change}, "/staff/fees")
        assert resp.status == 400, change
        assert reason in await resp.text(), change
    assert gw.fakes.convenience.calls == []
    assert (await gw.client.get("/staff/fees?day=2025-13-40")).status == 400
    zero = await _post(gw, "/staff/fees/collect", {**FEE, "amount": "0"}, "/staff/fees")
    assert zero.status == 400 and "not zero" in await zero.text()  # the service's own reason


async def test_a_refund_above_what_remains_is_refused_and_a_void_is_a_new_entry(gw: Gateway) -> None:
    assert await gw.sign_in("fee1") == 303
    await _post(gw, "/staff/fees/collect", {**FEE, "amount": "80.00"}, "/staff/fees")
    receipt = "210200-2025-000001"
    refund = {"receipt_number": receipt, "amount": "30", "reason": "多收"}
    assert (await _post(gw, "/staff/fees/refund", refund, "/staff/fees")).status == 303
    too_much = await _post(gw, "/staff/fees/refund", {**refund, "amount": "50.01"}, "/staff/fees")
    assert too_much.status == 409 and "exceeds what remains refundable" in await too_much.text()
    bad = await _post(gw, "/staff/fees/refund", {**refund, "receipt_number": "x' or 1=1"}, "/staff/fees")
    assert bad.status == 400
    await _post(gw, "/staff/fees/collect", FEE, "/staff/fees")
    voided = await _post(
        gw, "/staff/fees/void", {"receipt_number": "210200-2025-000003", "reason": "开错"}, "/staff/fees"
    )
    assert voided.status == 303
    page = await (await gw.client.get(f"/staff/fees?day={DAY}")).text()
    assert page.count("210200-2025-00000") >= 4 and "作废" in page and "退费" in page
    assert [name for name, _ in gw.fakes.convenience.calls] == [
        "collect",
        "refund",
        "refund",
        "collect",
        "void",
    ]


async def test_a_collector_reconciles_their_own_day_and_a_discrepancy_is_shown_as_reported(
    gw: Gateway,
) -> None:
    assert await gw.sign_in("fee1") == 303
    await _post(gw, "/staff/fees/collect", FEE, "/staff/fees")
    ok = await _post(gw, "/staff/fees/reconcile", {"day": DAY, "declared": "20.00"}, "/staff/fees")
    assert ok.status == 200 and 'id="reconcile-balanced"' in await ok.text()
    short = await _post(gw, "/staff/fees/reconcile", {"day": DAY, "declared": "19.50"}, "/staff/fees")
    text = await short.text()
    assert 'id="reconcile-flagged"' in text and "-0.50" in text and "已报告管理办公室" in text
    other = await _post(
        gw, "/staff/fees/reconcile", {"day": DAY, "declared": "0", "collector": "fee2"}, "/staff/fees"
    )
    assert other.status == 403
    asked = [req for name, req in gw.fakes.convenience.calls if name == "reconcile"]
    assert [(r.collector, r.by.username) for r in asked] == [("fee1", "fee1"), ("fee1", "fee1")]


async def test_the_director_reconciles_the_whole_center_but_does_not_collect(gw: Gateway) -> None:
    assert await gw.sign_in("director") == 303
    page = await (await gw.client.get("/staff/fees")).text()
    assert 'id="collect-fee"' not in page and '<option value="fee2">' in page
    assert (await _post(gw, "/staff/fees/collect", FEE, "/staff/fees")).status == 403
    whole = await _post(gw, "/staff/fees/reconcile", {"day": DAY, "declared": "0"}, "/staff/fees")
    assert whole.status == 200 and "全中心" in await whole.text()
    stranger = await _post(
        gw, "/staff/fees/reconcile", {"day": DAY, "declared": "0", "collector": "clerk.plan"}, "/staff/fees"
    )
    assert stranger.status == 400


async def test_a_collector_prints_the_report_of_their_own_reconciliation_and_no_one_elses(
    gw: Gateway,
) -> None:
    assert await gw.sign_in("fee2") == 303
    await _post(gw, "/staff/fees/collect", {**FEE, "amount": "7.00"}, "/staff/fees")
    await _post(gw, "/staff/fees/reconcile", {"day": DAY, "declared": "7.00"}, "/staff/fees")
    await gw.post("/staff/logout", page="/staff")
    assert await gw.sign_in("fee1") == 303
    await _post(gw, "/staff/fees/collect", FEE, "/staff/fees")
    done = await _post(gw, "/staff/fees/reconcile", {"day": DAY, "declared": "19.00"}, "/staff/fees")
    link = f"/staff/fees/report?day={DAY}&amp;id=2"
    assert f'id="print-report" href="{link}"' in await done.text()
    page = await (await gw.client.get(f"/staff/fees?day={DAY}")).text()
    assert 'id="reconciliations"' in page and link in page and "id=1" not in page  # fee2's is not listed
    resp = await gw.client.get(f"/staff/fees/report?day={DAY}&id=2")
    assert resp.status == 200 and resp.content_type == "text/html"
    report = await resp.text()
    assert report.startswith("<!DOCTYPE html>") and "收费日对账单 fee1" in report
    assert "210200-2025-000002" in report and "Difference: -1.00" in report and "000001" not in report
    policy = resp.headers["Content-Security-Policy"]
    assert policy.startswith("default-src 'none'; style-src 'sha256-") and "unsafe-inline" not in policy
    assert resp.headers["Cache-Control"] == "no-store"
    latest = await gw.client.get(f"/staff/fees/report?day={DAY}")
    assert await latest.text() == report  # without an id: the collector's latest of the day
    others = await gw.client.get(f"/staff/fees/report?day={DAY}&id=1")
    assert others.status == 403 and "only their own reconciliation reports" in await others.text()
    named = await gw.client.get(f"/staff/fees/report?day={DAY}&collector=fee2")
    assert named.status == 403
    app = gw.client.app
    assert app is not None
    refusals = [r for r in await app[STORE].audit_records() if r["action"] == "view_fee_report"]
    assert [(r["actor"], r["detail"]["outcome"], r["detail"]["status"]) for r in refusals] == [
        ("fee1", "refused", 403),
        ("fee1", "refused", 403),
    ]


async def test_the_director_prints_the_centers_report_or_a_named_collectors(gw: Gateway) -> None:
    assert await gw.sign_in("fee1") == 303
    await _post(gw, "/staff/fees/collect", FEE, "/staff/fees")
    await _post(gw, "/staff/fees/reconcile", {"day": DAY, "declared": "20.00"}, "/staff/fees")
    await gw.post("/staff/logout", page="/staff")
    assert await gw.sign_in("director") == 303
    missing = await gw.client.get(f"/staff/fees/report?day={DAY}")
    assert missing.status == 404 and "reconcile the day first" in await missing.text()
    await _post(gw, "/staff/fees/reconcile", {"day": DAY, "declared": "20.00"}, "/staff/fees")
    whole = await (await gw.client.get(f"/staff/fees/report?day={DAY}")).text()
    assert "收费日对账单 全中心" in whole and "Expected: 20.00" in whole
    one = await (await gw.client.get(f"/staff/fees/report?day={DAY}&collector=fee1")).text()
    assert "收费日对账单 fee1" in one
    assert "收费日对账单 fee1" in await (await gw.client.get(f"/staff/fees/report?day={DAY}&id=1")).text()
    page = await (await gw.client.get(f"/staff/fees?day={DAY}")).text()
    assert (
        f"/staff/fees/report?day={DAY}&amp;id=1" in page and f"/staff/fees/report?day={DAY}&amp;id=2" in page
    )
    stranger = await gw.client.get(f"/staff/fees/report?day={DAY}&collector=clerk.plan")
    assert stranger.status == 400 and "choose a fee collector of this center" in await stranger.text()


async def test_a_report_of_a_bad_or_unreconciled_day_is_a_clear_4xx(gw: Gateway) -> None:
    assert await gw.sign_in("fee1") == 303
    for query, status, reason in [
        ("day=2025-13-40", 400, "the day must look like 2025-11-20"),
        ("day=20250106", 400, "the day must look like 2025-11-20"),
        (f"day={DAY}&id=x1", 400, "id must be the number of a reconciliation"),
        ("day=2025-01-07", 404, "No reconciliation of fee1 is recorded for 2025-01-07"),
        (f"day={DAY}&id=9", 404, "No reconciliation 9 is recorded"),
    ]:
        resp = await gw.client.get(f"/staff/fees/report?{query}")
        assert resp.status == status, query
        assert reason in await resp.text(), query


async def test_fee_pages_are_refused_to_other_roles_and_to_staff_of_centers_below(gw: Gateway) -> None:
    for username in ("clerk.plan", "liaison1", "agent1", "supervisor"):
        assert await gw.sign_in(username) == 303
        assert (await gw.client.get("/staff/fees")).status == 403, username
        assert (await gw.client.get(f"/staff/fees/report?day={DAY}")).status == 403, username
        assert (await _post(gw, "/staff/fees/collect", FEE, "/staff")).status == 403, username
        await gw.post("/staff/logout", page="/staff")
    assert await gw.sign_in("fee1") == 303
    no_token = await gw.client.post("/staff/fees/collect", data=FEE, allow_redirects=False)
    assert no_token.status == 403 and gw.fakes.convenience.calls == []


async def test_a_liaison_officer_sees_the_undelivered_and_assigns_an_agent_of_the_center(gw: Gateway) -> None:
    assert await gw.sign_in("liaison1") == 303
    page = await (await gw.client.get("/staff/carried")).text()
    assert CARRIED in page and 'id="undelivered"' in page and "4.5" in page and 'id="assign-agent"' in page
    resp = await _post(
        gw, "/staff/carried/assign", {"case_number": CARRIED, "agent": "agent.here"}, "/staff/carried"
    )
    assert resp.status == 303 and resp.headers["Location"] == "/staff/carried?done=assigned"
    ((_, req),) = gw.fakes.convenience.calls
    assert (req.agent.username, req.agent.role, req.by.username, req.by.role) == (
        "agent.here",
        "agent",
        "liaison1",
        "liaison_officer",
    )
    not_an_agent = await _post(
        gw, "/staff/carried/assign", {"case_number": CARRIED, "agent": "fee1"}, "/staff/carried"
    )
    assert not_an_agent.status == 400 and "choose an agent of this center" in await not_an_agent.text()
    unknown = await _post(
        gw, "/staff/carried/assign", {"case_number": "nope", "agent": "agent.here"}, "/staff/carried"
    )
    assert unknown.status == 404 and "no case nope" in await unknown.text()


async def test_an_agent_sees_the_cases_carried_and_confirms_only_their_own_deliveries(gw: Gateway) -> None:
    assert await gw.sign_in("agent.here") == 303
    page = await (await gw.client.get("/staff/carried?lang=en")).text()
    assert CARRIED in page and "Results awaiting delivery" in page and 'id="assign-agent"' not in page
    assert (await gw.client.get(f"/staff/cases/{CARRIED}")).status != 403
    assign = {"case_number": CARRIED, "agent": "agent.here"}
    assert (await _post(gw, "/staff/carried/assign", assign, "/staff/carried")).status == 403
    delivery = {"case_number": CARRIED, "method": "handed_over", "receiver_name": "孙小梅"}
    resp = await _post(gw, "/staff/carried/deliver", delivery, "/staff/carried")
    assert resp.status == 303
    ((_, req),) = gw.fakes.convenience.calls
    assert req.by.username == "agent.here" and req.confirmed_at.seconds and req.receiver_name == "孙小梅"
    others = await _post(
        gw, "/staff/carried/deliver", {**delivery, "case_number": "210200-x"}, "/staff/carried"
    )
    assert others.status == 403
    wrong = await _post(gw, "/staff/carried/deliver", {**delivery, "method": "emailed"}, "/staff/carried")
    assert wrong.status == 400


async def test_an_agent_of_a_service_point_below_the_node_keeps_the_portal_list_only(gw: Gateway) -> None:
    assert await gw.sign_in("agent1") == 303
    page = await (await gw.client.get("/staff/carried")).text()
    assert 'id="undelivered"' not in page and CARRIED not in page
    delivery = {"case_number": CARRIED, "method": "handed_over", "receiver_name": "x"}
    assert (await _post(gw, "/staff/carried/deliver", delivery, "/staff/carried")).status == 403
