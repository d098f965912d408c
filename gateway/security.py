"""CSRF tokens, signed cookies and per-IP token buckets."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy

from gateway.config import Rate

SESSION_COOKIE = "onestop_session"
ANON_COOKIE = "onestop_csrf"
TRACK_COOKIE = "onestop_track"
CSRF_FIELD = "_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
NEW_ANON = web.RequestKey("gateway.new_anon", str)  # an anonymous CSRF nonce to set on the response
SESSION_OK = web.RequestKey("gateway.session_ok", bool)  # the session cookie is valid
CLEAR_SESSION = web.RequestKey("gateway.clear_session", bool)  # a dead session cookie to drop


BODY_ERRORS: tuple[type[Exception], ...] = (ValueError, LookupError, HttpProcessingError)


async def read_form(request: web.Request) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
    """The posted form (parsed once, then cached by aiohttp); 400 when the body cannot be parsed."""
    try:
        return await request.post()
    except BODY_ERRORS:  # a missing boundary, a broken part header, an unknown charset ...
        raise web.HTTPBadRequest(
            reason="The form could not be read; reload the page and send it again"
        ) from None


def sha256_hex(value: str) -> str:
    """Lowercase hex SHA-256 of a text."""
    return hashlib.sha256(value.encode()).hexdigest()


def set_cookie(response: web.StreamResponse, name: str, value: str, *, max_age: int | None = None) -> None:
    """A cookie only this site's pages send back: Secure, HttpOnly, SameSite=Strict."""
    response.set_cookie(name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="Strict")


def clear_cookie(response: web.StreamResponse, name: str) -> None:
    """Remove a cookie with the same flags it was set with."""
    response.del_cookie(name, path="/", secure=True, httponly=True, samesite="Strict")


class Signer:
    """HMAC-SHA256 over small values: CSRF tokens and the track cookie."""

    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.sha256(b"onestop-gateway:" + secret).digest()

    def mac(self, purpose: str, value: str) -> str:
        """A URL-safe MAC of `value` for one purpose."""
        digest = hmac.new(self._key, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def dumps(self, purpose: str, data: Any) -> str:
        """JSON data with its MAC, for a cookie (signed, not secret from its owner)."""
        body = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")
        return f"{body}.{self.mac(purpose, body)}"

    def loads(self, purpose: str, value: str) -> Any:
        """The data of a signed value, or None when missing, malformed or tampered with."""
        body, _, mac = value.rpartition(".")
        if not body or not hmac.compare_digest(mac, self.mac(purpose, body)):
            return None
        try:
            return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except ValueError:
            return None


def csrf_binding(request: web.Request) -> str:
    """What a CSRF token is bound to: the session, else the visitor's anonymous nonce (made on demand)."""
    token = request.cookies.get(SESSION_COOKIE, "")
    if token and request.get(SESSION_OK):
        return "s:" + sha256_hex(token)
    nonce = request.get(NEW_ANON) or request.cookies.get(ANON_COOKIE, "")
    if len(nonce) < 16:
        nonce = secrets.token_urlsafe(24)
        request[NEW_ANON] = nonce
    return "a:" + nonce


def csrf_token(request: web.Request, signer: Signer) -> str:
    """The token forms and scripts send back on this page."""
    return signer.mac("csrf", csrf_binding(request))


def csrf_valid(request: web.Request, signer: Signer, sent: str) -> bool:
    """Whether a sent token matches this visitor's binding (no new nonce may be made here)."""
    if not sent:
        return False
    token = request.cookies.get(SESSION_COOKIE, "")
    if token and request.get(SESSION_OK):
        binding = "s:" + sha256_hex(token)
    else:
        nonce = request.cookies.get(ANON_COOKIE, "")
        if len(nonce) < 16:
            return False
        binding = "a:" + nonce
    return hmac.compare_digest(sent, signer.mac("csrf", binding))


class RateLimiter:
    """Token buckets per key (the client IP), kept in memory; old keys fall off the end."""

    def __init__(
        self, rate: Rate, *, now: Callable[[], float] = time.monotonic, max_keys: int = 50_000
    ) -> None:
        self.rate = rate
        self._now = now
        self._max = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """0 when allowed (a token is spent), else the seconds until the next token."""
        now = self._now()
        tokens, last = self._buckets.pop(key, (float(self.rate.burst), now))
        tokens = min(float(self.rate.burst), tokens + (now - last) / self.rate.every)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) * self.rate.every
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return wait


def client_ip(request: web.Request) -> str:
    """The peer address (the gateway sits directly behind the ingress; X-Forwarded-For is not trusted)."""
    return request.remote or "unknown"


def check_rate(request: web.Request, limiter: RateLimiter) -> None:
    """Raise 429 with Retry-After when this client's bucket is empty."""
    wait = limiter.take(client_ip(request))
    if wait > 0:
        raise web.HTTPTooManyRequests(
            headers={"Retry-After": str(int(wait) + 1)}, reason="Too many requests; please wait and try again"
        )
