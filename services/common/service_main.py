"""The entry point shared by every service process."""

from __future__ import annotations

import importlib
import sys

from services.common.loop import run
from services.common.runtime import serve
from services.common.settings import SettingsError, load_settings


def main(service: str) -> None:
    """Load settings (failing fast), then serve `service` until SIGTERM."""
    try:
        settings = load_settings(service=service)
    except SettingsError as exc:
        print(f"onestop {service}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    bootstrap = importlib.import_module(f"services.{service}.bootstrap")
    outbox, inbox = bootstrap.TABLES
    run(
        serve(settings=settings, outbox_table=outbox, inbox_table=inbox, build=bootstrap.build),
        kind=settings.event_loop,
    )
