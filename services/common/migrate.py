"""Alembic migrations per service: each service keeps its own version table and scripts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import async_engine_from_config

from services.common.db import Instant

SERVICES_DIR = Path(__file__).resolve().parent.parent


def alembic_config(*, service: str, database_url: str) -> Config:
    """The Alembic configuration of one service against `database_url`."""
    cfg = Config()
    cfg.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.attributes["service"] = service
    return cfg


def upgrade(*, service: str, database_url: str, revision: str = "head") -> None:
    """Bring the service's tables up to `revision` (blocking; run it in a thread from async code)."""
    command.upgrade(alembic_config(service=service, database_url=database_url), revision)


def version_table(service: str) -> str:
    """The Alembic version table of a service (services share a PostgreSQL database)."""
    return f"{service}_alembic_version"


def run_env(*, metadata: MetaData) -> None:
    """Body of each service's migrations/env.py."""
    cfg = context.config
    service = cfg.attributes.get("service") or Path(cfg.get_main_option("script_location") or "").parent.name
    prefix = f"{service}_"

    def include_name(name: str | None, type_: str, _: object) -> bool:
        return type_ != "table" or bool(name and name.startswith(prefix))

    def render_item(type_: str, obj: Any, autogen_context: Any) -> Any:
        if type_ == "type" and isinstance(obj, Instant):
            return "sa.DateTime(timezone=True)"
        return False

    def do_run(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table=version_table(service),
            include_name=include_name,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            render_item=render_item,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run_async() -> None:
        engine = async_engine_from_config(
            cfg.get_section(cfg.config_ini_section, {})
            | {"sqlalchemy.url": cfg.get_main_option("sqlalchemy.url") or ""},
            prefix="sqlalchemy.",
            poolclass=pool.NullPool,
        )
        async with engine.connect() as conn:
            await conn.run_sync(do_run)
            await conn.commit()
        await engine.dispose()

    asyncio.run(run_async())
