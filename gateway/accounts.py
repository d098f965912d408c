"""Provisioning of staff accounts: the demo accounts file at startup, and generated passwords."""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from pathlib import Path

from gateway.auth import Passwords
from gateway.store import Store
from services.common.logging import get_logger

log = get_logger(__name__)
MIN_PASSWORD_LENGTH = 10


async def import_demo_accounts(store: Store, passwords: Passwords, path: Path, now: datetime) -> int:
    """Hash the demo launcher's {username: password} file into the account store; the file's passwords win."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"cannot read the demo accounts file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise RuntimeError(f"{path}: expected a JSON object {{username: password}}")
    changed = 0
    for username, password in data.items():
        if not isinstance(username, str) or not isinstance(password, str) or not password:
            raise RuntimeError(f"{path}: every entry must map a username to a non-empty password")
        account = await store.account(username)
        if account is not None:
            ok, _ = await passwords.verify(account["password_hash"], password)
            if ok:
                continue
        await store.set_password(username, await passwords.hash(password), now=now, by="demo")
        changed += 1
    log.info("demo accounts imported", accounts=len(data), changed=changed)
    return changed


def new_password() -> str:
    """A random password shown once to the administrator who set it."""
    return secrets.token_urlsafe(12)
