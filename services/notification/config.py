"""Notification's own settings (channels, retries, templates), read from the environment once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from services.common.settings import SettingsError
from services.notification.model import RetryPolicy


@dataclass(frozen=True, kw_only=True)
class NotifyConfig:
    """Where messages go and how hard we try."""

    sms_url: str = ""
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = ""
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    template_dir: str = ""
    center_name_zh: str = ""
    center_name_en: str = ""
    center_name_given: bool = False  # named in the environment: routing's name does not replace it
    retry_base_s: float = 5.0
    retry_max_s: float = 1800.0
    max_attempts: int = 24
    poll_s: float = 1.0
    send_timeout_s: float = 10.0
    concurrency: int = 8

    def retry_policy(self) -> RetryPolicy:
        """The backoff schedule these settings describe."""
        return RetryPolicy(base_s=self.retry_base_s, max_s=self.retry_max_s, max_attempts=self.max_attempts)

    def redacted(self) -> dict[str, object]:
        """The settings with the SMTP password hidden, for logs."""
        return {
            f.name: ("***" if f.name == "smtp_password" and self.smtp_password else getattr(self, f.name))
            for f in fields(self)
        }


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def load_config(env: Mapping[str, str] | None = None, *, center: str = "") -> NotifyConfig:
    """Build the notification settings from the environment; SettingsError names what is wrong."""
    env = os.environ if env is None else env
    sms_url = env.get("ONESTOP_SMS_URL", "").strip()
    if sms_url and not sms_url.startswith(("http://", "https://")):
        raise SettingsError(f"ONESTOP_SMS_URL must be an http(s) URL, got {sms_url!r}")
    smtp_host = env.get("ONESTOP_SMTP_HOST", "").strip()
    smtp_from = env.get("ONESTOP_SMTP_FROM", "").strip()
    if smtp_host and "@" not in smtp_from:
        raise SettingsError("ONESTOP_SMTP_FROM (an e-mail address) is required when ONESTOP_SMTP_HOST is set")
    user, password = env.get("ONESTOP_SMTP_USER", ""), env.get("ONESTOP_SMTP_PASSWORD", "")
    if bool(user) != bool(password):
        raise SettingsError("ONESTOP_SMTP_USER and ONESTOP_SMTP_PASSWORD go together")
    template_dir = env.get("ONESTOP_NOTIFY_TEMPLATE_DIR", "").strip()
    if template_dir and not os.path.isdir(template_dir):
        raise SettingsError(f"ONESTOP_NOTIFY_TEMPLATE_DIR {template_dir!r} is not a directory")
    return NotifyConfig(
        sms_url=sms_url,
        smtp_host=smtp_host,
        smtp_port=int(_number(env, "ONESTOP_SMTP_PORT", 25, minimum=1)),
        smtp_from=smtp_from,
        smtp_user=user,
        smtp_password=password,
        smtp_starttls=env.get("ONESTOP_SMTP_STARTTLS", "0") == "1",
        template_dir=template_dir,
        center_name_given=bool(env.get("ONESTOP_CENTER_NAME", "").strip()),
        center_name_zh=env.get("ONESTOP_CENTER_NAME", "").strip() or f"行政服务中心({center})",
        center_name_en=env.get("ONESTOP_CENTER_NAME_EN", "").strip()
        or f"Administrative Service Center {center}",
        retry_base_s=_number(env, "ONESTOP_NOTIFY_RETRY_BASE_S", 5.0, minimum=0.01),
        retry_max_s=_number(env, "ONESTOP_NOTIFY_RETRY_MAX_S", 1800.0, minimum=0.01),
        max_attempts=int(_number(env, "ONESTOP_NOTIFY_MAX_ATTEMPTS", 24, minimum=1)),
        poll_s=_number(env, "ONESTOP_NOTIFY_POLL_S", 1.0, minimum=0.01),
        send_timeout_s=_number(env, "ONESTOP_NOTIFY_SEND_TIMEOUT_S", 10.0, minimum=0.1),
        concurrency=int(_number(env, "ONESTOP_NOTIFY_CONCURRENCY", 8, minimum=1)),
    )
