"""A case's documents, downloaded: staff who may open the case detail, and the applicant with the query code.

The bytes come from intake's DownloadDocument stream, which serves only a digest the case refers to and
verifies it first; a damaged stored copy is a clear error page (with a reference), never a half file.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from urllib.parse import quote

import grpc
from aiohttp import web

from gateway.audit import note, record
from gateway.auth import Principal, principal_of, require
from gateway.i18n import refusal
from gateway.keys import clients
from gateway.uploads import DIGEST, TYPE_NAMES
from gateway.views.citizen import NUMBER, code_for
from gateway.views.common import online_actor, render, tr
from gateway.views.console import case_in_scope
from onestop.intake.v1 import intake_pb2
from services.common.logging import get_logger

log = get_logger(__name__)
routes = web.RouteTableDef()
_UNSAFE = re.compile(r'[\x00-\x1f\x7f\ud800-\udfff"\\/;]+')
_TIMEOUT = 600  # the whole stream, paced by the browser: a 50 MB document over a slow link


def disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback and the UTF-8 name (RFC 6266), stripped of anything odd."""
    name = _UNSAFE.sub("_", filename).strip(" ._")[:200] or "document"
    fallback = "".join(ch if 32 <= ord(ch) < 127 else "_" for ch in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _checked(number: str, digest: str) -> None:
    if not NUMBER.match(number) or not DIGEST.match(digest):
        raise refusal(web.HTTPNotFound, "该办件中没有这份材料", "No such document in this case")


async def _send(
    request: web.Request, req: intake_pb2.DownloadDocumentRequest, who: Principal | None
) -> web.StreamResponse:
    """Stream one document; the first chunk (or the service's refusal) arrives before any header."""
    stream: AsyncIterator[intake_pb2.DocumentChunk] = aiter(
        clients(request).intake.DownloadDocument(req, timeout=_TIMEOUT)
    )
    try:
        first = await anext(stream, None)
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.DATA_LOSS:
            raise
        return await _damaged(request, req, who, exc.details() or "")
    if first is None:
        raise refusal(web.HTTPBadGateway, "材料服务没有返回内容", "The document service sent nothing")
    if who is not None:  # reading a case's document is an access worth recording, not only refusals
        await record(
            request, "view_document", outcome="ok", status=200, digest=req.digest, case_number=req.case_number
        )
    response = web.StreamResponse(
        headers={
            "Content-Type": first.content_type
            if first.content_type in TYPE_NAMES
            else "application/octet-stream",
            "Content-Disposition": disposition(first.filename),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        }
    )
    response.content_length = first.size
    await response.prepare(request)
    await response.write(first.data)
    try:
        async for chunk in stream:
            await response.write(chunk.data)
    except grpc.aio.AioRpcError as exc:
        # Headers are gone: cut the connection so the browser sees an incomplete download, not a file.
        log.error(
            "document stream broke off", case_number=req.case_number, digest=req.digest, code=exc.code().name
        )
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


async def _damaged(
    request: web.Request, req: intake_pb2.DownloadDocumentRequest, who: Principal | None, detail: str
) -> web.Response:
    reference = uuid.uuid4().hex[:12]
    log.error(
        "stored document is damaged",
        case_number=req.case_number,
        digest=req.digest,
        detail=detail,
        reference=reference,
    )
    if who is not None:
        await record(
            request,
            "view_document",
            outcome="error",
            status=500,
            reason="stored copy damaged",
            digest=req.digest,
            reference=reference,
        )
    t = tr(request)
    return render(
        request,
        "error.html",
        {
            "status": 500,
            "title_zh": "材料无法提供",
            "title_en": "The document cannot be served",
            "message": t(
                "该材料的存档副本已损坏或缺失,无法下载。已记录此问题,请联系窗口工作人员。",
                "The stored copy of this document is damaged or missing and cannot be downloaded. "
                "The problem was logged; please contact the window staff.",
            ),
            "reference": reference,
        },
        status=500,
    )


# No HEAD: it would hash the whole stored file and write an audit record for nothing.
@routes.get("/staff/cases/{number}/documents/{digest}", name="staff_document", allow_head=False)
@require()
async def staff_document(request: web.Request) -> web.StreamResponse:
    """A document of a case, for whoever may open the case detail (the same check as that page)."""
    who = principal_of(request)
    assert who is not None  # guaranteed by @require
    number, digest = request.match_info["number"], request.match_info["digest"]
    _checked(number, digest)
    note(request, digest=digest)
    await case_in_scope(request, who, number)
    req = intake_pb2.DownloadDocumentRequest(case_number=number, digest=digest, by=who.actor())
    return await _send(request, req, who)


@routes.get("/track/{number}/documents/{digest}", name="track_document", allow_head=False)
async def track_document(request: web.Request) -> web.StreamResponse:
    """A document the applicant sent, with the query code this browser unlocked the case with."""
    number, digest = request.match_info["number"], request.match_info["digest"]
    code = code_for(request, number)
    _checked(number, digest)
    req = intake_pb2.DownloadDocumentRequest(
        case_number=number, digest=digest, query_code=code, by=online_actor(request)
    )
    return await _send(request, req, None)
