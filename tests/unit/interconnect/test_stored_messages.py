"""The uploader reads applicants, actors and documents back from their stored JSON exactly as
`json_format.ParseDict` would, only cheaper."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format

from onestop.common.v1 import common_pb2
from services.intake.convert import to_json
from services.intake.uploader import flat_message

CS = common_pb2


def _parsed(cls: Any, stored: dict[str, Any]) -> Any:
    return json_format.ParseDict(stored, cls(), ignore_unknown_fields=True)


@pytest.mark.parametrize(
    "msg",
    [
        CS.Applicant(
            kind=CS.APPLICANT_KIND_COMPANY,
            name="大连某公司",
            id_number="9121",
            phone="138",
            language="en",
        ),
        CS.Applicant(name="张三"),
        CS.Applicant(),
        CS.Actor(username="clerk.gjz", role="window_clerk", center="210211", department="PLAN"),
        CS.Document(
            material_code="FORM",
            digest="a" * 64,
            filename="申请表.pdf",
            content_type="application/pdf",
            size=2**40,
        ),
        CS.Document(digest="b" * 64),
    ],
)
def test_a_stored_message_reads_back_as_parse_dict_reads_it(msg: Any) -> None:
    stored = to_json(msg)
    assert flat_message(type(msg), stored) == _parsed(type(msg), stored) == msg


def test_unknown_keys_and_values_are_ignored_and_nested_ones_go_to_parse_dict() -> None:
    stored = {"name": "张三", "kind": "APPLICANT_KIND_FROM_THE_FUTURE", "added_later": 1}
    assert flat_message(CS.Applicant, stored) == _parsed(CS.Applicant, stored) == CS.Applicant(name="张三")
    assert flat_message(CS.Applicant, None) == CS.Applicant()
    assert flat_message(CS.Actor, {"username": "u", "extra": {"a": 1}}) == CS.Actor(username="u")
    case = CS.Case(case_id="c", documents=[CS.Document(digest="a" * 64, size=3)])
    assert flat_message(CS.Case, to_json(case)) == case  # a list field: parsed by ParseDict
