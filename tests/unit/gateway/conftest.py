"""A gateway app over fake services, a cheap password hasher and a clock the test moves."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import CookieJar
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher

from gateway.app import create_app
from gateway.auth import Passwords
from gateway.config import Rate, test_config
from gateway.keys import PASSWORDS, STORE
from services.common.settings import load_settings
from tests.unit.gateway.fakes import Fakes

PASSWORD = "correct horse battery"
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


class TestClock:
    """A clock the test moves by hand."""

    __test__ = False

    def __init__(self) -> None:
        self.now = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        """Move forward."""
        self.now += timedelta(**kwargs)


@dataclass
class Gateway:
    """The running app with its client, fakes and clock."""

    client: TestClient
    fakes: Fakes
    clock: TestClock

    async def csrf(self, path: str = "/") -> str:
        """The CSRF token a page carries."""
        resp = await self.client.get(path)
        match = CSRF_META.search(await resp.text())
        assert match, f"no csrf token on {path}"
        return match.group(1)

    async def sign_in(self, username: str, password: str = PASSWORD) -> int:
        """Sign in through the form; the status of the POST (303 on success)."""
        token = await self.csrf("/staff/login")
        resp = await self.client.post(
            "/staff/login",
            data={"username": username, "password": password, "_csrf": token},
            allow_redirects=False,
        )
        return resp.status

    async def post(self, path: str, data: dict[str, str] | None = None, *, page: str = "/") -> int:
        """POST a form with the token of `page`; the status without following redirects."""
        token = await self.csrf(page)
        resp = await self.client.post(path, data={**(data or {}), "_csrf": token}, allow_redirects=False)
        return resp.status


@pytest.fixture
async def make_gateway(tmp_path: Path) -> AsyncIterator[Callable[..., object]]:
    """Build gateways over fakes; every staff member in fakes.STAFF gets PASSWORD."""
    running: list[TestClient] = []

    async def build(fakes: Fakes | None = None, **config: object) -> Gateway:
        fakes = fakes or Fakes()
        clock = TestClock()
        settings = load_settings(
            service="gateway",
            env={"ONESTOP_CENTER": "210200", "ONESTOP_ENV": "test", "ONESTOP_DATA_DIR": str(tmp_path)},
        )
        cfg = test_config(
            database_url=f"sqlite+aiosqlite:///{tmp_path / f'gw{len(running)}.sqlite'}",
            forms_dir=tmp_path / "forms",
            **config,
        )
        app = create_app(
            settings,
            clients=fakes.clients(),
            config=cfg,
            now=clock,
            passwords=Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)),
        )
        server = TestServer(app)
        await server.start_server()
        jar = CookieJar(unsafe=True, treat_as_secure_origin=[str(server.make_url("/"))])
        client = TestClient(server, cookie_jar=jar)
        await client.start_server()
        running.append(client)
        from tests.unit.gateway.fakes import STAFF

        for username in STAFF:
            await app[STORE].set_password(
                username, await app[PASSWORDS].hash(PASSWORD), now=clock(), by="test"
            )
        return Gateway(client, fakes, clock)

    yield build
    for client in running:
        await client.close()


@pytest.fixture
async def gw(make_gateway: Callable[..., object]) -> Gateway:
    """A gateway with supervision down and notification not configured (today's reality)."""
    return await make_gateway()  # type: ignore[misc, no-any-return]


@pytest.fixture
def tight_rates() -> dict[str, Rate]:
    """Rate limits small enough to hit in a test."""
    return {"sign_in_rate": Rate(burst=3, every=60.0), "lookup_rate": Rate(burst=3, every=60.0)}
