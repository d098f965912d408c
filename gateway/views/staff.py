"""Staff sign-in and sign-out, the role switch, and the console's start page."""

from __future__ import annotations

from aiohttp import web

from gateway.audit import clean, record
from gateway.auth import (
    ADMIN_ROLES,
    CARRIER_ROLES,
    EXTENSION_DECIDERS,
    LINK_ROLES,
    SUPERVISING_ROLES,
    TRACKING_ROLES,
    WINDOW_ROLES,
    Principal,
    SignInError,
    check_password,
    local_path,
    open_session,
    principal_of,
    require,
)
from gateway.i18n import refusal
from gateway.keys import CONFIG, LIMITS, PASSWORDS, clients, now, store
from gateway.security import SESSION_COOKIE, check_rate, clear_cookie, set_cookie
from gateway.views.common import form_data, own_centers, redirect, render, text, tr
from onestop.routing.v1 import routing_pb2

routes = web.RouteTableDef()


def _safe_next(value: str) -> str:
    return local_path(value, "/staff")


@routes.get("/staff/login", name="login")
async def login_form(request: web.Request) -> web.Response:
    """The sign-in form."""
    return render(
        request,
        "staff/login.html",
        {"next": _safe_next(request.query.get("next", "/staff")), "error": "", "username": ""},
    )


@routes.post("/staff/login")
async def login(request: web.Request) -> web.StreamResponse:
    """Check the password (argon2, lockout), load the role grants, open a session; audit every attempt."""
    # The audit record names the username as typed, never the password.
    check_rate(request, request.app[LIMITS].sign_in)
    data = await form_data(request)
    raw = data.get("username", "")
    username = raw.strip() if isinstance(raw, str) else ""
    password = data.get("password", "")
    password = password if isinstance(password, str) else ""
    target = _safe_next(text(data, "next", max_len=300) or "/staff")
    t = tr(request)
    instant = now(request)

    async def refused(message: str, why: str) -> web.Response:
        await record(
            request, "sign_in", outcome="refused", status=401, reason=why, actor=username[:64] or "(blank)"
        )
        return render(
            request,
            "staff/login.html",
            {"next": target, "error": message, "username": clean(username, 64)},
            status=401,
        )

    if not username or not password or len(password) > 256:
        return await refused(t("请输入用户名和密码", "Enter your username and password"), "blank or overlong")
    if len(username) > 64 or clean(username, 64) != username:
        return await refused(t("用户名或密码不正确", "Wrong username or password"), "malformed username")
    try:
        await check_password(
            store(request),
            request.app[PASSWORDS],
            request.app[CONFIG],
            username=username,
            password=password,
            now=instant,
        )
    except SignInError as exc:
        return await refused(t(exc.zh, exc.en), exc.en)
    staff = await clients(request).routing.GetStaff(routing_pb2.GetStaffRequest(username=username), timeout=5)
    centers = await own_centers(request)
    grants = [
        {"role": g.role, "center": g.center, "department": g.department, "service_point": g.service_point}
        for g in staff.roles
        if g.center in centers
    ]
    if not grants:
        return await refused(
            t("您在本中心没有任何岗位权限", "You hold no role at this center"), "no role at this center"
        )
    token = await open_session(
        store(request),
        request.app[CONFIG],
        username=username,
        display_name=staff.display_name or username,
        grants=grants,
        now=instant,
    )
    first = grants[0]
    await record(
        request,
        "sign_in",
        outcome="ok",
        status=303,
        who=Principal(
            username=username,
            display_name=staff.display_name or username,
            role=first["role"],
            center=first["center"],
            department=first["department"],
            service_point=first["service_point"],
            grants=tuple(grants),
            active=0,
            token_hash="",
        ),
        grants=[
            f"{g['role']}@{g['center']}{'/' + g['department'] if g['department'] else ''}" for g in grants
        ],
    )
    response = web.HTTPSeeOther(target)
    set_cookie(response, SESSION_COOKIE, token)
    raise response


@routes.post("/staff/logout", name="logout")
async def logout(request: web.Request) -> web.StreamResponse:
    """End the session on the server and drop the cookie."""
    who = principal_of(request)
    if who is not None:
        await store(request).delete_session(who.token_hash)
        await record(request, "sign_out", outcome="ok", status=303)
    response = web.HTTPSeeOther("/staff/login")
    clear_cookie(response, SESSION_COOKIE)
    raise response


@routes.post("/staff/role", name="switch_role")
@require()
async def switch_role(request: web.Request) -> web.StreamResponse:
    """Act under another of one's own role grants."""
    who = principal_of(request)
    assert who is not None
    try:
        index = int(text(await form_data(request), "grant", max_len=3, required=True))
    except ValueError:
        raise refusal(web.HTTPBadRequest, "未知的角色授权", "unknown role grant") from None
    if not 0 <= index < len(who.grants):
        raise refusal(web.HTTPBadRequest, "未知的角色授权", "unknown role grant")
    await store(request).touch_session(who.token_hash, now=now(request), active=index)
    raise redirect("/staff")


@routes.get("/staff", name="staff_home")
@require()
async def home(request: web.Request) -> web.Response:
    """What the signed-in person can do, by role."""
    who = principal_of(request)
    assert who is not None
    t = tr(request)
    links: list[tuple[str, str]] = []
    here = who.here  # window, head, tracker and office work belongs to this node's own center
    if here and who.role in WINDOW_ROLES:
        links += [
            ("/staff/queue", t("本窗口待办队列", "My window's queue")),
            ("/staff/questions", t("群众咨询", "Citizens' questions")),
        ]
    if here and who.role in EXTENSION_DECIDERS:
        links.append(("/staff/extensions", t("延期申请审批", "Extension requests")))
    if here and who.role in TRACKING_ROLES:
        links.append(("/staff/key-projects", t("重点项目督办", "Key projects")))
    if here and who.role in SUPERVISING_ROLES:
        links += [
            ("/staff/warnings", t("预警督办看板", "Warning board")),
            ("/staff/accountability", t("超时默许与问责", "Deemed approvals and accountability")),
            ("/staff/dashboard", t("统计分析", "Dashboard")),
        ]
    if here and who.role in LINK_ROLES:
        links.append(("/staff/interconnect", t("上级联网状态", "Link to the parent center")))
    if who.role in CARRIER_ROLES:
        links.append(("/staff/carried", t("我代办的报件", "Cases I carry")))
    if here and who.role in ("fee_collector", "center_director"):
        links.append(("/staff/fees", t("收费与日终对账", "Fees and the day's reconciliation")))
    if who.role in ADMIN_ROLES:
        links += [
            ("/staff/admin/users", t("用户与岗位", "Users and roles")),
            ("/staff/admin/catalogue", t("事项目录版本", "Catalogue versions")),
            ("/staff/admin/calendar", t("工作日历", "Working calendar")),
        ]
    return render(request, "staff/home.html", {"links": links})
