"""Who is told what: from one fact to the messages it causes, per recipient and channel."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from services.notification.model import (
    DEFAULT_LANGUAGE,
    EMAIL,
    INBOX,
    NONE,
    NOTICE,
    SMS,
    Channels,
    Fact,
    Outgoing,
    Recipient,
    TaskInfo,
    language_of,
)

IdFactory = Callable[[], str]
_OUTCOMES = {
    "OUTCOME_APPROVED": "approved",
    "OUTCOME_REJECTED": "rejected",
    "OUTCOME_DEEMED_APPROVED": "deemed_approved",
}
_LEVELS = {"CLOCK_STATE_YELLOW": "yellow", "CLOCK_STATE_RED": "red"}


@dataclass(frozen=True)
class Situation:
    """What a planner knows besides the fact: the case's applicant, the task, the channels."""

    fact: Fact
    recipient: Recipient | None
    task: TaskInfo | None
    channels: Channels
    new_id: IdFactory


def get(data: Mapping[str, Any], *path: str, default: Any = "") -> Any:
    """A nested field of a fact's data, or `default` when any step is missing."""
    value: Any = data
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return default
        value = value[key]
    return value


def plan(
    fact: Fact,
    *,
    recipient: Recipient | None,
    task: TaskInfo | None,
    channels: Channels,
    new_id: IdFactory = lambda: str(uuid.uuid4()),
) -> list[Outgoing]:
    """Every message `fact` causes (skipped ones included, each with its reason)."""
    planner = PLANNERS.get(fact.kind)
    if planner is None:
        return []
    return planner(Situation(fact, recipient, task, channels, new_id))


# --- the applicant (and the agent acting for them) ---------------------------------------------


def _base_context(s: Situation, language: str) -> dict[str, Any]:
    r = s.recipient
    fallback = "申请人" if language == DEFAULT_LANGUAGE else "Applicant"
    return {
        "case_number": s.fact.case_number,
        "applicant_name": (r.name if r and r.name else fallback),
        "title": r.title if r else "",
        "matter_code": r.matter_code if r else "",
        "at": s.fact.at.isoformat(),
        "parent_center": "",  # set when it happened at a center above this one
    }


def to_applicant(
    s: Situation, kind: str, extra: Mapping[str, Any], *, notice_kind: str = ""
) -> list[Outgoing]:
    """The applicant's copies of one message: written notice, web inbox, SMS, e-mail, agent's inbox."""
    case = s.fact.case_number
    r = s.recipient
    if not case:
        reason = "the case has no number yet (before acceptance); the window hands the notice over in person"
        return [Outgoing(kind, NONE, "case:", "", DEFAULT_LANGUAGE, {}, skip_reason=reason)]
    language = language_of(r.language) if r else DEFAULT_LANGUAGE
    notice_id = s.new_id() if notice_kind else ""
    context = _base_context(s, language) | dict(extra)
    context["notice_no"] = notice_id[:8].upper() if notice_id else ""
    target = f"case:{case}"

    def one(channel: str, address: str, skip: str = "", who: str = target) -> Outgoing:
        return Outgoing(kind, channel, who, address, language, context, notice_kind, notice_id, skip)

    out = [one(INBOX, target)]
    if notice_kind:
        out.insert(0, one(NOTICE, target))
    if r is None:
        why = f"no contact known for case {case}: its acceptance was not received here"
        out += [one(SMS, "", why), one(EMAIL, "", why)]
    elif not r.direct:
        why = f"case uploaded by center {r.origin_center}; that center tells its applicant"
        out += [one(SMS, "", why), one(EMAIL, "", why)]
    else:
        out.append(_outward(one, SMS, r.phone, s.channels.sms, "no mobile number given", "ONESTOP_SMS_URL"))
        out.append(
            _outward(one, EMAIL, r.email, s.channels.email, "no e-mail address given", "ONESTOP_SMTP_HOST")
        )
    if r is not None and r.agent:
        out.append(one(INBOX, f"staff:{r.agent}", who=f"staff:{r.agent}"))
    return out


def _outward(
    one: Callable[..., Outgoing], channel: str, address: str, configured: bool, missing: str, setting: str
) -> Outgoing:
    if not address.strip():
        return one(channel, "", missing)
    if not configured:
        return one(channel, address, f"{channel} channel not configured ({setting} is not set)")
    return one(channel, address.strip())


def _accepted(s: Situation) -> list[Outgoing]:
    return to_applicant(
        s, "case_accepted", {"on_the_spot": bool(get(s.fact.data, "on_the_spot", default=False))}
    )


def _items(data: Mapping[str, Any]) -> list[dict[str, str]]:
    return [
        {
            "material_code": str(i.get("material_code", "")),
            "reason": str(i.get("reason", "")),
            "department": str(i.get("department", "")),
        }
        for i in get(data, "items", default=[])
    ]


def _supplement(s: Situation) -> list[Outgoing]:
    data = s.fact.data
    during = s.fact.kind == "supplement_round_opened" or bool(get(data, "during_review", default=False))
    extra = {
        "items": _items(data),
        "round": int(get(data, "round", default=0) or 0),
        "during_review": during,
        # Raised during review at the parent center and passed down the interconnect.
        "parent_center": get(data, "parent_center"),
    }
    return to_applicant(s, "supplement_notice", extra, notice_kind="supplement")


def _department(s: Situation, fallback: str = "") -> str:
    return s.task.department if s.task else (get(s.fact.data, "department") or fallback)


def _extension_decided(s: Situation) -> list[Outgoing]:
    data = s.fact.data
    if not get(data, "approved", default=False):
        return []
    extra = {
        "days": int(get(data, "days", default=0) or 0),
        "reason": get(data, "reason"),
        "department": _department(s, get(data, "by", "department")),
        "decided_by": get(data, "by", "display_name") or get(data, "by", "username"),
    }
    return to_applicant(s, "extension_approved", extra, notice_kind="extension")


def _special_procedure_started(s: Situation) -> list[Outgoing]:
    """The applicant is told in writing how long a hearing, testing ... will take (行政许可法 Art. 45)."""
    data = s.fact.data
    extra = {
        "procedure": get(data, "procedure"),
        "reason": get(data, "reason"),
        "expected_days": int(get(data, "expected_days", default=0) or 0),
        "expected_end": get(data, "expected_end"),
        "department": _department(s, get(data, "department")),
    }
    return to_applicant(s, "special_procedure_started", extra, notice_kind="special_procedure")


def _parent_notice(s: Situation) -> list[Outgoing]:
    """A case decided above: its parent center approved an extension, started a special procedure or deemed a
    task approved, and left the written notice to this center, which took the case in (see to_applicant).
    The notice is the one this center would write itself, naming the center where it happened."""
    data = s.fact.data
    what = get(data, "kind")
    above = {"parent_center": get(data, "raised_at_center") or get(data, "parent_center")}
    department = get(data, "department")
    if what == "extension_approved":
        extra = {
            "days": int(get(data, "days", default=0) or 0),
            "reason": get(data, "reason"),
            "department": department,
            "decided_by": get(data, "decided_by"),
        }
        return to_applicant(s, "extension_approved", above | extra, notice_kind="extension")
    if what == "special_procedure_started":
        extra = {
            "procedure": get(data, "procedure"),
            "reason": get(data, "reason"),
            "expected_days": int(get(data, "expected_days", default=0) or 0),
            "expected_end": get(data, "expected_end"),
            "department": department,
        }
        return to_applicant(s, "special_procedure_started", above | extra, notice_kind="special_procedure")
    if what == "task_deemed_approved":
        extra = {"department": department, "urged_at": get(data, "urged_at"), "task_id": ""}
        return to_applicant(s, "task_deemed_approved", above | extra, notice_kind="deemed_approval")
    return []  # special_procedure_ended: the case page shows it; the applicant was told how long it takes


def _concluded(s: Situation) -> list[Outgoing]:
    data = s.fact.data
    outcome = _OUTCOMES.get(get(data, "outcome"))
    if outcome is None:  # withdrawn (or unknown): the applicant chose to stop; nothing to tell
        return []
    if get(data, "preliminary_review", default=False) and outcome != "rejected":
        # This center's preliminary review passed: no decision yet, the parent center decides (R3).
        return to_applicant(s, "preliminary_review_passed", {"outcome": outcome})
    seal = get(data, "sealed", default={})
    above = ""
    if s.fact.kind == "parent_result_received":
        # The center that decided: the sealed decision names it. It is the parent itself, or a center
        # further up when the parent only passed the case on (a province matter from a district).
        above = get(seal, "decision", "center") or get(data, "parent_center")
    # A result from the parent center carries its reasons inside the parent's sealed decision.
    reasons = get(data, "reasons", default=[]) or get(seal, "decision", "reasons", default=[])
    extra = {
        # Set when the decision was taken above this center and came down the interconnect.
        "parent_center": above,
        "outcome": outcome,
        "reasons": [str(r) for r in reasons],
        "seal_key_id": get(seal, "seal", "key_id"),
        "seal_algorithm": get(seal, "seal", "algorithm"),
        "seal_signature": get(seal, "seal", "signature"),
        "decided_by": get(seal, "decision", "decided_by"),
    }
    letter = to_applicant(s, "decision", extra, notice_kind="decision")
    return letter + to_applicant(s, "evaluation_invitation", {"outcome": outcome})


def _task_deemed(s: Situation) -> list[Outgoing]:
    data = s.fact.data
    extra = {"department": _department(s), "urged_at": get(data, "urged_at"), "task_id": get(data, "task_id")}
    return to_applicant(s, "task_deemed_approved", extra, notice_kind="deemed_approval")


def _delivered(s: Situation) -> list[Outgoing]:
    data = s.fact.data
    return to_applicant(
        s, "case_delivered", {"method": get(data, "method"), "receiver": get(data, "receiver")}
    )


# --- staff ----------------------------------------------------------------------------------------


def to_staff(
    s: Situation, kind: str, targets: list[tuple[str, str]], extra: Mapping[str, Any]
) -> list[Outgoing]:
    """Inbox messages to staff queues; a target with no name is recorded as skipped with its reason."""
    context = {"case_number": s.fact.case_number, "at": s.fact.at.isoformat()} | dict(extra)
    out = []
    for recipient, missing in targets:
        skip = missing if recipient.endswith(":") else ""
        out.append(
            Outgoing(
                kind,
                NONE if skip else INBOX,
                recipient,
                recipient,
                DEFAULT_LANGUAGE,
                context,
                skip_reason=skip,
            )
        )
    return out


def _window_target(s: Situation, window: str = "") -> tuple[str, str]:
    window = window or (s.task.window if s.task else "")
    task_id = get(s.fact.data, "task_id") or (s.task.task_id if s.task else "")
    return f"window:{window}", f"window of task {task_id} unknown (its task_opened was not received)"


def _head_target(department: str) -> tuple[str, str]:
    return f"head:{department}", "the event names no department"


def _task_opened(s: Situation) -> list[Outgoing]:
    t = get(s.fact.data, "task", default={})
    extra = {
        "task_id": get(t, "task_id"),
        "department": get(t, "department"),
        "window": get(t, "window"),
        "matter_code": get(t, "matter_code"),
        "key_project": bool(get(t, "key_project", default=False)),
        "due_at": get(t, "due_at"),
    }
    target = (f"window:{extra['window']}", f"task {extra['task_id']} names no window")
    return to_staff(s, "task_opened", [target], extra)


def _clock_warned(s: Situation) -> list[Outgoing]:
    data = s.fact.data
    level = _LEVELS.get(get(data, "level"))
    if level is None:
        return []
    department = _department(s)
    extra = {
        "level": level,
        "department": department,
        "task_id": get(data, "task_id"),
        "due_at": get(data, "due_at"),
    }
    return to_staff(s, "clock_warned", [_window_target(s), _head_target(department)], extra)


def _urged(s: Situation) -> list[Outgoing]:
    data = s.fact.data
    department = _department(s)
    extra = {"department": department, "task_id": get(data, "task_id"), "due_at": get(data, "due_at")}
    return to_staff(s, "task_urged", [_window_target(s), _head_target(department)], extra)


def _extension_requested(s: Situation) -> list[Outgoing]:
    data = s.fact.data
    department = _department(s, get(data, "by", "department"))
    extra = {
        "department": department,
        "task_id": get(data, "task_id"),
        "extension_id": get(data, "extension_id"),
        "days": int(get(data, "days", default=0) or 0),
        "reason": get(data, "reason"),
        "requested_by": get(data, "by", "display_name") or get(data, "by", "username"),
    }
    return to_staff(s, "extension_requested", [_head_target(department)], extra)


def _key_project(s: Situation) -> list[Outgoing]:
    data = s.fact.data
    extra = {
        "promised_deadline": get(data, "promised_deadline"),
        "designated_by": get(data, "designated_by", "display_name") or get(data, "designated_by", "username"),
        "title": s.recipient.title if s.recipient else "",
    }
    target = (f"staff:{get(data, 'tracker')}", "no tracker was named for the key project")
    return to_staff(s, "key_project_designated", [target], extra)


def _fee_reconciliation_failed(s: Situation) -> list[Outgoing]:
    data = s.fact.data
    extra = {
        "day": get(data, "day"),
        "collector": get(data, "collector"),
        "expected": get(data, "expected"),
        "declared": get(data, "declared"),
        "difference": get(data, "difference"),
        "entries": int(get(data, "entries", default=0) or 0),
        "reconciled_by": get(data, "by", "display_name") or get(data, "by", "username"),
        "reconciliation_id": str(get(data, "reconciliation_id")),
    }
    told = [str(u) for u in get(data, "supervisors", default=[]) if u]
    missing = "the center has no director or supervisor to warn; the discrepancy stays on the day's report"
    targets = [(f"staff:{u}", "") for u in told] or [("staff:", missing)]
    return to_staff(s, "fee_reconciliation_failed", targets, extra)


PLANNERS: dict[str, Callable[[Situation], list[Outgoing]]] = {
    "case_accepted": _accepted,
    "supplement_requested": _supplement,
    "supplement_round_opened": _supplement,
    "extension_decided": _extension_decided,
    "special_procedure_started": _special_procedure_started,
    "case_concluded": _concluded,
    # A case decided above concludes here when the parent's result arrives: the parent leaves telling
    # the applicant to the center that uploaded it (see to_applicant), so this center must.
    "parent_result_received": _concluded,
    "task_deemed_approved": _task_deemed,
    "parent_notice_received": _parent_notice,
    "case_delivered": _delivered,
    "task_opened": _task_opened,
    "clock_warned": _clock_warned,
    "task_urged": _urged,
    "extension_requested": _extension_requested,
    "key_project_designated": _key_project,
    "fee_reconciliation_failed": _fee_reconciliation_failed,
}
