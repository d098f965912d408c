"""Refusals speak Chinese too: the applicant's evaluation refusals, and every refusal of supervision,
notification, routing and the rating bounds carries a ``zh=`` text."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from services.common.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.routing import catalogue_model, org_model  # noqa: F401 - the data-file DomainErrors
from tests.unit.supervision.harness import Supervision, at
from tests.unit.supervision.test_evaluations import code_digest, concluded, rating

ROOT = Path(__file__).resolve().parents[3]
CHECKED = ("services/supervision", "services/notification", "services/routing", "services/common/ratings.py")


async def test_an_unknown_case_number(sup: Supervision) -> None:
    with pytest.raises(NotFound) as exc:
        await sup.api().SubmitEvaluation(rating("NOPE-1", 3), None)
    assert exc.value.message == "no case NOPE-1 is known here"
    assert exc.value.zh == "本中心未查到报件编号为 NOPE-1 的报件"


async def test_a_case_not_yet_concluded(sup: Supervision) -> None:
    await sup.case("ZH-1").accept(at(2025, 9, 22), "PLAN")
    with pytest.raises(FailedPrecondition) as exc:
        await sup.api().SubmitEvaluation(rating("ZH-1", 4), None)
    assert exc.value.message == "case ZH-1 is not concluded yet; it can be evaluated afterwards"
    assert exc.value.zh == "报件 ZH-1 尚未办结，办结后方可评价"


async def test_a_wrong_query_code(sup: Supervision) -> None:
    await concluded(sup, "ZH-2", query_code_digest=code_digest("K7M2P9QX"))
    with pytest.raises(PermissionDenied) as exc:
        await sup.api().SubmitEvaluation(rating("ZH-2", 5, digest=code_digest("K7M2P9QY")), None)
    assert exc.value.message == "the query code does not match this case"
    assert exc.value.zh == "查询码与该报件不符，请核对后重新输入"


async def test_a_rating_out_of_range_and_a_second_rating(sup: Supervision) -> None:
    await concluded(sup, "ZH-3")
    api = sup.api()
    with pytest.raises(InvalidArgument) as bad:
        await api.SubmitEvaluation(rating("ZH-3", 6), None)
    assert bad.value.message == "rating must be 1 (very dissatisfied) to 5 (very satisfied)"
    assert bad.value.zh == "评价等级应为 1（非常不满意）至 5（非常满意）"
    await api.SubmitEvaluation(rating("ZH-3", 5), None)
    with pytest.raises(AlreadyExists) as again:
        await api.SubmitEvaluation(rating("ZH-3", 4), None)
    assert again.value.message == "case ZH-3 has already been evaluated"
    assert again.value.zh == "报件 ZH-3 已评价过，不能重复评价"


def _error_names() -> set[str]:
    """DomainError and every subclass of it (the routing data-file errors too)."""
    names, todo = {"DomainError"}, [DomainError]
    while todo:
        for sub in todo.pop().__subclasses__():
            names.add(sub.__name__)
            todo.append(sub)
    return names


def _refusals_without_chinese(path: Path, names: set[str]) -> list[str]:
    """``file:line`` of each DomainError (subclass) built without a ``zh=`` keyword."""
    missing = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in names and not any(k.arg == "zh" for k in node.keywords):
                missing.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return missing


def test_every_refusal_has_its_chinese() -> None:
    names = _error_names()
    files = [p for c in CHECKED for p in ((ROOT / c).glob("*.py") if (ROOT / c).is_dir() else [ROOT / c])]
    assert len(files) > 40
    assert [hit for f in sorted(files) for hit in _refusals_without_chinese(f, names)] == []
