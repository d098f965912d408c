"""The gateway's own tables: accounts, sessions, questions, the cases agents carry, and its audit chain."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.audit import append, audit_tables
from services.common.db import create_engine

metadata = MetaData()

accounts = Table(
    "gateway_accounts",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("password_hash", String(255), nullable=False),
    Column("failed_attempts", Integer, nullable=False, default=0),
    Column("locked_until", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(64), nullable=False, default=""),
)

sessions = Table(
    "gateway_sessions",
    metadata,
    Column(
        "token_hash", String(64), primary_key=True
    ),  # SHA-256 of the cookie; the cookie itself is never stored
    Column("username", String(64), nullable=False, index=True),
    Column("display_name", String(128), nullable=False),
    Column("grants", JSON, nullable=False),
    Column("active", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
)

questions = Table(
    "gateway_questions",
    metadata,
    Column("question_id", String(36), primary_key=True),
    Column("matter_code", String(64), nullable=False),
    Column("department", String(32), nullable=False),
    Column("question", Text, nullable=False),
    Column("asker_name", String(64), nullable=False, default=""),
    Column("asker_contact", String(128), nullable=False, default=""),  # never shown publicly
    Column("asked_at", DateTime(timezone=True), nullable=False),
    Column("answer", Text, nullable=False, default=""),
    Column("answered_by", String(64), nullable=False, default=""),
    Column("answered_at", DateTime(timezone=True), nullable=True),
    Column("published", Boolean, nullable=False, default=False),
    Index("ix_gateway_questions_matter", "matter_code", "published"),
    Index("ix_gateway_questions_department", "department", "answered_at"),
)

carried = Table(
    "gateway_carried",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("username", String(64), nullable=False, index=True),
    Column("center", String(32), nullable=False, index=True),
    Column("service_point", String(32), nullable=False, default=""),
    Column("case_id", String(36), nullable=False),
    Column("case_number", String(64), nullable=False, default=""),
    Column("matter_code", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# The gateway's own hash-chained audit log (gateway/audit.py writes it; services/common/audit.py chains it).
audit = audit_tables(metadata, "gateway")


def aware(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything here is UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass
class Store:
    """Async Core access to the gateway's tables; every method is one short transaction."""

    engine: AsyncEngine

    @classmethod
    async def open(cls, url: str) -> Store:
        """Connect and create the gateway's tables if they are missing."""
        if url.startswith("sqlite") and ":memory:" not in url:
            Path(url.split(":///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, pool_size=5)
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        return cls(engine)

    async def close(self) -> None:
        """Dispose of the engine."""
        await self.engine.dispose()

    # -- accounts ------------------------------------------------------------------------------

    async def account(self, username: str) -> dict[str, Any] | None:
        """One account row, or None."""
        async with self.engine.connect() as conn:
            row = (
                (await conn.execute(select(accounts).where(accounts.c.username == username)))
                .mappings()
                .first()
            )
        if row is None:
            return None
        out = dict(row)
        out["locked_until"] = aware(out["locked_until"])
        return out

    async def all_accounts(self) -> dict[str, dict[str, Any]]:
        """Every account by username (the admin page)."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(accounts))).mappings().all()
        return {r["username"]: dict(r) | {"locked_until": aware(r["locked_until"])} for r in rows}

    async def set_password(self, username: str, password_hash: str, *, now: datetime, by: str) -> None:
        """Create the account or replace its password; clears any lockout."""
        async with self.engine.begin() as conn:
            found = (
                await conn.execute(select(accounts.c.username).where(accounts.c.username == username))
            ).first()
            values = {
                "password_hash": password_hash,
                "failed_attempts": 0,
                "locked_until": None,
                "updated_at": now,
                "updated_by": by,
            }
            if found:
                await conn.execute(update(accounts).where(accounts.c.username == username).values(**values))
            else:
                await conn.execute(insert(accounts).values(username=username, created_at=now, **values))

    async def record_failure(self, username: str, *, now: datetime, limit: int, lock_until: datetime) -> bool:
        """Count a failed sign-in; True when this failure locked the account."""
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    select(accounts.c.failed_attempts)
                    .where(accounts.c.username == username)
                    .with_for_update()
                )
            ).first()
            if row is None:
                return False
            failures = int(row[0]) + 1
            locked = failures >= limit
            await conn.execute(
                update(accounts)
                .where(accounts.c.username == username)
                .values(
                    failed_attempts=0 if locked else failures,
                    locked_until=lock_until if locked else None,
                    updated_at=now,
                )
            )
            return locked

    async def record_success(self, username: str, *, now: datetime, new_hash: str | None = None) -> None:
        """Reset the failure count (and store a re-hash when the parameters changed)."""
        values: dict[str, Any] = {"failed_attempts": 0, "locked_until": None}
        if new_hash:
            values.update(password_hash=new_hash, updated_at=now)
        async with self.engine.begin() as conn:
            await conn.execute(update(accounts).where(accounts.c.username == username).values(**values))

    # -- sessions ------------------------------------------------------------------------------

    async def create_session(self, row: dict[str, Any]) -> None:
        """Store a new session."""
        async with self.engine.begin() as conn:
            await conn.execute(insert(sessions).values(**row))

    async def session(self, token_hash: str) -> dict[str, Any] | None:
        """A session row by the hash of its cookie."""
        async with self.engine.connect() as conn:
            row = (
                (await conn.execute(select(sessions).where(sessions.c.token_hash == token_hash)))
                .mappings()
                .first()
            )
        if row is None:
            return None
        out = dict(row)
        for name in ("created_at", "expires_at", "last_seen_at"):
            out[name] = aware(out[name])
        return out

    async def touch_session(self, token_hash: str, *, now: datetime, active: int | None = None) -> None:
        """Note activity (and optionally switch the active role grant)."""
        values: dict[str, Any] = {"last_seen_at": now}
        if active is not None:
            values["active"] = active
        async with self.engine.begin() as conn:
            await conn.execute(update(sessions).where(sessions.c.token_hash == token_hash).values(**values))

    async def delete_session(self, token_hash: str) -> None:
        """Sign out."""
        async with self.engine.begin() as conn:
            await conn.execute(delete(sessions).where(sessions.c.token_hash == token_hash))

    async def delete_sessions_of(self, username: str) -> None:
        """Sign a person out everywhere (after a password reset)."""
        async with self.engine.begin() as conn:
            await conn.execute(delete(sessions).where(sessions.c.username == username))

    async def purge_sessions(self, *, now: datetime) -> None:
        """Drop expired sessions."""
        async with self.engine.begin() as conn:
            await conn.execute(delete(sessions).where(sessions.c.expires_at < now))

    # -- audit -------------------------------------------------------------------------------------

    async def append_audit(
        self, *, at: datetime, actor: str, role: str, action: str, subject: str, detail: dict[str, Any]
    ) -> int:
        """Chain one audit record in its own transaction; its sequence number."""
        async with self.engine.begin() as conn:
            return await append(
                conn, audit, at=at, actor=actor, role=role, action=action, subject=subject, detail=detail
            )

    async def audit_records(self, *, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Audit records after a sequence number, oldest first."""
        log = audit[0]
        stmt = select(log).where(log.c.seq > after).order_by(log.c.seq).limit(limit)
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(stmt)).mappings()]

    # -- questions (咨询) ------------------------------------------------------------------------

    async def add_question(
        self,
        *,
        matter_code: str,
        department: str,
        question: str,
        asker_name: str,
        asker_contact: str,
        now: datetime,
    ) -> str:
        """A citizen's question about a matter, for the department window to answer."""
        qid = str(uuid.uuid4())
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(questions).values(
                    question_id=qid,
                    matter_code=matter_code,
                    department=department,
                    question=question,
                    asker_name=asker_name,
                    asker_contact=asker_contact,
                    asked_at=now,
                    answer="",
                    answered_by="",
                    published=False,
                )
            )
        return qid

    async def question(self, question_id: str) -> dict[str, Any] | None:
        """One question."""
        async with self.engine.connect() as conn:
            row = (
                (await conn.execute(select(questions).where(questions.c.question_id == question_id)))
                .mappings()
                .first()
            )
        return dict(row) if row else None

    async def questions_for(
        self, *, department: str | None, answered: bool, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Questions of a department (None: all), open or answered."""
        stmt = select(questions)
        if department is not None:
            stmt = stmt.where(questions.c.department == department)
        stmt = stmt.where(
            questions.c.answered_at.is_not(None) if answered else questions.c.answered_at.is_(None)
        )
        stmt = stmt.order_by(questions.c.asked_at).limit(limit)
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(stmt)).mappings()]

    async def faq(self, matter_code: str) -> list[dict[str, Any]]:
        """A matter's public FAQ: answered, published questions."""
        stmt = (
            select(questions)
            .where(questions.c.matter_code == matter_code, questions.c.published.is_(True))
            .order_by(questions.c.answered_at.desc())
            .limit(50)
        )
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(stmt)).mappings()]

    async def answer_question(
        self, question_id: str, *, answer: str, by: str, publish: bool, now: datetime
    ) -> None:
        """The window's answer; published answers join the matter's FAQ."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(questions)
                .where(questions.c.question_id == question_id)
                .values(answer=answer, answered_by=by, answered_at=now, published=publish)
            )

    # -- cases carried by agents -----------------------------------------------------------------

    async def add_carried(
        self,
        *,
        username: str,
        center: str,
        service_point: str,
        case_id: str,
        case_number: str,
        matter_code: str,
        now: datetime,
    ) -> None:
        """Remember that an agent carries this case for a resident (R19, R20)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(carried).values(
                    id=str(uuid.uuid4()),
                    username=username,
                    center=center,
                    service_point=service_point,
                    case_id=case_id,
                    case_number=case_number,
                    matter_code=matter_code,
                    created_at=now,
                )
            )

    async def number_carried(self, *, case_id: str, case_number: str) -> None:
        """A carried case accepted after its pre-review notice was answered gets its number."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(carried)
                .where(carried.c.case_id == case_id, carried.c.case_number == "")
                .values(case_number=case_number)
            )

    async def carried_cases(
        self, *, username: str | None = None, center: str | None = None
    ) -> list[dict[str, Any]]:
        """Cases carried by one person, or by everyone at a center."""
        stmt = select(carried)
        if username is not None:
            stmt = stmt.where(carried.c.username == username)
        if center is not None:
            stmt = stmt.where(carried.c.center == center)
        async with self.engine.connect() as conn:
            return [
                dict(r)
                for r in (
                    await conn.execute(stmt.order_by(carried.c.created_at.desc()).limit(200))
                ).mappings()
            ]
