"""Downloading a case's documents: staff who may open the case, the applicant with the query code."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import aiohttp
import grpc

from gateway.keys import STORE
from gateway.views.documents import disposition
from onestop.intake.v1 import intake_pb2
from tests.unit.gateway.conftest import Gateway
from tests.unit.gateway.fakes import CODE, NUMBER, PDF, rpc_error

DIGEST = hashlib.sha256(PDF).hexdigest()
STAFF_URL = f"/staff/cases/{NUMBER}/documents/{DIGEST}"
TRACK_URL = f"/track/{NUMBER}/documents/{DIGEST}"


async def _actions(gw: Gateway) -> list[tuple[str, str, str]]:
    app = gw.client.app
    assert app is not None
    rows = await app[STORE].audit_records()
    return [(r["actor"], r["action"], r["detail"]["outcome"]) for r in rows if r["action"] != "sign_in"]


async def test_a_clerk_of_the_case_department_downloads_the_exact_bytes_as_an_attachment(gw: Gateway) -> None:
    assert await gw.sign_in("clerk.plan") == 303
    page = await (await gw.client.get(f"/staff/cases/{NUMBER}")).text()
    assert f'href="{STAFF_URL}"' in page
    resp = await gw.client.get(STAFF_URL)
    assert resp.status == 200
    assert await resp.read() == PDF
    assert resp.headers["Content-Type"] == "application/pdf"
    assert resp.headers["Content-Disposition"].startswith("attachment;")
    assert "filename*=UTF-8''%E7%94%B3%E8%AF%B7%E8%A1%A8.pdf" in resp.headers["Content-Disposition"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Cache-Control"] == "no-store"
    assert ("clerk.plan", "view_document", "ok") in await _actions(gw)


async def test_a_clerk_of_another_department_is_refused_and_the_refusal_is_audited(gw: Gateway) -> None:
    assert await gw.sign_in("clerk.drc") == 303
    resp = await gw.client.get(STAFF_URL)
    assert resp.status == 403
    assert PDF not in await resp.read()
    assert ("clerk.drc", "view_document", "refused") in await _actions(gw)


async def test_a_visitor_is_sent_to_sign_in_and_an_odd_digest_is_not_found(gw: Gateway) -> None:
    resp = await gw.client.get(STAFF_URL, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/staff/login")
    assert await gw.sign_in("supervisor") == 303
    assert (await gw.client.get(f"/staff/cases/{NUMBER}/documents/{'0' * 64}")).status == 404
    assert (await gw.client.get(f"/staff/cases/{NUMBER}/documents/..%2F..%2Fetc")).status == 404


async def test_the_applicant_downloads_only_with_the_query_code(gw: Gateway) -> None:
    resp = await gw.client.get(TRACK_URL, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == f"/track?number={NUMBER}"
    unlocked = await gw.client.get(f"/track?number={NUMBER}&code={CODE}", allow_redirects=False)
    assert unlocked.status == 303
    page = await (await gw.client.get(f"/track/{NUMBER}")).text()
    assert f'href="{TRACK_URL}"' in page
    resp = await gw.client.get(TRACK_URL)
    assert resp.status == 200 and await resp.read() == PDF
    assert resp.headers["Cache-Control"] == "no-store"


async def test_a_damaged_stored_copy_is_a_clear_page_with_a_reference(gw: Gateway) -> None:
    gw.fakes.intake.stored[DIGEST] = PDF + b"tampered"
    assert await gw.sign_in("clerk.plan") == 303
    resp = await gw.client.get(STAFF_URL)
    body = await resp.text()
    assert resp.status == 500
    assert "damaged or missing" in body or "已损坏或缺失" in body
    assert "Traceback" not in body
    assert re.search(r"<code>[0-9a-f]{12}</code>", body), "a reference to quote to the staff"
    assert ("clerk.plan", "view_document", "error") in await _actions(gw)


def test_the_download_name_is_stripped_of_quotes_paths_and_control_characters() -> None:
    value = disposition('a"b\r\nSet-Cookie: x=1;/../申请.pdf')
    assert "\r" not in value and "\n" not in value
    assert value.startswith('attachment; filename="a_b_Set-Cookie: x=1_.._')
    assert value.endswith("%E7%94%B3%E8%AF%B7.pdf")
    assert disposition("") == "attachment; filename=\"document\"; filename*=UTF-8''document"


async def test_a_stream_that_breaks_off_is_an_incomplete_download_not_a_short_file(gw: Gateway) -> None:
    async def broken(req: Any, timeout: float = 0) -> Any:
        yield intake_pb2.DocumentChunk(
            filename="a.pdf", content_type="application/pdf", size=len(PDF), digest=DIGEST, data=PDF[:8]
        )
        raise rpc_error(grpc.StatusCode.DATA_LOSS, "altered while it was being sent")

    gw.fakes.intake.DownloadDocument = broken  # type: ignore[method-assign]
    assert await gw.sign_in("clerk.plan") == 303
    resp = await gw.client.get(STAFF_URL)
    assert resp.status == 200 and resp.content_length == len(PDF)
    try:
        body = await resp.read()
    except aiohttp.ClientPayloadError:
        body = b""
    assert body != PDF and len(body) < len(PDF)
