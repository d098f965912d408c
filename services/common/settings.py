"""Process settings: one frozen object built from the environment in `main`, failing fast."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from services.common.ports import GRPC_PORTS, HTTP_PORT, INTERCONNECT_PORT, METRICS_PORT

CENTER_CODE = re.compile(r"^[0-9A-Z][0-9A-Z-]{1,31}$")
ENVIRONMENTS = ("production", "development", "test")
_SECRET_FIELDS = ("database_url", "session_secret")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything a onestop process needs to know about where it runs."""

    service: str
    env: str
    center: str
    center_level: str
    database_url: str
    nats_url: str
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 0
    metrics_port: int = 0
    http_port: int = HTTP_PORT
    interconnect_port: int = INTERCONNECT_PORT
    interconnect_host: str = ""  # bind address of intake's interconnect server; "" = grpc_host
    data_dir: Path = Path("./data")
    log_format: str = "console"
    log_level: str = "INFO"
    event_loop: str = "uvloop"  # or "asyncio" (the standard library's loop)
    stream_replicas: int = 1
    peers: Mapping[str, str] = field(default_factory=dict)
    parent_addr: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_ca_file: str = ""
    seal_key_file: str = ""
    test_clock_file: str = ""
    session_secret: str = ""
    stream_name: str = "ONESTOP"
    # Where intake keeps documents: "local" (under data_dir) or "s3://bucket[/prefix]"; the endpoint,
    # region and credentials of an S3 store are botocore's own variables (AWS_ENDPOINT_URL_S3, ...).
    document_store: str = "local"
    s3_addressing_style: str = "auto"

    @property
    def production(self) -> bool:
        """True in production, where test-only switches are refused."""
        return self.env == "production"

    def peer(self, service: str) -> str:
        """The host:port of a sibling service, or a clear error when it is not configured."""
        try:
            return self.peers[service]
        except KeyError:
            raise SettingsError(f"ONESTOP_{service.upper()}_ADDR is not set") from None

    def redacted(self) -> dict[str, object]:
        """The settings as a dict with secrets hidden, for logs and diagnostics."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET_FIELDS and value:
                value = re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", str(value))
                if f.name == "session_secret":
                    value = "***"
            out[f.name] = value
        return out


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must not be negative, got {value}")
    return value


def seconds(name: str, default: float, env: Mapping[str, str] | None = None) -> float:
    """A non-negative number of seconds from the environment variable `name`; fails fast on nonsense."""
    raw = (os.environ if env is None else env).get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must not be negative, got {value}")
    return value


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError(f"{name} is required")
    return value


# S3 bucket names: 3-63 lowercase letters, digits, dots and hyphens, starting and ending alphanumeric.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
ADDRESSING_STYLES = ("auto", "path", "virtual")


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of `s3://bucket[/prefix]`; the prefix has no leading or trailing slash."""
    if not url.startswith("s3://"):
        raise SettingsError(f"ONESTOP_DOCUMENT_STORE must be 'local' or s3://bucket[/prefix], got {url!r}")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not _BUCKET.match(bucket):
        raise SettingsError(f"ONESTOP_DOCUMENT_STORE names no valid S3 bucket: {bucket!r}")
    return bucket, prefix.strip("/")


def _document_store(raw: str) -> str:
    value = raw.strip()
    if value in ("", "local"):
        return "local"
    bucket, prefix = parse_s3_url(value)
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"


def _addressing_style(raw: str) -> str:
    style = raw.strip().lower() or "auto"
    if style not in ADDRESSING_STYLES:
        raise SettingsError(
            f"ONESTOP_S3_ADDRESSING_STYLE must be one of {', '.join(ADDRESSING_STYLES)}, got {raw!r}"
        )
    return style


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
EVENT_LOOPS = ("uvloop", "asyncio")


def _event_loop(raw: str) -> str:
    loop = raw.strip().lower() or "uvloop"
    if loop not in EVENT_LOOPS:
        raise SettingsError(f"ONESTOP_EVENT_LOOP must be one of {', '.join(EVENT_LOOPS)}, got {raw!r}")
    return loop


def _log_level(raw: str) -> str:
    level = raw.strip().upper() or "INFO"
    if level not in LOG_LEVELS:
        raise SettingsError(f"ONESTOP_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {raw!r}")
    return level


def load_settings(*, service: str, env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings of `service` from the environment; raise SettingsError on any gap."""
    env = os.environ if env is None else env
    environment = env.get("ONESTOP_ENV", "development")
    if environment not in ENVIRONMENTS:
        raise SettingsError(f"ONESTOP_ENV must be one of {ENVIRONMENTS}, got {environment!r}")
    center = _required(env, "ONESTOP_CENTER")
    if not CENTER_CODE.match(center):
        raise SettingsError(f"ONESTOP_CENTER {center!r} is not a center code (e.g. 210200)")
    test_clock = env.get("ONESTOP_TEST_CLOCK_FILE", "")
    if test_clock and environment == "production":
        raise SettingsError("ONESTOP_TEST_CLOCK_FILE is refused in production")
    database_url = "" if service == "gateway" else _required(env, "ONESTOP_DATABASE_URL")
    nats_url = "" if service == "gateway" else _required(env, "ONESTOP_NATS_URL")
    session_secret = env.get("ONESTOP_SESSION_SECRET", "")
    if service == "gateway" and environment == "production" and len(session_secret) < 32:
        raise SettingsError("ONESTOP_SESSION_SECRET must be at least 32 characters in production")
    peers = {
        name: env[f"ONESTOP_{name.upper()}_ADDR"]
        for name in GRPC_PORTS
        if env.get(f"ONESTOP_{name.upper()}_ADDR")
    }
    return Settings(
        service=service,
        env=environment,
        center=center,
        center_level=env.get("ONESTOP_CENTER_LEVEL", "city"),
        database_url=database_url,
        nats_url=nats_url,
        grpc_host=env.get("ONESTOP_GRPC_HOST", "127.0.0.1"),
        interconnect_host=env.get("ONESTOP_INTERCONNECT_HOST", "")
        or env.get("ONESTOP_GRPC_HOST", "127.0.0.1"),
        grpc_port=_int(env, "ONESTOP_GRPC_PORT", GRPC_PORTS.get(service, 0)),
        metrics_port=_int(env, "ONESTOP_METRICS_PORT", METRICS_PORT),
        http_port=_int(env, "ONESTOP_HTTP_PORT", HTTP_PORT),
        interconnect_port=_int(env, "ONESTOP_INTERCONNECT_PORT", INTERCONNECT_PORT),
        data_dir=Path(env.get("ONESTOP_DATA_DIR", "./data")),
        log_format=env.get("ONESTOP_LOG_FORMAT", "json" if environment == "production" else "console"),
        log_level=_log_level(env.get("ONESTOP_LOG_LEVEL", "INFO")),
        event_loop=_event_loop(env.get("ONESTOP_EVENT_LOOP", "uvloop")),
        stream_replicas=_int(env, "ONESTOP_STREAM_REPLICAS", 1) or 1,
        peers=peers,
        parent_addr=env.get("ONESTOP_PARENT_ADDR", ""),
        tls_cert_file=env.get("ONESTOP_TLS_CERT_FILE", ""),
        tls_key_file=env.get("ONESTOP_TLS_KEY_FILE", ""),
        tls_ca_file=env.get("ONESTOP_TLS_CA_FILE", ""),
        seal_key_file=env.get("ONESTOP_SEAL_KEY_FILE", ""),
        test_clock_file=test_clock,
        session_secret=session_secret,
        stream_name=env.get("ONESTOP_STREAM_NAME", "ONESTOP"),
        document_store=_document_store(env.get("ONESTOP_DOCUMENT_STORE", "")),
        s3_addressing_style=_addressing_style(env.get("ONESTOP_S3_ADDRESSING_STYLE", "")),
    )
