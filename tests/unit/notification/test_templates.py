"""Messages and written notices read right in both languages, escape HTML, and fail loudly."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from services.notification.audience import plan
from services.notification.model import NOTICE, SMS
from services.notification.templates import RenderError
from tests.unit.notification.factories import BOTH, applicant, fact, ids, templates

ITEMS = {
    "round": 1,
    "items": [
        {"material_code": "SITE-PLAN", "reason": "总平面图未加盖<b>设计单位</b>公章", "department": "PLAN"},
        {"material_code": "FIRE-DESIGN", "reason": "消防设计说明缺失", "department": "FIRE"},
    ],
}


def _sms_and_notice(kind: str, data: Mapping[str, Any], language: str) -> tuple[str, str]:
    outs = plan(
        fact(kind, data), recipient=applicant(language=language), task=None, channels=BOTH, new_id=ids()
    )
    t = templates()
    sms = next(o for o in outs if o.channel == SMS)
    notice = next(o for o in outs if o.channel == NOTICE)
    text = t.message(kind=sms.kind, language=sms.language, context=sms.context).sms
    return text, t.notice(notice_kind=notice.notice_kind, language=notice.language, context=notice.context)


def test_acceptance_sms_gives_the_case_number_and_points_to_the_receipts_query_code() -> None:
    outs = plan(
        fact("case_accepted", {"on_the_spot": False}), recipient=applicant(), task=None, channels=BOTH
    )
    sms = next(o for o in outs if o.channel == SMS)
    text = templates().message(kind=sms.kind, language="zh-CN", context=sms.context).sms
    assert text.startswith("【大连市人民政府行政服务中心】王小明您好")
    assert "报件编号210200-20261126-0001" in text
    assert "受理回执上的查询码" in text
    assert "2026年11月26日" in text


def test_english_applicant_gets_english_acceptance_text() -> None:
    outs = plan(fact("case_accepted"), recipient=applicant(language="en"), task=None, channels=BOTH)
    sms = next(o for o in outs if o.channel == SMS)
    message = templates().message(kind=sms.kind, language=sms.language, context=sms.context)
    assert sms.language == "en"
    assert message.title == "Application accepted: case 210200-20261126-0001"
    assert "query code printed on your receipt" in message.sms
    assert "26 November 2026" in message.sms


def test_supplement_notice_lists_every_item_at_once_in_chinese() -> None:
    text, html = _sms_and_notice("supplement_round_opened", ITEMS, "zh-CN")
    assert "需补正以下2项材料,现一次性告知" in text
    assert "1.SITE-PLAN" in text and "2.FIRE-DESIGN:消防设计说明缺失" in text
    assert "补正材料一次性告知书" in html
    assert "规划局" in html and "公安消防局" in html
    assert "补正材料期间不计入办理时限" in html


def test_supplement_notice_in_english_names_departments_and_escapes_applicant_text() -> None:
    text, html = _sms_and_notice("supplement_round_opened", ITEMS, "en")
    assert "needs 2 item(s), all listed here at once" in text
    assert "One-Time Notice of Supplementary Materials" in html
    assert "Planning Bureau" in html
    assert "&lt;b&gt;设计单位&lt;/b&gt;" in html and "<b>设计单位" not in html


def test_rejection_letter_gives_every_reason_and_the_right_of_appeal() -> None:
    data = {
        "outcome": "OUTCOME_REJECTED",
        "reasons": ["选址不符合控制性详细规划", "环评未批复"],
        "sealed": {
            "seal": {"key_id": "ab12cd34ef56ab78", "algorithm": "Ed25519", "signature": "c2lnbmF0dXJl"}
        },
    }
    text, html = _sms_and_notice("case_concluded", data, "zh-CN")
    assert "决定不予许可,理由:选址不符合控制性详细规划;环评未批复" in text
    assert "不予行政许可决定书" in html
    assert "<li>环评未批复</li>" in html
    assert "六十日内依法申请行政复议" in html
    assert "ab12cd34ef56ab78" in html and "c2lnbmF0dXJl" in html


def test_deemed_approval_letter_in_english() -> None:
    text, html = _sms_and_notice(
        "case_concluded", {"outcome": "OUTCOME_DEEMED_APPROVED", "reasons": []}, "en"
    )
    assert "deemed approved" in text
    assert "The licence is deemed granted." in html


def test_extension_notice_cites_article_42_and_the_head_who_approved() -> None:
    data = {"approved": True, "days": 10, "reason": "需组织专家评审", "by": {"department": "PLAN"}}
    text, html = _sms_and_notice("extension_decided", data, "zh-CN")
    assert "经规划局负责人批准,办理期限延长10个工作日" in text
    assert "第四十二条" in html and "需组织专家评审" in html


def test_special_procedure_notice_tells_how_long_it_takes_under_article_45_in_both_languages() -> None:
    data = {
        "procedure": "expert_review",
        "reason": "需组织专家论证结构安全",
        "expected_days": 15,
        "expected_end": "2026-11-30T15:59:59Z",
        "department": "PLAN",
    }
    text, html = _sms_and_notice("special_procedure_started", data, "zh-CN")
    assert "规划局组织专家评审,预计需要15个工作日(至2026年11月30日)" in text
    assert "特别程序告知书" in html and "第四十五条" in html and "需组织专家论证结构安全" in html
    text, html = _sms_and_notice("special_procedure_started", data, "en")
    assert "needs a special procedure, expert review, by" in text and "15 working day(s)" in text
    assert "Article 45" in html


def test_deemed_approval_notice_names_the_silent_department_and_the_urging_date() -> None:
    data = {"task_id": "t-1", "department": "FIRE", "urged_at": "2026-11-19T01:00:00Z"}
    text, html = _sms_and_notice("task_deemed_approved", data, "zh-CN")
    assert "公安消防局未在承诺时限内作出决定" in text
    assert "超时默许告知书" in html and "2026年11月19日" in html


def test_a_notice_left_to_this_center_by_its_parent_names_the_center_where_it_happened() -> None:
    """A case decided above: the city (or the province above it) extends the time limit, holds an expert
    review or deems a task approved, and the district that took the case in writes the notice."""
    above = {"parent_center": "210200", "raised_at_center": "210000"}
    extension = above | {
        "kind": "extension_approved",
        "days": 10,
        "reason": "需组织专家评审",
        "department": "PLAN",
        "decided_by": "规划局局长",
    }
    text, html = _sms_and_notice("parent_notice_received", extension, "zh-CN")
    assert "经上级中心(210000)规划局负责人批准,办理期限延长10个工作日" in text, text
    assert "延期办理告知书" in html and "上级中心(210000)" in html and "需组织专家评审" in html
    text, html = _sms_and_notice("parent_notice_received", extension, "en")
    assert "head of Planning Bureau at the upper-level center (210000)" in text, text
    review = above | {
        "kind": "special_procedure_started",
        "procedure": "expert_review",
        "reason": "需组织专家论证结构安全",
        "expected_days": 15,
        "expected_end": "2026-11-30T15:59:59Z",
        "department": "PLAN",
    }
    text, html = _sms_and_notice("parent_notice_received", review, "zh-CN")
    assert "需由上级中心(210000)规划局组织专家评审,预计需要15个工作日(至2026年11月30日)" in text, text
    assert "特别程序告知书" in html and "第四十五条" in html
    deemed = above | {
        "kind": "task_deemed_approved",
        "department": "FIRE",
        "urged_at": "2026-11-19T01:00:00Z",
    }
    text, html = _sms_and_notice("parent_notice_received", deemed, "zh-CN")
    assert "上级中心(210000)公安消防局未在承诺时限内作出决定" in text, text
    assert "上级中心(210000)管理办公室已于2026年11月19日催办" in html, html
    ended = above | {"kind": "special_procedure_ended", "procedure": "expert_review", "result": "结构安全"}
    assert plan(fact("parent_notice_received", ended), recipient=applicant(), task=None, channels=BOTH) == []


def test_staff_message_has_no_sms_and_falls_back_to_chinese() -> None:
    context = {
        "case_number": "C-1",
        "at": "2026-11-26T02:30:00+00:00",
        "level": "red",
        "department": "PLAN",
        "task_id": "t-1",
        "due_at": "2026-11-25T09:00:00Z",
    }
    message = templates().message(kind="clock_warned", language="en", context=context)
    assert message.sms == ""
    assert message.title == "红灯:已超期 C-1"
    assert "规划局" in message.body and "2026年11月25日 17:00" in message.body


def test_a_template_asking_for_a_missing_field_is_a_template_error(tmp_path: Path) -> None:
    broken = tmp_path / "messages" / "zh-CN"
    broken.mkdir(parents=True)
    (broken / "case_delivered.txt").write_text(
        "{% block title %}送达{% endblock %}{% block sms %}{{ courier_name }}{% endblock %}", encoding="utf-8"
    )
    with pytest.raises(RenderError, match=r"^template error: UndefinedError: 'courier_name' is undefined"):
        templates(str(tmp_path)).message(
            kind="case_delivered", language="zh-CN", context={"case_number": "C"}
        )


def test_unknown_message_kind_is_a_template_error() -> None:
    with pytest.raises(RenderError, match="template error: TemplateNotFound"):
        templates().message(kind="no_such_message", language="zh-CN", context={})


def test_fee_discrepancy_warning_gives_the_day_the_collector_and_the_difference() -> None:
    data = {
        "day": "2025-11-20",
        "collector": "fee2",
        "expected": "200.50",
        "declared": "200.00",
        "difference": "-0.50",
        "entries": 1,
        "by": {"username": "fee2", "display_name": "赵金凤"},
        "supervisors": ["director.ycz"],
        "reconciliation_id": "7",
    }
    (out,) = plan(
        fact("fee_reconciliation_failed", data, case_number=""), recipient=None, task=None, channels=BOTH
    )
    message = templates().message(kind=out.kind, language=out.language, context=out.context)
    assert message.title == "收费对账不符:2025-11-20 fee2"
    assert "应收 200.50 元,实收 200.00 元,差额 -0.50 元" in message.body and "赵金凤" in message.body
    assert not message.sms  # staff are told in their inbox only
    center = dict(out.context, collector="")
    assert "全中心" in templates().message(kind=out.kind, language=out.language, context=center).title
