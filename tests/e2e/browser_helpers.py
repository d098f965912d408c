"""Playwright helpers for the browser tests: Debian's chromium, demo accounts, sign-in, screenshots."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.cli.node import Node
from tests.harness import pg_create_database, pg_drop_database, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
PASSWORDS = {
    user: f"pw-{user}-{uuid.uuid4().hex[:8]}"
    for user in ("clerk.plan", "chief.plan", "clerk.drc", "supervisor", "head.plan", "admin")
}


def require_browser() -> None:
    """Skip without chromium unless on CI, where a missing browser is a failure."""
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{CHROMIUM} is missing and CI=true: run scripts/install-browser.sh")
    pytest.skip(f"{CHROMIUM} is missing (run scripts/install-browser.sh as root)")


@pytest.fixture
def web_node(node_factory: Callable[..., Node], tmp_path: Path) -> Iterator[Node]:
    """A whole node with its gateway on PostgreSQL and demo accounts provisioned."""
    require_browser()
    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps(PASSWORDS), encoding="utf-8")
    name = f"onestop_gw_{uuid.uuid4().hex[:10]}"
    env = {
        "ONESTOP_DEMO_ACCOUNTS_FILE": str(accounts),
        "ONESTOP_GATEWAY_DATABASE_URL": pg_create_database(name),
        "ONESTOP_SESSION_SECRET": uuid.uuid4().hex * 2,
    }
    node = None
    try:
        node = node_factory(gateway=True, env=env)
        yield node
    finally:
        if node is not None:
            node.stop()
        pg_drop_database(name)


@pytest.fixture
def browser(web_node: Node) -> Iterator[Any]:
    """A headless chromium driven by Playwright (sync API); Playwright downloads nothing.

    It depends on the node so that it starts after and stops before it: Playwright's sync API runs an event
    loop in this thread, and the node's PostgreSQL helpers need the thread free of one.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


def context(browser: Any, *, lang: str = "zh-CN") -> Any:
    """A fresh browser context (its own cookies), as another person at another desk."""
    ctx = browser.new_context(locale=lang, viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(15_000)
    return ctx


def sign_in(page: Any, base: str, username: str) -> None:
    """Sign in through the form and land on the console."""
    page.goto(f"{base}/staff/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORDS[username])
    page.click("#sign-in")
    page.wait_for_url(re.compile(r".*/staff(\?.*)?$"))


def shot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def pdf(path: Path, size: int = 4096) -> Path:
    """A small file that looks like a PDF (intake checks the magic bytes)."""
    body = b"%PDF-1.4\n" + os.urandom(max(size - 20, 16)) + b"\n%%EOF\n"
    path.write_bytes(body)
    return path


def reload_until(page: Any, selector: str, *, timeout: float = 30.0, what: str = "") -> None:
    """Reload a page until `selector` shows up (the services work asynchronously)."""

    def probe() -> bool:
        page.reload()
        return page.locator(selector).count() > 0

    if page.locator(selector).count() == 0:
        wait_for(probe, timeout=timeout, interval=0.5, what=what or selector)
