"""Write a new Alembic revision for one service by comparing its tables with an up-to-date database.

Run: python scripts/new_migration.py <service> "<message>"
The revision id is the date (migrations are named by date) plus a counter.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sys
import tempfile
from pathlib import Path

from alembic import command

from services.common.migrate import SERVICES_DIR, alembic_config


def main() -> None:
    service, message = sys.argv[1], sys.argv[2]
    versions = SERVICES_DIR / service / "migrations" / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    template = SERVICES_DIR / service / "migrations" / "script.py.mako"
    shutil.copyfile(SERVICES_DIR / "common" / "migration_template" / "script.py.mako", template)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'db.sqlite'}"
        cfg = alembic_config(service=service, database_url=url)
        command.upgrade(cfg, "head")
        stamp = dt.date.today().strftime("%Y_%m_%d")
        n = len([p for p in versions.glob(f"{stamp}_*.py")]) + 1
        command.revision(cfg, message=message, autogenerate=True, rev_id=f"{stamp}_{n:04d}")
    template.unlink()


if __name__ == "__main__":
    main()
