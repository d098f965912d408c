"""The portal and the console in a real browser (Debian's chromium via Playwright) against a running node."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from services.cli.node import Node
from tests.e2e.browser_helpers import browser, context, pdf, reload_until, shot, sign_in, web_node
from tests.harness import NodeClients

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
__all__ = ["browser", "web_node"]  # fixtures
PL_MATERIALS = ("APPLICATION", "LAND-CERT", "SITE-PLAN", "DRAWINGS")


def _apply(page: Any, base: str, tmp_path: Path) -> tuple[str, str]:
    """A citizen finds the planning permit's guide and applies online with uploads; (number, code)."""
    page.goto(f"{base}/")
    page.fill("input[name=q]", "规划许可")
    page.click("form.search button[type=submit]")
    page.click("text=建设工程规划许可证核发")
    page.wait_for_selector("h1:has-text('建设工程规划许可证核发')")
    assert page.locator("a[href='/guide/PL-001/forms/APPLICATION']").count() == 1
    shot(page, "01-guide")
    page.click("a.button:has-text('在线申请')")
    page.fill("#applicant-name", "张三")
    page.fill("#applicant-phone", "13800001111")
    page.fill("input[name=title]", "星海湾商务楼建设工程")
    for i, code in enumerate(PL_MATERIALS):
        page.set_input_files(f"#file-{code}", str(pdf(tmp_path / f"{code}.pdf", 300_000 if i == 3 else 4096)))
    for code in PL_MATERIALS:
        page.wait_for_selector(f"[data-status='{code}'].ok")
        assert page.locator(f"[data-progress='{code}']").get_attribute("value") == "100"
    shot(page, "02-apply-uploaded")
    page.click("#submit-application")
    number = page.text_content("#case-number") or ""
    code = page.text_content("#query-code") or ""
    assert re.fullmatch(r"210200-\d{8}-\d+", number.strip()), number
    assert len(code.strip()) == 8
    shot(page, "03-receipt")
    return number.strip(), code.strip()


def test_citizen_applies_answers_a_supplement_and_watches_the_decision_arrive_live(
    browser: Any, web_node: Node, tmp_path: Path
) -> None:
    base = web_node.gateway_url
    citizen = context(browser).new_page()
    number, code = _apply(citizen, base, tmp_path)

    # Track with number and query code (the code never stays in the address bar), live updates on.
    citizen.goto(f"{base}/track")
    citizen.fill("#track-number", number)
    citizen.fill("#track-code", code)
    citizen.click("form.search button[type=submit]")
    citizen.wait_for_url(f"{base}/track/{number}")
    citizen.wait_for_selector("#live[data-live]")
    reload_until(citizen, "#tasks", what="the PLAN task on the citizen's page")
    citizen.wait_for_selector("#live[data-live]")
    shot(citizen, "04-case-tracking")

    # The PLAN window's clerk claims the task and asks for a supplement (one-time notice).
    clerk = context(browser).new_page()
    sign_in(clerk, base, "clerk.plan")
    clerk.goto(f"{base}/staff/queue")
    reload_until(clerk, f"#queue a:has-text('{number}')", what="the case in the PLAN queue")
    shot(clerk, "05-clerk-queue")
    clerk.click(f"#queue a:has-text('{number}')")
    clerk.click("#claim")
    clerk.check("input[data-material='SITE-PLAN']")
    clerk.fill("input[name='reason_SITE-PLAN']", "总平面图比例尺不清,请重新提供")
    shot(clerk, "06-clerk-case")
    clerk.click("#request-supplement")

    # The citizen's open page learns of the notice by itself and shows the supplement form.
    citizen.wait_for_selector("#supplement-form", timeout=30_000)
    assert "比例尺不清" in (citizen.text_content("#supplement-notice") or "")
    shot(citizen, "07-supplement-notice")
    citizen.set_input_files("#file-SITE-PLAN", str(pdf(tmp_path / "site-plan-v2.pdf")))
    citizen.wait_for_selector("[data-status='SITE-PLAN'].ok")
    citizen.click("#submit-supplement")
    citizen.wait_for_selector("#done-supplemented")
    citizen.wait_for_selector("#live[data-live]")

    # The chief representative decides in another browser context while the citizen watches.
    chief = context(browser).new_page()
    sign_in(chief, base, "chief.plan")
    chief.goto(f"{base}/staff/cases/{number}")
    reload_until(chief, "#claim", what="the task back in the queue after the supplement")
    chief.click("#claim")
    chief.fill("form[action$='/approve'] textarea[name=opinion]", "符合规划条件,准予许可")
    chief.click("#approve")
    chief.wait_for_selector("#staff-tasks")

    citizen.wait_for_selector("#decision", timeout=30_000)
    assert "准予许可" in (citizen.text_content("#case-outcome") or "")
    shot(citizen, "08-decision")

    # Verify the seal: valid, with the center's public key.
    citizen.click("#verify-link")
    citizen.wait_for_selector("#seal-verdict[data-valid='true']")
    assert "BEGIN PUBLIC KEY" in (citizen.text_content("#public-key") or "")
    shot(citizen, "09-seal-verified")

    # Evaluate (好差评); while supervision is not running the page says so plainly.
    citizen.goto(f"{base}/track/{number}")
    citizen.check("#evaluation-form input[name=rating][value='5']")
    citizen.fill("#evaluation-form textarea[name=comment]", "办理很快")
    citizen.click("#submit-evaluation")
    if "supervision" in web_node.services:
        citizen.wait_for_selector("#done-evaluated")
    else:
        assert "监察服务暂不可用" in (citizen.text_content("main") or "")
    shot(citizen, "10-evaluation")


def test_supervisor_sees_the_warning_board_and_charts(browser: Any, web_node: Node) -> None:
    base = web_node.gateway_url
    c = NodeClients.of(web_node)
    try:
        number = c.submit("TR-001").case.case_number
        c.wait_tasks(number, count=4)
    finally:
        c.close()
    page = context(browser).new_page()
    sign_in(page, base, "supervisor")
    page.goto(f"{base}/staff/warnings")
    page.wait_for_selector("#warning-lights svg")
    if "supervision" not in web_node.services:
        assert page.locator("#warnings-degraded").count() == 1
    shot(page, "11-warning-board")
    page.goto(f"{base}/staff/dashboard")
    assert page.locator(".charts svg.chart").count() >= 2
    assert page.locator(".charts svg rect.chart-bar").count() >= 4  # ECON, ENV, FIRE, SAFETY have open tasks
    shot(page, "12-dashboard")
    page.goto(f"{base}/statistics")
    assert page.locator(".charts svg.chart").count() >= 2
    shot(page, "13-public-statistics")


def test_a_clerk_of_another_department_is_refused(browser: Any, web_node: Node) -> None:
    base = web_node.gateway_url
    c = NodeClients.of(web_node)
    try:
        number = c.submit("PL-001").case.case_number
        (task,) = c.wait_tasks(number)
    finally:
        c.close()
    ctx = context(browser)
    page = ctx.new_page()
    sign_in(page, base, "clerk.drc")
    page.goto(f"{base}/staff/queue")
    assert page.locator(f"#queue a:has-text('{number}')").count() == 0
    response = page.goto(f"{base}/staff/cases/{number}")
    assert response is not None and response.status == 403
    assert "403" in (page.text_content("h1") or "")
    shot(page, "14-other-department-refused")
    token = page.get_attribute("meta[name=csrf-token]", "content")
    refused = ctx.request.post(
        f"{base}/staff/tasks/{task.task_id}/claim", form={"_csrf": token or ""}, max_redirects=0
    )
    assert refused.status == 403
    page.goto(f"{base}/lang/en?next=/staff/queue")
    assert "Queue" in (page.text_content("h1") or "")


def test_the_chief_holds_an_expert_review_and_decides_once_it_has_ended(browser: Any, web_node: Node) -> None:
    base = web_node.gateway_url
    c = NodeClients.of(web_node)
    try:
        number = c.submit("PL-001").case.case_number
        c.wait_tasks(number)
    finally:
        c.close()
    chief = context(browser).new_page()
    sign_in(chief, base, "chief.plan")
    chief.goto(f"{base}/staff/cases/{number}")
    form = "#start-special-procedure"
    chief.select_option(f"{form} select[name=procedure]", "expert_review")
    chief.fill(f"{form} input[name=expected_days]", "8")
    chief.fill(f"{form} input[name=reason]", "结构安全需专家论证")
    chief.click(f"{form} button[type=submit]")
    chief.wait_for_selector("#special-procedure")
    running = chief.text_content("#special-procedure") or ""
    assert "专家评审" in running and "结构安全需专家论证" in running and "8" in running
    assert chief.locator("#approve").count() == 0  # no decision while its time is not counted
    shot(chief, "15-special-procedure-running")
    chief.fill("#special-procedure textarea[name=result]", "专家论证通过")
    chief.click("#end-special-procedure")
    chief.wait_for_selector("#approve")
    assert "专家论证通过" in (chief.text_content("#special-procedures") or "")
    chief.click("#approve")
    chief.wait_for_selector("#staff-tasks")
    reload_until(chief, "text=特别程序结束", what="the end of the expert review on the timeline")


def test_an_administrator_imports_a_catalogue_version_and_loads_a_calendar_year(
    browser: Any, web_node: Node, tmp_path: Path
) -> None:
    base = web_node.gateway_url
    source = ROOT / "services" / "routing" / "data" / "demo_catalogue.yaml"
    text = source.read_text(encoding="utf-8").replace("\nversion: 1\n", "\nversion: 2\n", 1)
    start = text.index("  - code: TR-001")
    at = text.index("promised_limit_days: 10", start)
    nextversion = tmp_path / "catalogue-2.yaml"
    nextversion.write_text(text[:at] + "promised_limit_days: 8" + text[at + 23 :], encoding="utf-8")
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        text.replace("{department: FIRE, group: 1}", "{department: FIER, group: 1}", 1), encoding="utf-8"
    )
    year = tmp_path / "2027.json"
    year.write_text(
        json.dumps({"year": 2027, "holidays": {"2027-01-01": "元旦"}, "workdays": []}, ensure_ascii=False),
        encoding="utf-8",
    )

    page = context(browser).new_page()
    sign_in(page, base, "admin")
    page.goto(f"{base}/staff/admin/catalogue")
    page.set_input_files("#import-catalogue input[type=file]", str(broken))
    page.click("#import-catalogue button[type=submit]")
    assert "FIER" in (page.text_content("main") or "")  # the reason, naming the bad department
    page.goto(f"{base}/staff/admin/catalogue")
    page.set_input_files("#import-catalogue input[type=file]", str(nextversion))
    page.click("#import-catalogue button[type=submit]")
    page.wait_for_selector("#catalogue-imported")
    assert "TR-001" in (page.text_content("#catalogue-imported") or "")
    assert page.locator("table.list tbody tr").count() == 2  # version 2 by admin, over version 1
    first = page.text_content("table.list tbody tr:first-child") or ""
    assert "admin" in first and "TR-001" in first
    shot(page, "15-admin-catalogue-imported")
    page.goto(f"{base}/guide/TR-001")
    promised = page.locator("dt:text-is('承诺时限') + dd").text_content() or ""
    assert promised.startswith("8 个工作日"), promised  # the guide follows the new version at once

    page.goto(f"{base}/staff/admin/calendar")
    page.set_input_files("#load-calendar input[type=file]", str(year))
    page.click("#load-calendar button[type=submit]")
    page.wait_for_selector("#calendar-loaded")
    assert "2027" in (page.text_content("#calendar-loaded") or "")
    assert page.locator("table.list tbody tr td:first-child:text-is('2027')").count() == 1
    shot(page, "16-admin-calendar-loaded")
