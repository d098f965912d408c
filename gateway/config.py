"""The gateway's own settings (accounts database, secrets, limits), read once from the environment."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.common.settings import Settings, SettingsError

MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # the same ceiling intake enforces


@dataclass(frozen=True, kw_only=True)
class Rate:
    """A token bucket: `burst` requests at once, then one every `every` seconds."""

    burst: int
    every: float


@dataclass(frozen=True, kw_only=True)
class GatewayConfig:
    """What the gateway needs beyond the node-wide settings."""

    database_url: str
    secret: bytes
    demo_accounts_file: str = ""
    session_hours: float = 8.0
    idle_minutes: float = 30.0
    lockout_attempts: int = 5
    lockout_minutes: float = 15.0
    sign_in_rate: Rate = Rate(burst=10, every=6.0)
    lookup_rate: Rate = Rate(burst=20, every=3.0)
    question_rate: Rate = Rate(burst=5, every=60.0)
    upload_rate: Rate = Rate(burst=30, every=2.0)
    refusal_rate: Rate = Rate(burst=60, every=1.0)
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    forms_dir: Path | None = None


def _rate(env: Mapping[str, str], name: str, default: Rate) -> Rate:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        burst, every = raw.split("/", 1)
        return Rate(burst=max(int(burst), 1), every=max(float(every), 0.001))
    except ValueError:
        raise SettingsError(f"{name} must look like BURST/SECONDS (e.g. 10/6), got {raw!r}") from None


def load_config(settings: Settings, env: Mapping[str, str] | None = None) -> GatewayConfig:
    """Build the gateway's config; development gets a random secret, production must set one."""
    env = os.environ if env is None else env
    url = env.get("ONESTOP_GATEWAY_DATABASE_URL", "").strip()
    if not url:
        url = f"sqlite+aiosqlite:///{Path(settings.data_dir).resolve() / 'gateway.sqlite'}"
    secret = settings.session_secret
    if not secret:
        if settings.production:
            raise SettingsError("ONESTOP_SESSION_SECRET is required in production")
        secret = secrets.token_urlsafe(32)  # sessions live server-side; only CSRF/track cookies reset
    forms = env.get("ONESTOP_FORMS_DIR", "").strip()
    return GatewayConfig(
        database_url=url,
        secret=secret.encode(),
        demo_accounts_file=env.get("ONESTOP_DEMO_ACCOUNTS_FILE", "").strip(),
        sign_in_rate=_rate(env, "ONESTOP_GATEWAY_SIGN_IN_RATE", Rate(burst=10, every=6.0)),
        lookup_rate=_rate(env, "ONESTOP_GATEWAY_LOOKUP_RATE", Rate(burst=20, every=3.0)),
        upload_rate=_rate(env, "ONESTOP_GATEWAY_UPLOAD_RATE", Rate(burst=30, every=2.0)),
        refusal_rate=_rate(env, "ONESTOP_GATEWAY_REFUSAL_RATE", Rate(burst=60, every=1.0)),
        forms_dir=Path(forms) if forms else Path(settings.data_dir) / "forms",
    )


def test_config(**overrides: object) -> GatewayConfig:
    """A config for unit tests: in-memory SQLite and a fixed secret."""
    values: dict[str, object] = {"database_url": "sqlite+aiosqlite:///:memory:", "secret": b"t" * 32}
    values.update(overrides)
    return GatewayConfig(**values)  # type: ignore[arg-type]


test_config.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
