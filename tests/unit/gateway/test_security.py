"""The gateway's defences: CSRF, cookie flags, security headers, lockout, rate limits, no stack traces."""

from __future__ import annotations

from typing import Any

from gateway.security import SESSION_COOKIE
from tests.unit.gateway.conftest import PASSWORD, Gateway


async def test_a_form_post_without_the_csrf_token_is_refused(gw: Gateway) -> None:
    resp = await gw.client.post(
        "/staff/login", data={"username": "clerk.plan", "password": PASSWORD}, allow_redirects=False
    )
    page = await resp.text()
    assert resp.status == 403
    assert '<p class="error" role="alert">表单已过期,或不是从本站提交的;请刷新页面后重试</p>' in page
    assert "expired" in page  # the English original beneath
    assert SESSION_COOKIE not in resp.cookies


async def test_a_forged_csrf_token_is_refused_and_the_right_one_accepted(gw: Gateway) -> None:
    await gw.csrf("/staff/login")
    data = {"username": "clerk.plan", "password": PASSWORD}
    resp = await gw.client.post("/staff/login", data={**data, "_csrf": "forged"}, allow_redirects=False)
    assert resp.status == 403
    assert await gw.sign_in("clerk.plan") == 303


async def test_the_session_cookie_is_secure_httponly_and_strict(gw: Gateway) -> None:
    token = await gw.csrf("/staff/login")
    resp = await gw.client.post(
        "/staff/login",
        data={"username": "clerk.plan", "password": PASSWORD, "_csrf": token},
        allow_redirects=False,
    )
    morsel = resp.cookies[SESSION_COOKIE]
    assert morsel["secure"] and morsel["httponly"] and morsel["samesite"] == "Strict"
    assert morsel["path"] == "/"


async def test_the_csrf_token_changes_with_sign_in_and_the_anonymous_one_stops_working(gw: Gateway) -> None:
    anonymous = await gw.csrf("/")
    assert await gw.sign_in("clerk.plan") == 303
    signed_in = await gw.csrf("/staff")
    assert signed_in != anonymous
    resp = await gw.client.post("/staff/logout", data={"_csrf": anonymous}, allow_redirects=False)
    assert resp.status == 403
    resp = await gw.client.post("/staff/logout", data={"_csrf": signed_in}, allow_redirects=False)
    assert resp.status == 303
    assert (await gw.client.get("/staff", allow_redirects=False)).status == 303


async def test_every_page_carries_the_security_headers(gw: Gateway) -> None:
    resp = await gw.client.get("/")
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe-inline" not in csp
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    page = await resp.text()
    assert "<script>" not in page and " style=" not in page


async def test_five_wrong_passwords_lock_the_account_for_fifteen_minutes(gw: Gateway) -> None:
    for _ in range(4):
        assert await gw.sign_in("clerk.plan", "wrong password") == 401
    token = await gw.csrf("/staff/login")
    resp = await gw.client.post(
        "/staff/login", data={"username": "clerk.plan", "password": "nope", "_csrf": token}
    )
    assert resp.status == 401
    assert "locked" in await resp.text() or "锁定" in await resp.text()
    assert await gw.sign_in("clerk.plan") == 401  # the right password, but locked
    gw.clock.advance(minutes=14)
    assert await gw.sign_in("clerk.plan") == 401
    gw.clock.advance(minutes=2)
    assert await gw.sign_in("clerk.plan") == 303


async def test_a_successful_sign_in_resets_the_failure_count(gw: Gateway) -> None:
    for _ in range(4):
        assert await gw.sign_in("clerk.plan", "wrong password") == 401
    assert await gw.sign_in("clerk.plan") == 303
    for _ in range(4):
        assert await gw.sign_in("clerk.plan", "wrong password") == 401
    assert await gw.sign_in("clerk.plan") == 303


async def test_an_unknown_user_and_a_wrong_password_get_the_same_answer(gw: Gateway) -> None:
    token = await gw.csrf("/staff/login")
    a = await gw.client.post(
        "/staff/login", data={"username": "nobody", "password": "x" * 12, "_csrf": token}
    )
    b = await gw.client.post(
        "/staff/login", data={"username": "clerk.plan", "password": "x" * 12, "_csrf": token}
    )
    assert a.status == b.status == 401
    assert "Wrong username or password" in await a.text() or "用户名或密码不正确" in await a.text()
    assert ("用户名或密码不正确" in await a.text()) == ("用户名或密码不正确" in await b.text())


async def test_sign_in_is_rate_limited_per_address(make_gateway: Any, tight_rates: Any) -> None:
    gw = await make_gateway(**tight_rates)
    statuses = [await gw.sign_in("nobody", "wrong password") for _ in range(4)]
    assert statuses[:3] == [401, 401, 401]
    assert statuses[3] == 429


async def test_case_lookup_is_rate_limited_per_address(make_gateway: Any, tight_rates: Any) -> None:
    gw = await make_gateway(**tight_rates)
    token = await gw.csrf("/track")
    statuses = []
    for _ in range(4):
        resp = await gw.client.post(
            "/track",
            data={"number": "210200-20250106-0001", "code": "WRONG123", "_csrf": token},
            allow_redirects=False,
        )
        statuses.append(resp.status)
    assert statuses == [404, 404, 404, 429]
    assert "Retry-After" in resp.headers


async def test_a_crash_shows_a_reference_and_no_stack_trace(gw: Gateway) -> None:
    async def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("secret internals at /srv/onestop/gateway.py line 12")

    gw.fakes.routing.ListMatters = boom  # type: ignore[method-assign]
    resp = await gw.client.get("/")
    body = await resp.text()
    assert resp.status == 500
    assert "secret internals" not in body and "Traceback" not in body
    assert "Reference" in body or "参考编号" in body


async def test_a_session_expires_after_idle_time(gw: Gateway) -> None:
    assert await gw.sign_in("clerk.plan") == 303
    assert (await gw.client.get("/staff/queue", allow_redirects=False)).status == 200
    gw.clock.advance(minutes=31)
    resp = await gw.client.get("/staff/queue", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"].startswith("/staff/login")
