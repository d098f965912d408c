"""The gateway's audit chain: sign-ins, sign-outs, forwarded staff actions and refusals, verifiable."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text

from gateway.audit import verify_chain
from gateway.keys import STORE
from gateway.store import Store
from tests.unit.gateway.conftest import PASSWORD, Gateway
from tests.unit.gateway.fakes import NUMBER


def _store(gw: Gateway) -> Store:
    app = gw.client.app
    assert app is not None
    return app[STORE]


async def _records(gw: Gateway) -> list[dict[str, Any]]:
    return await _store(gw).audit_records()


def _url(gw: Gateway) -> str:
    return str(_store(gw).engine.url)


async def test_sign_in_success_and_failure_are_chained_without_the_password(gw: Gateway) -> None:
    assert await gw.sign_in("clerk.plan", "wrong password!") == 401
    assert await gw.sign_in("nobody") == 401
    assert await gw.sign_in("clerk.plan") == 303
    assert await gw.post("/staff/logout", page="/staff") == 303
    rows = await _records(gw)
    assert [(r["actor"], r["action"], r["detail"]["outcome"]) for r in rows] == [
        ("clerk.plan", "sign_in", "refused"),
        ("nobody", "sign_in", "refused"),
        ("clerk.plan", "sign_in", "ok"),
        ("clerk.plan", "sign_out", "ok"),
    ]
    assert rows[0]["detail"]["reason"] == "Wrong username or password"
    assert rows[2]["role"] == "window_clerk" and rows[2]["detail"]["center"] == "210200"
    assert rows[2]["detail"]["grants"] == ["window_clerk@210200/PLAN"]
    dumped = json.dumps(rows, default=str)
    assert PASSWORD not in dumped and "wrong password!" not in dumped


async def test_a_username_with_control_characters_is_refused_and_recorded_cleanly(gw: Gateway) -> None:
    assert await gw.sign_in("admin\x00\r\nx") == 401
    (row,) = await _records(gw)
    assert row["actor"] == "admin???x" and row["detail"]["reason"] == "malformed username"


async def test_forwarded_actions_and_refusals_name_who_what_and_why(gw: Gateway) -> None:
    assert await gw.sign_in("clerk.plan") == 303
    assert await gw.post("/staff/tasks/t-plan/claim", page="/staff") == 303
    assert await gw.post("/staff/tasks/t-plan/approve", page="/staff") == 403
    assert (await gw.client.get("/staff/warnings")).status == 403
    rows = (await _records(gw))[1:]
    claim, approve, warnings = rows
    assert (claim["action"], claim["subject"], claim["detail"]["outcome"]) == ("claim", "t-plan", "ok")
    assert claim["detail"]["case_number"] == NUMBER and claim["detail"]["department"] == "PLAN"
    assert (approve["action"], approve["detail"]["outcome"]) == ("approve", "refused")
    assert approve["detail"]["reason"] == "Only the chief representative or the department head decides"
    assert (warnings["actor"], warnings["role"]) == ("clerk.plan", "window_clerk")
    assert warnings["action"] == "view_warnings"
    assert warnings["detail"]["outcome"] == "refused" and warnings["detail"]["status"] == 403
    # Viewing what one may view is not an action: nothing is written.
    assert (await gw.client.get("/staff/queue")).status == 200
    assert len(await _records(gw)) == 4


async def test_anonymous_refusals_and_wrong_query_codes_are_recorded(gw: Gateway) -> None:
    resp = await gw.client.get("/staff/queue", allow_redirects=False, headers={"X-Request-Id": "req-1"})
    assert resp.status == 303
    assert (await gw.client.get("/api/v1/staff/queue")).status == 401
    token = await gw.csrf("/track")
    lookup = await gw.client.post(
        "/api/v1/cases/lookup", json={"number": NUMBER, "code": "WRONG123"}, headers={"X-CSRF-Token": token}
    )
    assert lookup.status == 404
    rows = await _records(gw)
    assert [(r["actor"], r["action"], r["detail"]["outcome"]) for r in rows] == [
        ("anonymous", "view_queue", "refused"),
        ("anonymous", "view_queue", "refused"),
        ("anonymous", "track_case", "refused"),
    ]
    assert rows[0]["detail"]["request_id"] == "req-1" and rows[0]["detail"]["reason"] == "not signed in"
    assert rows[2]["subject"] == "" and "WRONG123" not in json.dumps(rows, default=str)


async def test_a_flood_of_anonymous_refusals_is_throttled(make_gateway: Any) -> None:
    from gateway.config import Rate

    gw = await make_gateway(refusal_rate=Rate(burst=2, every=60.0))
    statuses = [(await gw.client.get("/api/v1/staff/queue")).status for _ in range(4)]
    assert statuses == [401, 401, 429, 429]
    assert len(await _records(gw)) == 2


async def test_verify_chain_proves_the_chain_and_names_an_edited_record(gw: Gateway) -> None:
    assert await gw.sign_in("clerk.plan", "wrong password!") == 401
    assert await gw.sign_in("clerk.plan") == 303
    verdict = await verify_chain(_url(gw))
    assert verdict.ok and verdict.records == 2
    async with _store(gw).engine.begin() as conn:
        await conn.execute(text("UPDATE gateway_audit SET actor = 'someone.else' WHERE seq = 1"))
    broken = await verify_chain(_url(gw))
    assert not broken.ok and broken.first_bad_seq == 1 and "edited" in broken.problem
