"""Who is told what: applicants, their agents and the staff queues, with reasons for every skip."""

from __future__ import annotations

from services.notification.audience import plan
from services.notification.model import EMAIL, INBOX, NONE, NOTICE, SMS, Channels, TaskInfo
from tests.unit.notification.factories import BOTH, applicant, fact, ids

TASK = TaskInfo(task_id="t-1", case_number="210200-20261126-0001", department="PLAN", window="W-PLAN-1")


def _by_channel(outs: list) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for o in outs:
        grouped.setdefault(o.channel, []).append(o)
    return grouped


def test_acceptance_reaches_the_applicant_by_inbox_sms_and_email() -> None:
    outs = plan(fact("case_accepted"), recipient=applicant(), task=None, channels=BOTH)
    by = _by_channel(outs)
    assert [o.recipient for o in by[INBOX]] == ["case:210200-20261126-0001"]
    assert by[SMS][0].address == "13812345678" and not by[SMS][0].skip_reason
    assert by[EMAIL][0].address == "wang@example.com"
    assert NOTICE not in by


def test_the_agent_acting_for_the_applicant_gets_a_copy_in_their_inbox() -> None:
    outs = plan(
        fact("case_delivered", {"method": "posted"}),
        recipient=applicant(agent="agent.li"),
        task=None,
        channels=BOTH,
    )
    assert {o.recipient for o in outs if o.channel == INBOX} == {
        "case:210200-20261126-0001",
        "staff:agent.li",
    }


def test_rejection_brings_a_decision_letter_and_an_evaluation_invitation() -> None:
    outs = plan(
        fact("case_concluded", {"outcome": "OUTCOME_REJECTED", "reasons": ["不符合规划"]}),
        recipient=applicant(),
        task=None,
        channels=BOTH,
        new_id=ids(),
    )
    assert {o.kind for o in outs} == {"decision", "evaluation_invitation"}
    letter = [o for o in outs if o.kind == "decision"]
    assert {o.notice_id for o in letter} == {"00000000-0000-0000-0000-000000000001"}
    assert letter[0].context["reasons"] == ["不符合规划"]
    assert [o.notice_kind for o in letter if o.channel == NOTICE] == ["decision"]


def test_a_result_from_the_parent_center_brings_the_decision_letter_at_the_child() -> None:
    sealed = {"decision": {"center": "210200", "reasons": ["符合条件"], "decided_by": "chief.econ"}}
    outs = plan(
        fact("parent_result_received", {"outcome": "OUTCOME_APPROVED", "sealed": sealed}),
        recipient=applicant(),
        task=None,
        channels=BOTH,
        new_id=ids(),
    )
    assert {o.kind for o in outs} == {"decision", "evaluation_invitation"}
    letter = [o for o in outs if o.kind == "decision"]
    assert letter[0].context["reasons"] == ["符合条件"]
    assert [o.notice_kind for o in letter if o.channel == NOTICE] == ["decision"]
    assert {o.channel for o in letter} >= {SMS, EMAIL}


def test_withdrawn_case_tells_the_applicant_nothing() -> None:
    assert (
        plan(
            fact("case_concluded", {"outcome": "OUTCOME_WITHDRAWN"}),
            recipient=applicant(),
            task=None,
            channels=BOTH,
        )
        == []
    )


def test_refused_extension_is_not_announced_but_an_approved_one_is_in_writing() -> None:
    refused = plan(
        fact("extension_decided", {"approved": False, "days": 5}),
        recipient=applicant(),
        task=TASK,
        channels=BOTH,
    )
    approved = plan(
        fact("extension_decided", {"approved": True, "days": 5, "reason": "专家评审"}),
        recipient=applicant(),
        task=TASK,
        channels=BOTH,
    )
    assert refused == []
    assert {o.notice_kind for o in approved} == {"extension"}
    assert approved[0].context["department"] == "PLAN"


def test_missing_contact_and_unconfigured_channels_are_skipped_with_reasons() -> None:
    outs = plan(
        fact("case_accepted"),
        recipient=applicant(phone="", email="wang@example.com"),
        task=None,
        channels=Channels(sms=True, email=False),
    )
    by = _by_channel(outs)
    assert by[SMS][0].skip_reason == "no mobile number given"
    assert by[EMAIL][0].skip_reason == "email channel not configured (ONESTOP_SMTP_HOST is not set)"
    assert not by[INBOX][0].skip_reason


def test_unknown_case_still_gets_its_inbox_but_no_sms_or_email() -> None:
    outs = plan(fact("case_delivered", {"method": "online"}), recipient=None, task=None, channels=BOTH)
    by = _by_channel(outs)
    assert not by[INBOX][0].skip_reason
    assert "no contact known" in by[SMS][0].skip_reason and "no contact known" in by[EMAIL][0].skip_reason


def test_case_uploaded_by_a_child_center_is_told_by_that_center() -> None:
    outs = plan(
        fact("case_accepted"),
        recipient=applicant(direct=False, origin_center="210211"),
        task=None,
        channels=BOTH,
    )
    assert all("center 210211" in o.skip_reason for o in outs if o.channel in (SMS, EMAIL))


def test_pre_review_supplement_without_a_case_number_is_recorded_as_handed_over() -> None:
    outs = plan(
        fact("supplement_requested", {"items": [{"material_code": "M"}]}, case_number=""),
        recipient=None,
        task=None,
        channels=BOTH,
    )
    assert [(o.channel, bool(o.skip_reason)) for o in outs] == [(NONE, True)]


def test_new_task_goes_to_its_windows_queue() -> None:
    data = {"task": {"task_id": "t-1", "department": "PLAN", "window": "W-PLAN-1", "key_project": True}}
    outs = plan(fact("task_opened", data), recipient=None, task=None, channels=BOTH)
    assert [(o.channel, o.recipient) for o in outs] == [(INBOX, "window:W-PLAN-1")]
    assert outs[0].context["key_project"] is True


def test_red_warning_reaches_the_window_and_the_department_head() -> None:
    data = {
        "task_id": "t-1",
        "department": "PLAN",
        "level": "CLOCK_STATE_RED",
        "due_at": "2026-11-25T09:00:00Z",
    }
    outs = plan(fact("clock_warned", data), recipient=None, task=TASK, channels=BOTH)
    assert [o.recipient for o in outs] == ["window:W-PLAN-1", "head:PLAN"]
    assert outs[0].context["level"] == "red"


def test_warning_for_an_unknown_task_still_reaches_the_head_and_records_the_gap() -> None:
    data = {"task_id": "t-9", "department": "FIRE", "level": "CLOCK_STATE_YELLOW"}
    outs = plan(fact("clock_warned", data), recipient=None, task=None, channels=BOTH)
    assert [(o.channel, o.recipient) for o in outs] == [(NONE, "window:"), (INBOX, "head:FIRE")]
    assert "task t-9 unknown" in outs[0].skip_reason


def test_green_clock_states_are_not_warnings() -> None:
    data = {"task_id": "t-1", "department": "PLAN", "level": "CLOCK_STATE_GREEN"}
    assert plan(fact("clock_warned", data), recipient=None, task=TASK, channels=BOTH) == []


def test_extension_request_goes_to_the_department_head_and_key_project_to_its_tracker() -> None:
    ext = plan(
        fact("extension_requested", {"task_id": "t-1", "days": 5, "by": {"username": "clerk"}}),
        recipient=None,
        task=TASK,
        channels=BOTH,
    )
    key = plan(
        fact("key_project_designated", {"tracker": "tracker.zhao"}),
        recipient=applicant(),
        task=None,
        channels=BOTH,
    )
    assert [o.recipient for o in ext] == ["head:PLAN"]
    assert [o.recipient for o in key] == ["staff:tracker.zhao"]


SHORT = {
    "reconciliation_id": "7",
    "day": "2025-11-20",
    "collector": "fee2",
    "expected": "200.50",
    "declared": "200.00",
    "difference": "-0.50",
    "entries": 1,
    "by": {"username": "fee2", "display_name": "赵金凤"},
    "supervisors": ["director.ycz", "supervisor.ycz"],
}


def test_a_reconciliation_that_does_not_balance_warns_each_supervisor_in_their_inbox() -> None:
    outs = plan(
        fact("fee_reconciliation_failed", SHORT, case_number=""), recipient=None, task=None, channels=BOTH
    )
    assert [(o.channel, o.recipient) for o in outs] == [
        (INBOX, "staff:director.ycz"),
        (INBOX, "staff:supervisor.ycz"),
    ]
    assert outs[0].context["difference"] == "-0.50" and outs[0].context["reconciled_by"] == "赵金凤"


def test_a_discrepancy_at_a_center_without_supervisors_is_recorded_as_untold() -> None:
    data = {**SHORT, "supervisors": []}
    (out,) = plan(
        fact("fee_reconciliation_failed", data, case_number=""), recipient=None, task=None, channels=BOTH
    )
    assert out.channel == NONE and "no director or supervisor" in out.skip_reason
