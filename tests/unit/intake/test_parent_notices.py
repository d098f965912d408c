"""A parent's notice reaches the child's event, and the next child down, with every field it carries."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from onestop.events.v1 import events_pb2
from onestop.interconnect.v1 import interconnect_pb2
from services.intake import federation
from services.intake.watcher import _notice_received


def _extension_and_procedure() -> interconnect_pb2.ResultUpdate:
    return interconnect_pb2.ResultUpdate(
        kind="special_procedure_started",
        department="PLAN",
        extension_days=10,
        reason="现场踏勘",
        decided_by="规划局负责人",
        procedure="expert_review",
        expected_days=15,
        expected_end=Timestamp(seconds=1_767_000_000),
        procedure_result="passed",
        urged_at=Timestamp(seconds=1_766_000_000),
    )


def test_the_relayed_update_keeps_every_notice_field_and_nothing_else() -> None:
    upd = _extension_and_procedure()
    out = federation.notice_details(upd)
    assert (out.extension_days, out.reason, out.decided_by, out.procedure) == (
        10,
        "现场踏勘",
        "规划局负责人",
        "expert_review",
    )
    assert (out.expected_days, out.procedure_result) == (15, "passed")
    assert out.expected_end.seconds == 1_767_000_000 and out.urged_at.seconds == 1_766_000_000
    assert (out.kind, out.department) == ("", "")  # the relay sets its own


def test_unset_instants_stay_unset_down_the_chain() -> None:
    out = federation.notice_details(
        interconnect_pb2.ResultUpdate(kind="extension_approved", extension_days=5)
    )
    assert not out.HasField("expected_end") and not out.HasField("urged_at")
    body = _notice_received("210200", "210200", interconnect_pb2.ResultUpdate(extension_days=5))
    assert not body.HasField("expected_end") and not body.HasField("urged_at") and body.days == 5


def test_the_childs_event_names_the_center_and_carries_the_notice() -> None:
    body = _notice_received("210000", "210200", _extension_and_procedure())
    assert (body.parent_center, body.raised_at_center, body.kind, body.department) == (
        "210000",
        "210200",
        "special_procedure_started",
        "PLAN",
    )
    assert (body.days, body.reason, body.decided_by, body.result) == (
        10,
        "现场踏勘",
        "规划局负责人",
        "passed",
    )
    assert body.expected_end.seconds == 1_767_000_000 and body.urged_at.seconds == 1_766_000_000


def test_every_field_of_the_event_is_filled_from_the_update() -> None:
    """A field added to ParentNoticeReceived must be mapped, or the applicant's notice would lack it."""
    named = {"parent_center", "raised_at_center", "kind", "department"}
    mapped = {target for _, target in federation.NOTICE_FIELDS}
    assert {f.name for f in events_pb2.ParentNoticeReceived.DESCRIPTOR.fields} == named | mapped
