"""Intake's refusals speak Chinese too: the ones people meet most, and a guard that every one has it."""

from __future__ import annotations

import ast
import inspect
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from onestop.common.v1 import common_pb2
from onestop.intake.v1 import convenience_pb2, intake_pb2
from services.common import errors
from services.common.db import create_engine
from services.common.errors import DataLoss, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.common.outbox import Outbox, UnitOfWork, transact
from services.intake import delivery, download, handlers, orm
from services.intake.convenience import ConvenienceContext
from services.intake.documents import DocumentNotStored, LocalDocumentStore

CENTER = "210211101"
NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
INTAKE = Path(handlers.__file__).resolve().parent
CHECKED = ("handlers.py", "documents.py", "download.py", "delivery.py", "grpc_api.py", "model.py")


class Clock:
    def now(self) -> datetime:
        return NOW


class Matters:
    """Every matter asks for nothing: a submission is accepted at once."""

    async def get(self, code: str) -> handlers.MatterView:
        return handlers.MatterView(code=code, version=1, on_the_spot=False, materials=())


def _ctx() -> handlers.IntakeContext:
    return handlers.IntakeContext(center=CENTER, matters=Matters(), clock=Clock())


def _submission(name: str = "张三") -> intake_pb2.SubmitCaseRequest:
    return intake_pb2.SubmitCaseRequest(
        matter_code="JY-001",
        applicant=common_pb2.Applicant(name=name),
        channel=common_pb2.CHANNEL_COUNTER,
        submitted_by=common_pb2.Actor(username="clerk1", role="window_clerk", center=CENTER),
    )


async def test_a_submission_without_the_applicants_name() -> None:
    with pytest.raises(InvalidArgument) as exc:
        await handlers.submit_case(cast(Any, None), _ctx(), _submission(name="  "))
    assert exc.value.message == "applicant.name is required"
    assert exc.value.zh == "请填写申请人姓名"


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_an_upload_of_a_type_not_kept_or_too_large(tmp_path: Path) -> None:
    store = LocalDocumentStore(tmp_path)
    with pytest.raises(InvalidArgument) as exc:
        await store.save(_one(b"PK\x03\x04"), content_type="application/msword", max_bytes=1024)
    assert exc.value.message == "file type 'application/msword' is not accepted"
    assert exc.value.zh == "不接受此类文件（application/msword）"
    limit = 2 * 1024 * 1024
    with pytest.raises(InvalidArgument) as exc:
        await store.save(_one(b"x" * (limit + 1)), content_type="text/plain", max_bytes=limit)
    assert exc.value.message == f"document exceeds {limit} bytes"
    assert exc.value.zh == "材料文件超过大小上限（2 MB）"


def _delivery(**fields: Any) -> convenience_pb2.RecordDeliveryRequest:
    req = convenience_pb2.RecordDeliveryRequest(
        case_number=f"{CENTER}-20260302-000001",
        method="handed_over",
        receiver_name="张三",
        by=common_pb2.Actor(username="clerk1", role="window_clerk", center=CENTER),
    )
    req.confirmed_at.CopyFrom(Timestamp(seconds=int(NOW.timestamp())))
    for name, value in fields.items():
        if isinstance(value, Timestamp):
            getattr(req, name).CopyFrom(value)
        else:
            setattr(req, name, value)
    return req


@pytest.mark.parametrize(
    ("fields", "message", "zh"),
    [
        (
            {"receiver_name": " "},
            "the receiver's name is required (their confirmation)",
            "请填写签收人姓名（作为其签收确认）",
        ),
        (
            {"confirmed_at": Timestamp(seconds=int((NOW + timedelta(hours=1)).timestamp()))},
            "confirmed_at is in the future",
            "签收时间不能晚于当前时间",
        ),
        (
            {"method": "emailed"},
            "method must be one of handed_over, posted, picked_up; got 'emailed'",
            "送达方式须为当面交付、邮寄、本人领取之一",
        ),
    ],
)
async def test_a_delivery_recorded_wrongly(fields: dict[str, Any], message: str, zh: str) -> None:
    ctx = ConvenienceContext(intake=_ctx(), staff=cast(Any, None))
    with pytest.raises(InvalidArgument) as exc:
        await delivery.record_delivery(cast(Any, None), ctx, _delivery(**fields))
    assert (exc.value.message, exc.value.zh) == (message, zh)


class EmptyStore:
    """A store that has lost every document."""

    async def read(self, digest: str, *, offset: int = 0, chunk_bytes: int = 0) -> AsyncIterator[bytes]:
        raise DocumentNotStored(digest)
        yield b""  # pragma: no cover - makes this an async generator


async def test_a_document_whose_stored_copy_is_gone() -> None:
    doc = {
        "case_number": f"{CENTER}-20260302-000001",
        "digest": "ab" * 32,
        "filename": "营业执照.pdf",
        "content_type": "application/pdf",
        "material_code": "M1",
        "size": 10,
    }
    with pytest.raises(DataLoss) as exc:
        await anext(download.stream_document(cast(Any, EmptyStore()), doc))
    assert exc.value.message == (
        "the stored copy of document abababababab… is missing; "
        "it cannot be served until it is restored from the applicant or a backup"
    )
    assert exc.value.zh == "材料“营业执照.pdf”的存储副本已丢失，须请申请人重新提交或从备份恢复后才能调阅"


@pytest.mark.postgres
async def test_the_applicants_query_code_and_a_second_withdrawal(postgres_db: str) -> None:
    engine = create_engine(postgres_db)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(orm.metadata.create_all)
        outbox = Outbox(orm.outbox)
        ctx = _ctx()

        async def run(fn: Any) -> Any:
            return await transact(lambda: UnitOfWork(engine, outbox), fn)

        row, _ = await run(lambda uow: handlers.submit_case(uow, ctx, _submission()))
        async with engine.connect() as conn:
            case = await handlers.track_case(conn, f"{CENTER}-20260302-000001", row["query_code"])
        number = case["case_number"]
        assert number == f"{CENTER}-20260302-000001"

        async with engine.connect() as conn:
            with pytest.raises(NotFound) as nf:
                await handlers.track_case(conn, number, "WRONG234")
        assert nf.value.message == "no case with this number and query code"
        assert nf.value.zh == "未找到报件编号与查询码相符的报件"

        withdraw = intake_pb2.WithdrawCaseRequest(
            case_id=case["case_id"], query_code="WRONG234", reason="不办了"
        )
        with pytest.raises(PermissionDenied) as pd:
            await run(lambda uow: handlers.withdraw_case(uow, ctx, withdraw))
        assert pd.value.message == "the query code does not match this case"
        assert pd.value.zh == "查询码与该报件不符"

        withdraw.query_code = case["query_code"]
        await run(lambda uow: handlers.withdraw_case(uow, ctx, withdraw))
        with pytest.raises(FailedPrecondition) as fp:
            await run(lambda uow: handlers.withdraw_case(uow, ctx, withdraw))
        assert fp.value.message == f"case {number} is already concluded and cannot be withdrawn"
        assert fp.value.zh == f"报件 {number} 已办结，不能撤回"
    finally:
        await engine.dispose()


def _domain_errors() -> set[str]:
    return {
        name
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.DomainError)
    }


def refusals_without_chinese(source: str, names: set[str]) -> list[int]:
    """Lines where a DomainError (subclass) is built without a `zh=` text."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            if name in names and not any(k.arg == "zh" for k in node.keywords):
                lines.append(node.lineno)
    return lines


def test_the_guard_notices_a_refusal_without_chinese() -> None:
    names = _domain_errors()
    assert refusals_without_chinese('raise errors.NotFound("x")\nraise NotFound("y", zh="无")', names) == [1]


@pytest.mark.parametrize("filename", CHECKED)
def test_every_refusal_has_its_chinese(filename: str) -> None:
    missing = refusals_without_chinese((INTAKE / filename).read_text(encoding="utf-8"), _domain_errors())
    assert not missing, f"services/intake/{filename}: refusals without zh= at lines {missing}"
