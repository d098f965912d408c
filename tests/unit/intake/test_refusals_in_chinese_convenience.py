"""Convenience, fees and interconnect refusals speak Chinese too (DomainError.zh), the English unchanged."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import pytest

from onestop.common.v1 import common_pb2
from onestop.intake.v1 import convenience_pb2 as pb
from services.common import errors
from services.common.db import create_engine
from services.common.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.common.outbox import Outbox, UnitOfWork, transact
from services.intake import convenience, fees_handlers, orm
from services.intake.convenience import ConvenienceContext
from services.intake.convenience_staff import Grant
from tests.unit.intake.test_fees_ledger import CENTER, Clock, Intake, Staff, actor, charge

INTAKE = Path(__file__).resolve().parents[3] / "services" / "intake"
FILES = (
    "convenience.py",
    "convenience_staff.py",
    "fees.py",
    "fees_handlers.py",
    "received_documents.py",
    "interconnect_api.py",
    "bootstrap.py",
    "feed.py",
    "link_status.py",
    "interconnect_uploads.py",
    "consumers.py",
)


class AgentStaff(Staff):
    """The ledger's staff, and one agent at service point SP-01."""

    async def grants(self, center: str, role: str) -> list[Grant]:
        if role == "agent":
            return [Grant("agent1", "agent1", role, center, "SP-01")]
        return await super().grants(center, role)


@pytest.fixture
async def ledger(postgres_db: str) -> Any:
    engine = create_engine(postgres_db)
    async with engine.begin() as conn:
        await conn.run_sync(orm.metadata.create_all)
    ctx = ConvenienceContext(intake=Intake(Clock()), staff=AgentStaff())  # type: ignore[arg-type]
    outbox = Outbox(orm.outbox)
    yield ctx, lambda fn: transact(lambda: UnitOfWork(engine, outbox), fn)
    await engine.dispose()


@pytest.mark.postgres
async def test_a_bad_amount_and_a_stranger_are_refused_in_chinese(ledger: Any) -> None:
    ctx, run = ledger
    with pytest.raises(InvalidArgument) as bad:
        await run(lambda uow: fees_handlers.collect(uow, ctx, charge("1.005")))
    assert bad.value.message == "amount has more than two decimals: '1.005'"
    assert bad.value.zh == "金额最多保留两位小数（填写的是 1.005）"
    with pytest.raises(PermissionDenied) as stranger:
        await run(lambda uow: fees_handlers.collect(uow, ctx, charge("1.00", "stranger")))
    assert stranger.value.message == f"stranger is not a fee_collector of center {CENTER}"
    assert stranger.value.zh == f"stranger 不是中心 {CENTER} 的收费员"


@pytest.mark.postgres
async def test_refunding_too_much_and_voiding_a_refunded_receipt_are_refused_in_chinese(ledger: Any) -> None:
    ctx, run = ledger
    paid = await run(lambda uow: fees_handlers.collect(uow, ctx, charge("100.00")))
    receipt = paid["receipt_number"]

    def refund(amount: str) -> Any:
        req = pb.RefundFeeRequest(receipt_number=receipt, amount=amount, reason="多收", by=actor("fee1"))
        return run(lambda uow: fees_handlers.refund(uow, ctx, req))

    with pytest.raises(FailedPrecondition) as much:
        await refund("120.00")
    assert much.value.message == (
        f"refund of 120.00 exceeds what remains refundable of receipt {receipt}: 100.00"
    )
    assert much.value.zh == f"退费金额 120.00 元超过票据 {receipt} 尚可退还的 100.00 元"
    await refund("30.00")
    void = pb.VoidFeeRequest(receipt_number=receipt, reason="开错", by=actor("fee1"))
    with pytest.raises(FailedPrecondition) as voided:
        await run(lambda uow: fees_handlers.void(uow, ctx, void))
    assert voided.value.message == f"receipt {receipt} already has a refund; it cannot be voided"
    assert voided.value.zh == f"票据 {receipt} 已有退费记录，不能作废"


@pytest.mark.postgres
async def test_only_collectors_and_the_director_reconcile_in_chinese_too(ledger: Any) -> None:
    ctx, run = ledger
    req = pb.ReconcileRequest(day="2026-03-02", declared="0", by=actor("liaison", "liaison_officer"))
    with pytest.raises(PermissionDenied) as exc:
        await run(lambda uow: fees_handlers.reconcile(uow, ctx, req))
    assert exc.value.message == "a fee collector or the center director reconciles"
    assert exc.value.zh == "只有收费员或中心主任可以办理收费日对账"


@pytest.mark.postgres
async def test_an_agent_of_another_service_point_and_an_unknown_case_are_refused_in_chinese(
    ledger: Any,
) -> None:
    ctx, run = ledger
    take = pb.TakeMatterRequest(
        service_point="SP-02",
        agent=common_pb2.Actor(username="agent1", role="agent", center=CENTER),
        resident=common_pb2.Applicant(name="王五"),
        matter_code="CV-006",
    )
    with pytest.raises(PermissionDenied) as elsewhere:
        await run(lambda uow: convenience.take_matter(uow, ctx, take))
    assert elsewhere.value.message == "agent1 is not a agent of service point SP-02"
    assert elsewhere.value.zh == "agent1 不是便民服务点 SP-02 的代办员"
    nameless = pb.TakeMatterRequest(service_point="SP-01", matter_code="CV-006", agent=take.agent)
    with pytest.raises(InvalidArgument) as unnamed:
        await run(lambda uow: convenience.take_matter(uow, ctx, nameless))
    assert (unnamed.value.message, unnamed.value.zh) == ("resident.name is required", "请填写申请人姓名")
    assign = pb.AssignAgentRequest(
        case_number="2026-0001", agent=take.agent, by=actor("liaison", "liaison_officer")
    )
    with pytest.raises(NotFound) as unknown:
        await run(lambda uow: convenience.assign_agent(uow, ctx, assign))
    assert (unknown.value.message, unknown.value.zh) == ("no case 2026-0001", "未找到报件 2026-0001")


def _refusals_without_chinese(source: str, kinds: set[str]) -> list[int]:
    """Lines where a DomainError (subclass) is built without a non-empty zh= keyword."""
    tree = ast.parse(source)
    kinds = kinds | {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and any(getattr(b, "id", "") in kinds for b in node.bases)
    }
    missing = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            zh = [k.value for k in node.keywords if k.arg == "zh"]
            if name in kinds and (not zh or (isinstance(zh[0], ast.Constant) and not zh[0].value)):
                missing.append(node.lineno)
    return missing


def test_every_refusal_in_these_files_has_its_chinese() -> None:
    kinds = {
        name for name, cls in inspect.getmembers(errors, inspect.isclass) if issubclass(cls, DomainError)
    }
    assert _refusals_without_chinese("raise NotFound('x')\nraise NotFound('y', zh='无')\n", kinds) == [1]
    missing = {
        name: lines
        for name in FILES
        if (lines := _refusals_without_chinese((INTAKE / name).read_text(encoding="utf-8"), kinds))
    }
    assert missing == {}, f"refusals without zh= (services/intake/<file>: lines): {missing}"
