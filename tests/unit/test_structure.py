"""Rules of the layout: services never import each other, stubs are fresh, each service has its parts."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from services.common.ports import SERVICES as PORT_SERVICES

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(PORT_SERVICES)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_only_common_and_the_generated_stubs(service: str) -> None:
    offenders = []
    for path in (ROOT / "services" / service).rglob("*.py"):
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "services" and len(parts) > 1 and parts[1] not in ("common", service):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
            if parts[0] == "gateway":
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_common_knows_no_service() -> None:
    offenders = [
        f"{p.relative_to(ROOT)} imports {n}"
        for p in (ROOT / "services" / "common").rglob("*.py")
        for n in _imports(p)
        if n.startswith("services.") and not n.startswith("services.common")
    ]
    assert offenders == []


def test_the_generated_stubs_match_the_protos() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_the_same_parts(service: str) -> None:
    folder = ROOT / "services" / service
    for name in ("__main__.py", "bootstrap.py", "orm.py", "handlers.py", "grpc_api.py", "migrations/env.py"):
        assert (folder / name).exists(), f"services/{service}/{name} is missing"
    assert list((folder / "migrations" / "versions").glob("*.py")), f"services/{service} has no migration"


@pytest.mark.parametrize("service", SERVICES)
def test_migrations_create_exactly_the_tables_the_service_declares(service: str, tmp_path: Path) -> None:
    import importlib

    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    from services.common.migrate import upgrade, version_table

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(service=service, database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    metadata = importlib.import_module(f"services.{service}.orm").metadata
    engine = create_engine(url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"version_table": version_table(service), "compare_type": False}
        )
        diff = [
            d
            for d in compare_metadata(ctx, metadata)
            if not (d[0] == "remove_table" and d[1].name == version_table(service))
        ]
    assert diff == [], (
        f"services/{service}: tables differ from migrations; regenerate with scripts/new_migration.py"
    )
