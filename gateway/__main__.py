"""python -m gateway: run the web gateway."""

from __future__ import annotations

import sys

from aiohttp import web

from services.common.logging import configure_logging
from services.common.loop import new_event_loop
from services.common.settings import SettingsError, load_settings


def main() -> None:
    """Load settings and serve HTTP until SIGTERM."""
    try:
        settings = load_settings(service="gateway")
    except SettingsError as exc:
        print(f"onestop gateway: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    from gateway.config import load_config

    try:
        config = load_config(settings)
    except SettingsError as exc:
        print(f"onestop gateway: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(service="gateway", center=settings.center, log_format=settings.log_format)
    from gateway.app import AccessLogger, create_app

    if settings.metrics_port:  # Prometheus scrapes the gateway like every service
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, addr=settings.grpc_host)

    web.run_app(
        create_app(settings, config=config),
        host=settings.grpc_host,
        port=settings.http_port,
        print=None,
        shutdown_timeout=5,
        loop=new_event_loop(settings.event_loop),
        access_log_class=AccessLogger,
    )


if __name__ == "__main__":
    main()
