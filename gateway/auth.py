"""Staff sign-in: argon2 hashes, lockout, server-side sessions and the roles that scope every page."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import wraps
from typing import Any
from urllib.parse import quote

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.config import GatewayConfig
from gateway.i18n import refusal
from gateway.labels import ROLE_NAMES as ROLE_NAMES
from gateway.security import SESSION_COOKIE, sha256_hex
from gateway.store import Store
from onestop.common.v1 import common_pb2

WINDOW_ROLES = frozenset({"window_clerk", "chief_representative", "department_head"})
DECIDING_ROLES = frozenset({"chief_representative", "department_head"})
EXTENSION_DECIDERS = frozenset({"department_head", "center_director"})
SUPERVISING_ROLES = frozenset({"supervisor", "center_director"})
TRACKING_ROLES = frozenset({"tracker", "supervisor", "center_director"})
ADMIN_ROLES = frozenset({"administrator"})
# The link to the parent node: the director and the office follow it, the administrator keeps it up.
LINK_ROLES = frozenset({"center_director", "supervisor", "administrator"})
CARRIER_ROLES = frozenset({"agent", "liaison_officer", "fee_collector"})
Handler = Callable[[web.Request], Awaitable[Any]]


@dataclass(frozen=True)
class Principal:
    """The signed-in person with the role grant they act under now (taken only from the session)."""

    username: str
    display_name: str
    role: str
    center: str
    department: str
    service_point: str
    grants: tuple[dict[str, str], ...]
    active: int
    token_hash: str
    # The center this gateway's node serves: its tasks, clocks and extensions are that center's.
    node: str = ""

    @property
    def here(self) -> bool:
        """Whether the active grant is held at this node's own center (not at a center below it)."""
        return bool(self.node) and self.center == self.node

    def actor(self) -> common_pb2.Actor:
        """The Actor the gateway vouches for in every acting gRPC call."""
        return common_pb2.Actor(
            username=self.username,
            display_name=self.display_name,
            role=self.role,
            center=self.center,
            department=self.department,
        )

    def has(self, roles: Iterable[str]) -> bool:
        """Whether the active grant is one of `roles`."""
        return self.role in set(roles)


PRINCIPAL = web.RequestKey("gateway.principal", Principal)
REFUSED = web.RequestKey("gateway.refused", str)  # why a request was turned away without a 401/403 status


def principal_of(request: web.Request) -> Principal | None:
    """The signed-in person, if any."""
    return request.get(PRINCIPAL)


def require(*roles: str, here: bool = False) -> Callable[[Handler], Handler]:
    """Only signed-in staff with one of `roles` (none: any), held at this node's own center when `here`."""
    # `here`: the node's tasks, clocks, extensions and warnings belong to its own center, not to the
    # districts, townships or service points below it whose staff also sign in at this gateway.

    def wrap(handler: Handler) -> Handler:
        @wraps(handler)
        async def inner(request: web.Request) -> Any:
            who = principal_of(request)
            if who is None:
                if request.path.startswith("/api/"):
                    raise refusal(web.HTTPUnauthorized, "请先登录", "Sign in first")
                request[REFUSED] = "not signed in"
                raise web.HTTPSeeOther(f"/staff/login?next={quote(request.path_qs, safe='/')}")
            if roles and who.role not in roles:
                raise refusal(web.HTTPForbidden, "您的角色无权打开此页面", "Your role may not open this page")
            if here:
                forbid_outside(who)
            return await handler(request)

        return inner

    return wrap


def local_path(value: str, default: str = "/") -> str:
    """`value` when it is a path on this site (no //host, backslash or control character), else `default`."""
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    return default if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value) else value


def forbid_unless(
    allowed: bool,
    reason: str = "Not within your department or center",
    *,
    zh: str = "不在您的部门或中心的办理范围内",
) -> None:
    """403 unless the scope check passed (``reason`` in English, ``zh`` in Chinese)."""
    if not allowed:
        raise refusal(web.HTTPForbidden, zh, reason)


def forbid_outside(who: Principal) -> None:
    """403 unless the active grant is held at this node's own center."""
    forbid_unless(
        who.here,
        f"Your role is held at center {who.center or '(none)'}; this console serves center {who.node}",
        zh=f"您的角色属于中心 {who.center or '(无)'},本工作台服务于中心 {who.node}",
    )


class Passwords:
    """argon2id hashing off the event loop; a dummy verify keeps unknown names as slow as known ones."""

    def __init__(self, hasher: PasswordHasher | None = None, *, concurrency: int = 2) -> None:
        self.hasher = hasher or PasswordHasher()
        self._dummy = self.hasher.hash(secrets.token_urlsafe(16))
        # Each hash takes the hasher's memory_cost (64 MiB by default): bound how many run at once.
        self._slots = asyncio.Semaphore(concurrency)

    async def hash(self, password: str) -> str:
        """A new hash."""
        async with self._slots:
            return await asyncio.to_thread(self.hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> tuple[bool, str | None]:
        """(matches, a re-hash when the parameters changed)."""

        def run() -> tuple[bool, str | None]:
            try:
                self.hasher.verify(stored or self._dummy, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False, None
            if stored is None:
                return False, None
            return True, self.hasher.hash(password) if self.hasher.check_needs_rehash(stored) else None

        async with self._slots:
            return await asyncio.to_thread(run)


class SignInError(Exception):
    """Sign-in refused; the message is safe to show."""

    def __init__(self, zh: str, en: str) -> None:
        super().__init__(en)
        self.zh = zh
        self.en = en


async def check_password(
    store: Store, passwords: Passwords, config: GatewayConfig, *, username: str, password: str, now: datetime
) -> None:
    """Verify a password with lockout after repeated failures; raise SignInError when refused."""
    account = await store.account(username)
    locked_until = account["locked_until"] if account else None
    if locked_until is not None and locked_until > now:
        minutes = max(1, int((locked_until - now).total_seconds() // 60) + 1)
        raise SignInError(
            f"连续输错密码次数过多，账户已锁定，请 {minutes} 分钟后再试",
            f"Too many failed attempts: the account is locked for {minutes} more minute(s)",
        )
    ok, rehash = await passwords.verify(account["password_hash"] if account else None, password)
    if not ok:
        if account is not None:
            locked = await store.record_failure(
                username,
                now=now,
                limit=config.lockout_attempts,
                lock_until=now + timedelta(minutes=config.lockout_minutes),
            )
            if locked:
                raise SignInError(
                    f"连续输错密码 {config.lockout_attempts} 次，账户锁定 {int(config.lockout_minutes)} 分钟",
                    f"{config.lockout_attempts} failed attempts: the account is locked for "
                    f"{int(config.lockout_minutes)} minutes",
                )
        raise SignInError("用户名或密码不正确", "Wrong username or password")
    await store.record_success(username, now=now, new_hash=rehash)


async def open_session(
    store: Store,
    config: GatewayConfig,
    *,
    username: str,
    display_name: str,
    grants: list[dict[str, str]],
    now: datetime,
) -> str:
    """A new session (a fresh token: no fixation); returns the cookie value."""
    token = secrets.token_urlsafe(32)
    await store.create_session(
        {
            "token_hash": sha256_hex(token),
            "username": username,
            "display_name": display_name,
            "grants": grants,
            "active": 0,
            "created_at": now,
            "expires_at": now + timedelta(hours=config.session_hours),
            "last_seen_at": now,
        }
    )
    return token


async def load_principal(
    store: Store, config: GatewayConfig, token: str, now: datetime, *, node: str = ""
) -> Principal | None:
    """The session behind a cookie, or None when unknown, expired or idle too long."""
    if not token or len(token) > 128:
        return None
    token_hash = sha256_hex(token)
    row = await store.session(token_hash)
    if row is None:
        return None
    idle = timedelta(minutes=config.idle_minutes)
    if row["expires_at"] <= now or row["last_seen_at"] + idle <= now:
        await store.delete_session(token_hash)
        return None
    if now - row["last_seen_at"] > timedelta(seconds=60):
        await store.touch_session(token_hash, now=now)
    grants = tuple(dict(g) for g in row["grants"])
    if not grants:
        return None
    active = row["active"] if 0 <= row["active"] < len(grants) else 0
    g = grants[active]
    return Principal(
        username=row["username"],
        display_name=row["display_name"],
        role=g.get("role", ""),
        center=g.get("center", ""),
        department=g.get("department", ""),
        service_point=g.get("service_point", ""),
        grants=grants,
        active=active,
        token_hash=token_hash,
        node=node,
    )


def session_token(request: web.Request) -> str:
    """The raw session cookie."""
    return request.cookies.get(SESSION_COOKIE, "")
