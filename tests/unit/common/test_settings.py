"""Settings fail fast with a message naming the variable, and never print secrets."""

from __future__ import annotations

import pytest

from services.common.settings import SettingsError, load_settings

BASE = {
    "ONESTOP_CENTER": "210200",
    "ONESTOP_DATABASE_URL": "postgresql+asyncpg://u:secret@h/db",
    "ONESTOP_NATS_URL": "nats://127.0.0.1:4222",
}


def test_missing_database_url_names_the_variable() -> None:
    env = dict(BASE)
    del env["ONESTOP_DATABASE_URL"]
    with pytest.raises(SettingsError, match="ONESTOP_DATABASE_URL is required"):
        load_settings(service="intake", env=env)


def test_a_malformed_center_code_is_refused() -> None:
    with pytest.raises(SettingsError, match="not a center code"):
        load_settings(service="intake", env=BASE | {"ONESTOP_CENTER": "dalian city"})


def test_the_test_clock_is_refused_in_production() -> None:
    with pytest.raises(SettingsError, match="refused in production"):
        load_settings(
            service="supervision",
            env=BASE | {"ONESTOP_ENV": "production", "ONESTOP_TEST_CLOCK_FILE": "/tmp/clock.json"},
        )


def test_interconnect_binds_to_its_own_host_or_else_the_grpc_host() -> None:
    assert load_settings(service="intake", env=BASE).interconnect_host == "127.0.0.1"
    inside = BASE | {"ONESTOP_GRPC_HOST": "0.0.0.0"}
    assert load_settings(service="intake", env=inside).interconnect_host == "0.0.0.0"
    split = inside | {"ONESTOP_INTERCONNECT_HOST": "10.20.0.5", "ONESTOP_INTERCONNECT_PORT": "50061"}
    settings = load_settings(service="intake", env=split)
    assert (settings.interconnect_host, settings.interconnect_port, settings.grpc_host) == (
        "10.20.0.5",
        50061,
        "0.0.0.0",
    )


def test_secrets_are_redacted_when_settings_are_logged() -> None:
    settings = load_settings(service="intake", env=BASE)
    assert ":secret@" not in str(settings.redacted())
    assert settings.redacted()["database_url"] == "postgresql+asyncpg://u:***@h/db"


def test_a_non_numeric_port_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="ONESTOP_GRPC_PORT must be an integer"):
        load_settings(service="intake", env=BASE | {"ONESTOP_GRPC_PORT": "fifty"})


def test_the_gateway_needs_a_long_session_secret_in_production() -> None:
    with pytest.raises(SettingsError, match="SESSION_SECRET"):
        load_settings(service="gateway", env={"ONESTOP_CENTER": "210200", "ONESTOP_ENV": "production"})


def test_the_log_level_is_read_and_checked() -> None:
    assert load_settings(service="intake", env=BASE).log_level == "INFO"
    assert load_settings(service="intake", env=BASE | {"ONESTOP_LOG_LEVEL": "warning"}).log_level == "WARNING"
    with pytest.raises(SettingsError, match="ONESTOP_LOG_LEVEL"):
        load_settings(service="intake", env=BASE | {"ONESTOP_LOG_LEVEL": "loud"})


def test_the_event_loop_is_uvloop_unless_asked_otherwise() -> None:
    assert load_settings(service="intake", env=BASE).event_loop == "uvloop"
    assert (
        load_settings(service="gateway", env=BASE | {"ONESTOP_EVENT_LOOP": "asyncio"}).event_loop == "asyncio"
    )
    with pytest.raises(SettingsError, match="ONESTOP_EVENT_LOOP"):
        load_settings(service="intake", env=BASE | {"ONESTOP_EVENT_LOOP": "trio"})
