"""The applicant of a forwarded case hears from their own center when the parent decides or asks for more."""

from __future__ import annotations

from services.notification.audience import plan
from services.notification.model import INBOX, NOTICE, SMS
from tests.unit.notification.factories import BOTH, applicant, fact, ids, templates

SEALED = {
    "seal": {"key_id": "ab12cd34ef56ab78", "algorithm": "Ed25519", "signature": "c2ln"},
    "decision": {"decided_by": "chief.plan"},
}


def _render(kind: str, data: dict, language: str) -> tuple[list, str, str]:
    outs = plan(
        fact(kind, data), recipient=applicant(language=language), task=None, channels=BOTH, new_id=ids()
    )
    t = templates()
    sms = next(o for o in outs if o.channel == SMS and o.kind != "evaluation_invitation")
    notice = next(o for o in outs if o.channel == NOTICE)
    text = t.message(kind=sms.kind, language=sms.language, context=sms.context).sms
    return (
        outs,
        text,
        t.notice(notice_kind=notice.notice_kind, language=notice.language, context=notice.context),
    )


def test_parents_result_brings_a_decision_letter_naming_the_parent_in_chinese() -> None:
    data = {"parent_center": "210200", "outcome": "OUTCOME_APPROVED", "sealed": SEALED}
    outs, sms, html = _render("parent_result_received", data, "zh-CN")
    assert {o.kind for o in outs} == {"decision", "evaluation_invitation"}
    assert {o.channel for o in outs if o.kind == "decision"} >= {NOTICE, INBOX, SMS}
    assert "经上级中心(210200)审批" in sms and "决定准予许可" in sms
    assert "经上级中心(210200)审查" in html and "ab12cd34ef56ab78" in html


def test_parents_rejection_in_english_gives_the_reasons() -> None:
    data = {"parent_center": "210000", "outcome": "OUTCOME_REJECTED", "reasons": ["not in the plan"]}
    _, sms, html = _render("parent_result_received", data, "en")
    assert "concluded by the upper-level center (210000)" in sms and "not in the plan" in sms
    assert "the upper-level center (210000) decided" in html


def test_a_decision_taken_two_levels_up_names_the_center_that_sealed_it() -> None:
    sealed = {"seal": SEALED["seal"], "decision": {"decided_by": "chief.drc", "center": "210000"}}
    data = {"parent_center": "210200", "outcome": "OUTCOME_APPROVED", "sealed": sealed}
    _, sms, html = _render("parent_result_received", data, "zh-CN")
    assert "经上级中心(210000)审批" in sms and "(210200)" not in sms
    assert "(210000)" in html and "(210200)" not in html


def test_local_decision_letter_does_not_mention_a_parent() -> None:
    _, sms, html = _render("case_concluded", {"outcome": "OUTCOME_APPROVED", "parent_center": "x"}, "zh-CN")
    assert "上级中心" not in sms and "上级中心" not in html


def test_supplement_raised_at_the_parent_names_it_in_both_languages() -> None:
    data = {
        "round": 2,
        "during_review": True,
        "parent_center": "210200",
        "items": [{"material_code": "SITE-PLAN", "reason": "缺少公章", "department": "PLAN"}],
    }
    outs, sms, html = _render("supplement_requested", data, "zh-CN")
    assert {o.kind for o in outs} == {"supplement_notice"}
    assert "经上级中心(210200)审查需补正以下1项材料" in sms
    assert "在上级中心(210200)审查中" in html
    _, sms, html = _render("supplement_requested", data, "en")
    assert "under review at the upper-level center (210200)" in sms
    assert "during review at the upper-level center (210200)" in html
