"""UploadCase at the parent, on SQLite and PostgreSQL: uploads arriving together commit together, each
child gets exactly its own answer, a repeated upload answers the first case, and a case id another child
uploaded is refused (and audited once) without taking the rest of its batch down."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from onestop.interconnect.v1 import interconnect_pb2
from services.cli import certs_cmd
from services.common import migrate
from services.common.audit import verify
from services.common.clock import ManualClock
from services.common.db import create_engine
from services.common.errors import InvalidArgument, PermissionDenied
from services.common.outbox import Outbox, UnitOfWork
from services.common.runtime import Runtime
from services.intake import handlers, model, orm, repository
from services.intake.interconnect_api import InterconnectApi

CS = common_pb2
CITY, DISTRICT, OTHER = "210200", "210211", "210212"
NOW = datetime(2026, 11, 26, 9, tzinfo=UTC)
FORM = "a" * 64


class Matters:
    """One matter that wants a form."""

    async def get(self, code: str) -> handlers.MatterView:
        rule = model.MaterialRule("FORM", "申请表", True, (), 10_000_000)
        return handlers.MatterView(code=code, version=1, on_the_spot=False, materials=(rule,))


class Children:
    """The city's child centers (routing's organisation, faked)."""

    async def get(self) -> frozenset[str]:
        return frozenset({DISTRICT, OTHER})


class Caller:
    """A gRPC servicer context whose verified client certificate names a center."""

    def __init__(self, pem: bytes) -> None:
        self._auth = {"transport_security_type": [b"ssl"], "x509_pem_cert": [pem]}

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'intake.db'}"
    return str(request.getfixturevalue("postgres_db"))


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    await asyncio.to_thread(migrate.upgrade, service="intake", database_url=db_url)
    eng = create_engine(db_url)
    async with UnitOfWork(eng, Outbox(orm.outbox)) as uow:
        await repository.add_document(
            uow.conn,
            {
                "digest": FORM,
                "filename": "f.pdf",
                "content_type": "application/pdf",
                "size": 10,
                "stored_at": NOW,
            },
        )
        await uow.commit()
    yield eng
    await eng.dispose()


@pytest.fixture(scope="module")
def callers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Caller]:
    ca = tmp_path_factory.mktemp("ca")
    certs_cmd.init_ca(ca)
    return {c: Caller(certs_cmd.issue(ca, center=c, out=ca / c).cert.read_bytes()) for c in (DISTRICT, OTHER)}


def _api(engine: AsyncEngine) -> InterconnectApi:
    runtime = Runtime(
        settings=cast(Any, None), engine=engine, outbox=Outbox(orm.outbox), clock=ManualClock(NOW)
    )
    ctx = handlers.IntakeContext(center=CITY, matters=Matters(), clock=ManualClock(NOW))
    return InterconnectApi(runtime=runtime, ctx=ctx, received=cast(Any, None), children=cast(Any, Children()))


def _upload(child_case_id: str, *, complete: bool = True) -> interconnect_pb2.UploadCaseRequest:
    req = interconnect_pb2.UploadCaseRequest(
        child_case_id=child_case_id, matter_code="TR-001", title=child_case_id
    )
    req.applicant.name = "张三"
    req.preliminary_reviewer.username = "window-1"
    req.preliminary_reviewer.center = "999999"  # the body's center is never believed
    if complete:
        req.documents.add(material_code="FORM", digest=FORM, filename="f.pdf", content_type="application/pdf")
    return req


def _seq(number: str) -> int:
    assert re.fullmatch(rf"{CITY}-\d{{8}}-\d{{6}}", number), number
    return int(number.rsplit("-", 1)[1])


class Statements:
    """Counts the statements an engine sends (an executemany is one)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.count = 0
        event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, *_: Any) -> None:
        self.count += 1


async def _rows(engine: AsyncEngine, stmt: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(stmt)).all())


async def test_uploads_arriving_together_commit_together_and_a_repeated_upload_answers_the_first_case(
    engine: AsyncEngine, callers: dict[str, Caller]
) -> None:
    api = _api(engine)
    district = callers[DISTRICT]
    await api.children.get()
    uploads = [_upload(f"c{i}") for i in range(10)]
    uploads += [_upload("c3"), _upload("short", complete=False)]  # a retry within the same burst
    statements = Statements(engine)
    replies = await asyncio.gather(*(api.UploadCase(u, district) for u in uploads))
    # cases by child id, documents, the short one's feed update (cursor, row), numbers, cases, timeline,
    # outbox, and the audit chain's records of the calls: its head locked and moved, the records in one
    # insert, and on this fresh database its head created and read again (BEGIN/COMMIT not counted):
    # not per case
    assert statements.count <= 8 + 5, statements.count
    assert api.uploads.committer.batches >= 1 and api.uploads.committer.fallbacks == 0
    assert [r.duplicate for r in replies] == [False] * 10 + [True, False]
    assert replies[10].parent_case_id == replies[3].parent_case_id
    assert replies[10].parent_case_number == replies[3].parent_case_number
    assert sorted(_seq(r.parent_case_number) for r in replies[:10]) == list(range(1, 11))
    assert replies[11].status == CS.CASE_STATUS_SUPPLEMENT_REQUESTED and not replies[11].parent_case_number
    assert [s.material_code for s in replies[11].supplement] == ["FORM"]
    async with engine.connect() as conn:  # every call is in the hash-chained audit log, the retry too
        chained = (await conn.execute(select(orm.audit[0].c.subject, orm.audit[0].c.detail))).all()
        assert (await verify(conn, orm.audit)).ok
    assert sorted(subject for subject, _ in chained) == sorted(u.child_case_id for u in uploads)
    assert sum(1 for _, detail in chained if detail.get("duplicate")) == 1

    again = await api.UploadCase(_upload("c5"), district)  # a retry after the reply was lost
    assert again.duplicate and (again.parent_case_id, again.parent_case_number) == (
        replies[5].parent_case_id,
        replies[5].parent_case_number,
    )
    cases = await _rows(
        engine,
        select(
            orm.cases.c.case_id, orm.cases.c.origin_center, orm.cases.c.origin_case_id, orm.cases.c.status
        ),
    )
    assert len(cases) == 11 and {c.origin_center for c in cases} == {DISTRICT}
    payloads = [p for (p,) in await _rows(engine, select(orm.outbox.c.payload))]
    envelopes = [events_pb2.Envelope.FromString(p) for p in payloads]
    submitted = [e for e in envelopes if e.WhichOneof("body") == "case_submitted"]
    accepted = {e.case_id: e for e in envelopes if e.WhichOneof("body") == "case_accepted"}
    assert len(submitted) == 11 and {e.case_id for e in submitted} == {c.case_id for c in cases}
    assert {cid: e.case_number for cid, e in accepted.items()} == {
        r.parent_case_id: r.parent_case_number for r in replies[:10]
    }
    assert all(e.case_accepted.origin_center == DISTRICT for e in accepted.values())
    assert all(e.case_submitted.submitted_by.center == DISTRICT for e in submitted)
    # the case's submission and acceptance events were committed with it: its timeline says so too
    async with engine.connect() as conn:
        trail = [t["kind"] for t in await repository.timeline(conn, replies[0].parent_case_id)]
    assert trail == ["case_submitted", "case_accepted"]


async def test_a_case_id_another_child_uploaded_is_refused_and_audited_once_and_its_batch_goes_on(
    engine: AsyncEngine, callers: dict[str, Caller]
) -> None:
    api = _api(engine)
    first = await api.UploadCase(_upload("shared-id"), callers[DISTRICT])
    assert not first.duplicate
    burst = [api.UploadCase(_upload(f"d{i}"), callers[DISTRICT]) for i in range(5)]
    burst.insert(2, api.UploadCase(_upload("shared-id"), callers[OTHER]))
    replies = await asyncio.gather(*burst, return_exceptions=True)
    refused = replies.pop(2)
    assert isinstance(refused, PermissionDenied) and OTHER in str(refused)
    assert all(isinstance(r, interconnect_pb2.UploadCaseResponse) and not r.duplicate for r in replies)
    assert len({cast(Any, r).parent_case_id for r in replies}) == 5
    audit = await _rows(
        engine,
        select(
            orm.interconnect_audit.c.center,
            orm.interconnect_audit.c.child_case_id,
            orm.interconnect_audit.c.detail,
        ),
    )
    assert audit == [(OTHER, "shared-id", f"case uploaded by {DISTRICT}")]
    owners = await _rows(
        engine,
        select(orm.cases.c.origin_center, func.count())
        .where(orm.cases.c.origin_case_id == "shared-id")
        .group_by(orm.cases.c.origin_center),
    )
    assert owners == [(DISTRICT, 1)]
    # the owner's retry still answers its case
    again = await api.UploadCase(_upload("shared-id"), callers[DISTRICT])
    assert again.duplicate and again.parent_case_id == first.parent_case_id


async def test_an_upload_without_a_child_case_id_is_refused_before_anything_is_written(
    engine: AsyncEngine, callers: dict[str, Caller]
) -> None:
    api = _api(engine)
    for bad in ("", "x" * 65):
        with pytest.raises(InvalidArgument):
            await api.UploadCase(_upload(bad), callers[DISTRICT])
    assert await _rows(engine, select(func.count()).select_from(orm.cases)) == [(0,)]


async def test_an_uploaded_case_is_accepted_with_the_digest_of_a_query_code_only_this_node_holds(
    engine: AsyncEngine, callers: dict[str, Caller]
) -> None:
    # The applicant's code is the child's and never travels; the parent's case gets a code of its own,
    # which no reply carries, so nobody can evaluate the uploaded case here (they do at the child).
    reply = await _api(engine).UploadCase(_upload("with-digest"), callers[DISTRICT])
    assert not any("query" in f.name for f in reply.DESCRIPTOR.fields)
    [(code,)] = await _rows(
        engine, select(orm.cases.c.query_code).where(orm.cases.c.case_id == reply.parent_case_id)
    )
    payloads = [p for (p,) in await _rows(engine, select(orm.outbox.c.payload))]
    [accepted] = [
        e for e in map(events_pb2.Envelope.FromString, payloads) if e.WhichOneof("body") == "case_accepted"
    ]
    assert accepted.case_id == reply.parent_case_id
    assert accepted.case_accepted.query_code_digest == hashlib.sha256(code.encode()).hexdigest()
