"""An agent answers the supplement notice of a case they carry (R19, R22); nobody else may, nothing is lost."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import FormData

from gateway.keys import STORE
from onestop.common.v1 import common_pb2
from tests.unit.gateway.conftest import Gateway
from tests.unit.gateway.fake_convenience import NOTICE_ID, notice_case
from tests.unit.gateway.fakes import PDF

PAGE = f"/staff/carried/{NOTICE_ID}/supplement"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def _held(gw: Gateway) -> common_pb2.Case:
    """Put the handed-over case waiting for its site plan into intake; it is what the pages read."""
    case = notice_case()
    gw.fakes.intake.cases[NOTICE_ID] = case
    return case


async def _answer(
    gw: Gateway, files: dict[str, tuple[str, str, bytes]], path: str = PAGE, page: str = "/staff"
) -> Any:
    form = FormData()
    form.add_field("_csrf", await gw.csrf(page))
    for name, (filename, ctype, data) in files.items():
        form.add_field(name, data, filename=filename, content_type=ctype)
    return await gw.client.post(path, data=form, allow_redirects=False)


async def _records(gw: Gateway) -> list[dict[str, Any]]:
    app = gw.client.app
    assert app is not None
    return await app[STORE].audit_records()


async def test_the_agent_answers_the_pre_review_notice_and_the_case_is_accepted(gw: Gateway) -> None:
    _held(gw)
    assert await gw.sign_in("agent.here") == 303
    carried = await (await gw.client.get("/staff/carried")).text()
    assert f'href="{PAGE}"' in carried
    page = await (await gw.client.get(PAGE)).text()
    assert 'id="answer-supplement"' in page and "缺少总平面图" in page and "总平面图" in page
    assert 'name="file_SITE-PLAN"' in page and "申请表.pdf" in page  # what was sent stays listed
    english = await (await gw.client.get(f"{PAGE}?lang=en")).text()
    assert "Answer the supplement notice" in english and "Site plan" in english
    resp = await _answer(gw, {"file_SITE-PLAN": ("总平面图.pdf", "application/pdf", PDF)}, page=PAGE)
    assert resp.status == 303 and resp.headers["Location"] == f"{PAGE}?done=supplemented"
    (req,) = gw.fakes.intake.supplements
    assert req.case_id == NOTICE_ID and not req.query_code  # the session vouches, not a query code
    assert (req.by.username, req.by.role, req.by.center) == ("agent.here", "agent", "210200")
    assert [d.material_code for d in req.documents] == ["SITE-PLAN"]
    assert gw.fakes.intake.uploads == [("application/pdf", PDF)]
    done = await (await gw.client.get(resp.headers["Location"])).text()
    assert 'id="done-supplemented"' in done and "210200-20250106-0003" in done
    assert 'id="answer-supplement"' not in done
    (*_, rec) = await _records(gw)
    assert (rec["actor"], rec["action"], rec["subject"], rec["detail"]["outcome"]) == (
        "agent.here",
        "answer_supplement",
        NOTICE_ID,
        "ok",
    )
    assert rec["detail"]["case_number"] == "210200-20250106-0003"
    assert rec["detail"]["documents"] == ["SITE-PLAN"] and rec["detail"]["still_missing"] == []


async def test_a_liaison_officer_of_the_center_may_answer_for_the_centers_agent(gw: Gateway) -> None:
    _held(gw)
    assert await gw.sign_in("liaison1") == 303
    assert (await gw.client.get(PAGE)).status == 200
    resp = await _answer(gw, {"file_SITE-PLAN": ("p.pdf", "application/pdf", PDF)})
    assert resp.status == 303
    (req,) = gw.fakes.intake.supplements
    assert (req.by.username, req.by.role) == ("liaison1", "liaison_officer")


async def test_anyone_who_does_not_carry_the_case_is_refused_and_the_refusal_is_audited(gw: Gateway) -> None:
    case = _held(gw)
    files = {"file_SITE-PLAN": ("p.pdf", "application/pdf", PDF)}
    # agent1 is an agent at a service point below the node who does not carry it; the rest are other roles.
    for username in ("agent1", "fee1", "clerk.plan", "director"):
        assert await gw.sign_in(username) == 303
        assert (await gw.client.get(PAGE)).status == 403, username
        refused = await _answer(gw, files)
        assert refused.status == 403, username
        if username == "agent1":
            assert "You do not carry this case" in await refused.text()
        await gw.post("/staff/logout", page="/staff")
    assert gw.fakes.intake.supplements == [] and gw.fakes.intake.uploads == []
    assert case.status == common_pb2.CASE_STATUS_SUPPLEMENT_REQUESTED
    posts = [r for r in await _records(gw) if r["action"] == "answer_supplement"]
    assert [(r["actor"], r["detail"]["outcome"], r["subject"]) for r in posts] == [
        (u, "refused", NOTICE_ID) for u in ("agent1", "fee1", "clerk.plan", "director")
    ]
    assert all(r["detail"]["reason"] and r["detail"]["status"] == 403 for r in posts)
    anonymous = await gw.client.get(PAGE, allow_redirects=False)
    assert anonymous.status == 303 and anonymous.headers["Location"].startswith("/staff/login")


async def test_bad_answers_are_refused_with_a_reason_and_leave_the_case_as_it_was(gw: Gateway) -> None:
    case = _held(gw)
    before = case.SerializeToString()
    assert await gw.sign_in("agent.here") == 303
    nothing = await _answer(gw, {})
    assert nothing.status == 400 and "Upload the documents the notice asks for" in await nothing.text()
    empty = await _answer(gw, {"file_SITE-PLAN": ("p.pdf", "application/pdf", b"")})
    assert empty.status == 400
    wrong = await _answer(gw, {"file_SITE-PLAN": ("p.png", "image/png", PNG)})
    assert wrong.status == 415 and "accepts PDF files only" in await wrong.text()
    big = await _answer(gw, {"file_SITE-PLAN": ("p.pdf", "application/pdf", PDF + b"0" * 2048)})
    assert big.status == 413 and "larger than" in await big.text()
    assert (await gw.client.get("/staff/carried/not-a-case/supplement")).status == 404
    assert gw.fakes.intake.supplements == [] and gw.fakes.intake.uploads == []
    assert case.SerializeToString() == before
    assert (await _answer(gw, {"file_SITE-PLAN": ("p.pdf", "application/pdf", PDF)})).status == 303
    again = await _answer(gw, {"file_SITE-PLAN": ("p.pdf", "application/pdf", PDF)})
    assert again.status == 409 and "no open supplement notice" in await again.text()
    assert len(gw.fakes.intake.supplements) == 1
    assert [d.material_code for d in case.documents] == ["APPLICATION", "SITE-PLAN"]  # nothing dropped


async def test_a_portal_case_accepted_after_its_notice_opens_for_its_agent_under_its_new_number(
    gw: Gateway,
) -> None:
    case_id = str(uuid.uuid4())
    case = notice_case()
    case.case_id = case_id
    gw.fakes.intake.cases[case_id] = case
    app = gw.client.app
    assert app is not None
    await app[STORE].add_carried(
        username="agent1",
        center="210200101",
        service_point="210200101201",
        case_id=case_id,
        case_number="",  # applied through the portal without the site plan: no number yet
        matter_code="PL-001",
        now=gw.clock(),
    )
    assert await gw.sign_in("agent1") == 303
    assert f"/staff/carried/{case_id}/supplement" in await (await gw.client.get("/staff/carried")).text()
    path = f"/staff/carried/{case_id}/supplement"
    assert (await _answer(gw, {"file_SITE-PLAN": ("p.pdf", "application/pdf", PDF)}, path)).status == 303
    (row,) = await app[STORE].carried_cases(username="agent1")
    assert row["case_number"] == "210200-20250106-0003"
    assert (await gw.client.get("/staff/cases/210200-20250106-0003")).status == 200


async def test_a_notice_raised_during_review_sends_the_case_back_to_the_departments(gw: Gateway) -> None:
    case = _held(gw)
    case.case_number = "210200-20250106-0008"
    case.status = common_pb2.CASE_STATUS_SUPPLEMENT_REQUESTED
    case.open_supplement[0].department = "PLAN"
    assert await gw.sign_in("agent.here") == 303
    page = await (await gw.client.get(PAGE)).text()
    assert "规划局" in page and "/staff/cases/210200-20250106-0008" in page
    assert (await _answer(gw, {"file_SITE-PLAN": ("p.pdf", "application/pdf", PDF)})).status == 303
    assert case.status == common_pb2.CASE_STATUS_ROUTED and not case.open_supplement


async def test_a_material_two_departments_ask_for_is_uploaded_once(gw: Gateway) -> None:
    case = _held(gw)
    case.case_number = "210200-20250106-0008"
    case.open_supplement[0].department = "PLAN"
    case.open_supplement.add(material_code="SITE-PLAN", reason="红线不清", department="DRC")
    assert await gw.sign_in("agent.here") == 303
    page = await (await gw.client.get(PAGE)).text()
    assert page.count('name="file_SITE-PLAN"') == 1 and "缺少总平面图" in page and "红线不清" in page
    assert (await _answer(gw, {"file_SITE-PLAN": ("p.pdf", "application/pdf", PDF)})).status == 303
    (req,) = gw.fakes.intake.supplements
    assert [d.material_code for d in req.documents] == ["SITE-PLAN"]
