"""Typed application keys and the resources views reach through them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

from gateway.auth import Passwords
from gateway.clients import Clients
from gateway.config import GatewayConfig
from gateway.security import RateLimiter, Signer
from gateway.store import Store
from services.common.settings import Settings


@dataclass
class Limits:
    """The per-IP token buckets."""

    sign_in: RateLimiter
    lookup: RateLimiter
    question: RateLimiter
    upload: RateLimiter
    refusals: RateLimiter  # anonymous refusals that write an audit record


@dataclass
class Caches:
    """Small caches of slowly changing reference data (matters, departments, centers)."""

    departments: dict[str, tuple[str, str]] = field(default_factory=dict)
    centers: dict[str, tuple[str, str]] = field(default_factory=dict)  # names by code
    subtrees: dict[str, frozenset[str]] = field(default_factory=dict)  # a center and the centers below it
    matters: dict[str, tuple[float, Any]] = field(default_factory=dict)
    # Years the open clocks need but no calendar data covers, as supervision last said (see calendar_watch).
    calendar_missing: tuple[int, ...] = ()


SETTINGS = web.AppKey("settings", Settings)
CONFIG = web.AppKey("config", GatewayConfig)
CLIENTS = web.AppKey("clients", Clients)
STORE = web.AppKey("store", Store)
PASSWORDS = web.AppKey("passwords", Passwords)
SIGNER = web.AppKey("signer", Signer)
LIMITS = web.AppKey("limits", Limits)
CACHES = web.AppKey("caches", Caches)
NOW = web.AppKey[Callable[[], datetime]]("now")
OPENAPI = web.AppKey("openapi", dict)
CLOSING = web.AppKey("closing", asyncio.Event)  # set at shutdown: live streams end


def clients(request: web.Request) -> Clients:
    """The service stubs."""
    return request.app[CLIENTS]


def store(request: web.Request) -> Store:
    """The gateway's own tables."""
    return request.app[STORE]


def now(request: web.Request) -> datetime:
    """The current instant (a test clock in unit tests)."""
    return request.app[NOW]()


def settings(request: web.Request) -> Settings:
    """The node-wide settings."""
    return request.app[SETTINGS]
