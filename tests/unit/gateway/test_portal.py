"""The citizens' portal over fakes: language, guides, uploads, tracking, seals, evaluation, questions."""

from __future__ import annotations

import re
from typing import Any

import grpc
from aiohttp import FormData

from gateway.security import TRACK_COOKIE
from gateway.views.public import encode_sealed
from onestop.common.v1 import common_pb2
from tests.unit.gateway.conftest import Gateway
from tests.unit.gateway.fakes import CODE, NUMBER, PDF, Fakes, FakeSupervision, rpc_error


async def test_chinese_first_and_english_on_request(gw: Gateway) -> None:
    page = await (await gw.client.get("/")).text()
    assert 'lang="zh-CN"' in page and "办事指南" in page
    resp = await gw.client.get("/lang/en?next=/guide/PL-001", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/guide/PL-001"
    page = await (await gw.client.get("/guide/PL-001")).text()
    assert 'lang="en"' in page and "Issuing the construction planning permit" in page and "Materials" in page
    await gw.client.get("/lang/zh-CN")
    assert "申请材料" in await (await gw.client.get("/guide/PL-001")).text()


async def test_the_language_switch_only_goes_back_to_this_site(gw: Gateway) -> None:
    resp = await gw.client.get("/lang/en?next=//evil.example/", allow_redirects=False)
    assert resp.headers["Location"] == "/"


async def test_a_guide_lists_materials_with_form_templates_fees_and_legal_basis(gw: Gateway) -> None:
    page = await (await gw.client.get("/guide/PL-001")).text()
    assert "/guide/PL-001/forms/APPLICATION" in page and "¥10.00" in page and "城乡规划法" in page
    resp = await gw.client.get("/guide/PL-001/forms/APPLICATION")
    assert resp.status == 200 and "attachment" in resp.headers["Content-Disposition"]
    assert (await gw.client.get("/guide/PL-001/forms/SITE-PLAN")).status == 404
    assert (await gw.client.get("/guide/NOPE")).status == 404


async def test_an_upload_is_checked_by_content_and_size_before_intake_sees_it(gw: Gateway) -> None:
    token = await gw.csrf("/apply/PL-001")

    async def upload(material: str, data: bytes, name: str = "a.pdf", ctype: str = "application/pdf") -> Any:
        form = FormData()
        form.add_field("matter_code", "PL-001")
        form.add_field("material_code", material)
        form.add_field("file", data, filename=name, content_type=ctype)
        return await gw.client.post("/api/v1/uploads", data=form, headers={"X-CSRF-Token": token})

    ok = await upload("SITE-PLAN", PDF)
    assert ok.status == 201, await ok.text()
    assert len((await ok.json())["digest"]) == 64
    assert (await upload("SITE-PLAN", b"MZ\x90\x00 not a pdf", "a.pdf")).status == 415
    assert (await upload("SITE-PLAN", b"\x89PNG\r\n\x1a\n....", "a.png", "image/png")).status == 415
    assert (await upload("SITE-PLAN", PDF + b"x" * 2000)).status == 413  # the material allows 1 KB
    assert (await upload("NOPE", PDF)).status == 400
    assert [t for t, _ in gw.fakes.intake.uploads] == ["application/pdf"]
    form = FormData()
    form.add_field("matter_code", "PL-001")
    form.add_field("material_code", "SITE-PLAN")
    form.add_field("file", PDF, filename="a.pdf", content_type="application/pdf")
    assert (await gw.client.post("/api/v1/uploads", data=form)).status == 403  # no CSRF header


async def test_applying_without_the_script_uploads_the_files_and_shows_the_receipt(gw: Gateway) -> None:
    token = await gw.csrf("/apply/PL-001")
    form = FormData()
    for name, value in (
        ("_csrf", token),
        ("request_id", "r1"),
        ("applicant_kind", "1"),
        ("name", "李四"),
        ("phone", "13800002222"),
    ):
        form.add_field(name, value)
    form.add_field("file_APPLICATION", PDF, filename="app.pdf", content_type="application/pdf")
    form.add_field("file_SITE-PLAN", PDF, filename="site.pdf", content_type="application/pdf")
    resp = await gw.client.post("/apply/PL-001", data=form)
    page = await resp.text()
    assert resp.status == 200
    assert "210200-20250106-0002" in page and CODE in page
    case = gw.fakes.intake.cases["210200-20250106-0002"]
    assert [d.material_code for d in case.documents] == ["APPLICATION", "SITE-PLAN"]
    assert case.channel == common_pb2.CHANNEL_ONLINE and case.applicant.language == "zh-CN"
    assert (await gw.client.get("/track/210200-20250106-0002")).status == 200  # unlocked by the receipt


async def test_tracking_unlocks_the_case_without_leaving_the_code_in_the_address(gw: Gateway) -> None:
    token = await gw.csrf("/track")
    resp = await gw.client.post(
        "/track", data={"number": NUMBER, "code": CODE.lower(), "_csrf": token}, allow_redirects=False
    )
    assert resp.status == 303 and resp.headers["Location"] == f"/track/{NUMBER}"
    assert resp.cookies[TRACK_COOKIE]["httponly"]
    page = await (await gw.client.get(f"/track/{NUMBER}")).text()
    assert "规划局" in page and 'data-events="/api/v1/cases/' in page
    assert "监察服务暂不可用" in page  # supervision is down: clocks estimated, said so
    assert "通知服务暂不可用" in page  # notification not configured


async def test_a_case_decided_above_says_where_its_departments_work_instead_of_an_empty_table(
    gw: Gateway,
) -> None:
    gw.fakes.intake.cases[NUMBER].status = common_pb2.CASE_STATUS_FORWARDED
    gw.fakes.approval.tasks = lambda: []  # no department of this center works on it
    token = await gw.csrf("/track")
    await gw.client.post("/track", data={"number": NUMBER, "code": CODE, "_csrf": token})
    page = await (await gw.client.get(f"/track/{NUMBER}")).text()
    assert 'id="decided-above"' in page and "上级中心的部门审批" in page
    assert 'id="tasks"' not in page


async def test_a_case_page_needs_the_query_code_first(gw: Gateway) -> None:
    resp = await gw.client.get(f"/track/{NUMBER}", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == f"/track?number={NUMBER}"
    assert (await gw.client.get(f"/api/v1/cases/{NUMBER}/events")).status == 403


async def test_a_tampered_track_cookie_unlocks_nothing(gw: Gateway) -> None:
    gw.client.session.cookie_jar.update_cookies({TRACK_COOKIE: "eyJ4IjoiWSJ9.forged"})
    assert (await gw.client.get(f"/track/{NUMBER}", allow_redirects=False)).status == 303


async def test_the_supplement_answer_goes_to_intake_with_the_query_code(gw: Gateway) -> None:
    case = gw.fakes.intake.cases[NUMBER]
    case.status = common_pb2.CASE_STATUS_SUPPLEMENT_REQUESTED
    case.open_supplement.add(material_code="SITE-PLAN", reason="比例尺不清", department="PLAN")
    await gw.post("/track", {"number": NUMBER, "code": CODE}, page="/track")
    page = await (await gw.client.get(f"/track/{NUMBER}")).text()
    assert 'id="supplement-form"' in page and "比例尺不清" in page
    token = await gw.csrf(f"/track/{NUMBER}")
    form = FormData()
    form.add_field("_csrf", token)
    form.add_field("file_SITE-PLAN", PDF, filename="site2.pdf", content_type="application/pdf")
    resp = await gw.client.post(f"/track/{NUMBER}/supplement", data=form, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].endswith("done=supplemented")
    (req,) = gw.fakes.intake.supplements
    assert req.query_code == CODE and req.case_id == "c1" and req.documents[0].material_code == "SITE-PLAN"


async def test_a_material_two_departments_ask_for_is_uploaded_once(gw: Gateway) -> None:
    case = gw.fakes.intake.cases[NUMBER]
    case.status = common_pb2.CASE_STATUS_SUPPLEMENT_REQUESTED
    case.open_supplement.add(material_code="SITE-PLAN", reason="比例尺不清", department="PLAN")
    case.open_supplement.add(material_code="SITE-PLAN", reason="未标红线", department="LAND")
    await gw.post("/track", {"number": NUMBER, "code": CODE}, page="/track")
    page = await (await gw.client.get(f"/track/{NUMBER}")).text()
    assert "比例尺不清" in page and "未标红线" in page  # both reasons are listed in the notice
    assert page.count('name="file_SITE-PLAN"') == 1  # but there is one file to choose, not two
    form = FormData()
    form.add_field("_csrf", await gw.csrf(f"/track/{NUMBER}"))
    form.add_field("file_SITE-PLAN", PDF, filename="site3.pdf", content_type="application/pdf")
    resp = await gw.client.post(f"/track/{NUMBER}/supplement", data=form, allow_redirects=False)
    assert resp.status == 303
    (req,) = gw.fakes.intake.supplements
    assert [d.material_code for d in req.documents] == ["SITE-PLAN"]


async def test_a_concluded_case_can_be_evaluated_once_the_code_is_known(make_gateway: Any) -> None:
    fakes = Fakes(supervision=FakeSupervision())
    fakes.intake.cases[NUMBER].status = common_pb2.CASE_STATUS_CONCLUDED
    fakes.intake.cases[NUMBER].outcome = common_pb2.OUTCOME_APPROVED
    gw = await make_gateway(fakes)
    await gw.post("/track", {"number": NUMBER, "code": CODE}, page="/track")
    assert (
        await gw.post(
            f"/track/{NUMBER}/evaluation", {"rating": "5", "comment": "很快"}, page=f"/track/{NUMBER}"
        )
        == 303
    )
    (ev,) = fakes.supervision.evaluations
    assert ev.rating == 5 and ev.case_number == NUMBER and len(ev.query_code_digest) == 64
    assert await gw.post(f"/track/{NUMBER}/evaluation", {"rating": "9"}, page=f"/track/{NUMBER}") == 400


async def test_after_rating_the_page_shows_the_rating_and_offers_the_form_again_only_for_a_follow_up(
    make_gateway: Any,
) -> None:
    fakes = Fakes(supervision=FakeSupervision())
    fakes.intake.cases[NUMBER].status = common_pb2.CASE_STATUS_CONCLUDED
    fakes.intake.cases[NUMBER].outcome = common_pb2.OUTCOME_APPROVED
    gw = await make_gateway(fakes)
    await gw.post("/track", {"number": NUMBER, "code": CODE}, page="/track")
    page = await (await gw.client.get(f"/track/{NUMBER}")).text()
    assert 'id="evaluation-form"' in page and 'id="evaluation-given"' not in page
    await gw.post(f"/track/{NUMBER}/evaluation", {"rating": "2"}, page=f"/track/{NUMBER}")
    page = await (await gw.client.get(f"/track/{NUMBER}")).text()
    assert 'id="evaluation-given"' in page and "您的评价: 2" in page
    assert 'id="rectification"' in page and "回访评价" in page and 'id="evaluation-form"' in page
    await gw.post(f"/track/{NUMBER}/evaluation", {"rating": "4"}, page=f"/track/{NUMBER}")
    page = await (await gw.client.get(f"/track/{NUMBER}")).text()
    assert "整改后的回访评价: 4" in page and 'id="evaluation-form"' not in page


async def test_the_seal_page_says_valid_or_invalid_and_shows_the_public_key(gw: Gateway) -> None:
    good = common_pb2.SealedDecision(
        decision=common_pb2.Decision(case_number=NUMBER, outcome=1),
        seal=common_pb2.Seal(key_id="0123456789abcdef", algorithm="Ed25519", signature=b"good"),
    )
    page = await (await gw.client.get(f"/verify?sealed={encode_sealed(good)}")).text()
    assert 'data-valid="true"' in page and "BEGIN PUBLIC KEY" in page
    good.seal.signature = b"bad!"
    page = await (await gw.client.get(f"/verify?sealed={encode_sealed(good)}")).text()
    assert 'data-valid="false"' in page
    page = await (await gw.client.get("/verify?sealed=not-a-seal")).text()
    assert 'id="seal-malformed"' in page


async def test_a_question_reaches_the_lead_departments_window_and_its_answer_the_faq(gw: Gateway) -> None:
    assert (
        await gw.post(
            "/guide/PL-001/questions", {"question": "需要几份图纸?", "name": "王"}, page="/guide/PL-001"
        )
        == 303
    )
    assert await gw.sign_in("clerk.drc") == 303
    assert "需要几份图纸" not in await (await gw.client.get("/staff/questions")).text()
    await gw.post("/staff/logout", page="/staff")
    assert await gw.sign_in("clerk.plan") == 303
    page = await (await gw.client.get("/staff/questions")).text()
    qid = page.split('id="q-', 1)[1].split('"', 1)[0]
    assert (
        await gw.post(
            f"/staff/questions/{qid}/answer", {"answer": "两份。", "publish": "1"}, page="/staff/questions"
        )
        == 303
    )
    guide = await (await gw.client.get("/guide/PL-001")).text()
    assert "需要几份图纸" in guide and "两份。" in guide


async def test_statistics_render_svg_charts_without_inline_styles(make_gateway: Any) -> None:
    gw = await make_gateway(Fakes(supervision=FakeSupervision()))
    page = await (await gw.client.get("/statistics")).text()
    assert page.count("<svg") >= 3 and ("75%" in page or "75.0%" in page)
    assert " style=" not in page
    down = await (await (await make_gateway()).client.get("/statistics")).text()
    assert 'id="stats-degraded"' in down and "<svg" in down


async def test_a_department_with_nothing_concluded_has_no_on_time_rate_rather_than_zero(
    make_gateway: Any,
) -> None:
    gw = await make_gateway(Fakes(supervision=FakeSupervision()))
    page = await (await gw.client.get("/statistics")).text()
    assert "75.0%" in page  # PLAN: 3 concluded
    drc_row = page[page.index("<td>发展和改革委员会</td>") :].split("</tr>")[0]
    assert "0.0%" not in drc_row and "—" in drc_row


async def test_statistics_show_the_cases_sent_up_to_the_parent_apart_from_the_departments_figures(
    make_gateway: Any,
) -> None:
    gw = await make_gateway(Fakes(supervision=FakeSupervision()))
    zh = await (await gw.client.get("/statistics")).text()
    table = zh.split('id="forwarded-stats"', 1)[1]
    assert "报上级中心决定的报件" in table and "等待上级决定" in table and "上级不予许可" in table
    cells = re.findall(r"<td>([^<]*)</td>", table.split("</table>", 1)[0])
    assert cells == ["210200", "7", "2", "3", "1", "1"]
    en = await (await gw.client.get("/statistics?lang=en")).text()
    assert "Cases decided by the upper-level center" in en and "Waiting for the decision" in en
    # Without supervision there is nothing to show, and the page still renders.
    down = await (await (await make_gateway()).client.get("/statistics")).text()
    assert 'id="forwarded-stats"' not in down


async def test_readiness_reports_unconfigured_services_without_waiting_for_them(gw: Gateway) -> None:
    resp = await gw.client.get("/readyz")
    body = await resp.json()
    assert resp.status == 200
    assert body["services"]["notification"] == "NOT_CONFIGURED"


async def test_the_applicant_withdraws_with_the_query_code(gw: Gateway) -> None:
    await gw.post("/track", {"number": NUMBER, "code": CODE}, page="/track")
    assert 'id="withdraw"' in await (await gw.client.get(f"/track/{NUMBER}")).text()
    assert await gw.post(f"/track/{NUMBER}/withdraw", {"reason": "不再需要"}, page=f"/track/{NUMBER}") == 303
    (req,) = gw.fakes.intake.withdrawn
    assert req.query_code == CODE and req.case_id == "c1" and req.reason == "不再需要"


async def test_the_language_switch_refuses_a_backslash_detour(gw: Gateway) -> None:
    resp = await gw.client.get("/lang/en?next=/\\evil.example/", allow_redirects=False)
    assert resp.headers["Location"] == "/"


class _NoClocksHere(FakeSupervision):
    """Supervision of a node that forwarded the case before it heard of it: no clocks, NOT_FOUND."""

    async def GetClocks(self, req: Any, timeout: float = 0) -> Any:
        raise rpc_error(grpc.StatusCode.NOT_FOUND, f"no clocks for case {req.case_number}")


async def test_a_case_decided_at_the_parent_node_opens_for_the_applicant_and_for_staff(
    make_gateway: Any,
) -> None:
    # No decision sealed by this node's approval (the parent sealed it), no clocks here: both are
    # NOT_FOUND, and the pages show the outcome without them instead of answering 404.
    fakes = Fakes(supervision=_NoClocksHere())
    fakes.intake.cases[NUMBER].status = common_pb2.CASE_STATUS_CONCLUDED
    fakes.intake.cases[NUMBER].outcome = common_pb2.OUTCOME_APPROVED
    gw = await make_gateway(fakes)
    await gw.post("/track", {"number": NUMBER, "code": CODE}, page="/track")
    resp = await gw.client.get(f"/track/{NUMBER}")
    page = await resp.text()
    assert resp.status == 200 and 'id="decision"' in page and "准予许可" in page
    assert 'id="verify-link"' not in page and 'id="evaluation-form"' in page
    assert await gw.sign_in("director") == 303
    resp = await gw.client.get(f"/staff/cases/{NUMBER}")
    assert resp.status == 200 and NUMBER in await resp.text()


async def test_a_refused_form_says_why_in_chinese_first_with_the_english_beneath(gw: Gateway) -> None:
    token = await gw.csrf("/apply/PL-001")
    form = {"_csrf": token, "request_id": "r2", "applicant_kind": "1", "name": "", "phone": "13800002222"}
    resp = await gw.client.post("/apply/PL-001", data=form)
    page = await resp.text()
    assert resp.status == 400
    assert '<p class="error" role="alert">请填写姓名或名称</p>' in page
    assert '<p class="error-original" lang="en">field name is required</p>' in page
    bad_phone = await gw.client.post("/apply/PL-001", data={**form, "name": "李四", "phone": "12x"})
    assert bad_phone.status == 400 and "联系电话格式不正确" in await bad_phone.text()
    assert "210200-20250106-0002" not in gw.fakes.intake.cases  # nothing reached intake

    await gw.client.get("/lang/en")
    token = await gw.csrf("/apply/PL-001")
    english = await (await gw.client.post("/apply/PL-001", data={**form, "_csrf": token})).text()
    assert '<p class="error" role="alert">field name is required</p>' in english
    assert "请填写" not in english


async def test_a_wrong_query_code_is_refused_in_the_visitors_language_and_in_english_on_the_api(
    gw: Gateway,
) -> None:
    token = await gw.csrf("/track")
    page = await (
        await gw.client.post("/track", data={"number": NUMBER, "code": "WRONG1", "_csrf": token})
    ).text()
    assert "办件编号与查询码不匹配" in page
    api = await gw.client.post(
        "/api/v1/cases/lookup", json={"number": NUMBER, "code": "?"}, headers={"X-CSRF-Token": token}
    )
    body = await api.json()
    assert api.status == 404 and body["error"]["message"] == "No case with this number and query code"
