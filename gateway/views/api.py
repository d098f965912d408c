"""The JSON API the pages use (documented in gateway/openapi.yaml, served at /api/openapi.json)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from aiohttp import BodyPartReader, web
from google.protobuf import json_format
from google.protobuf.message import Message

from gateway.audit import clean
from gateway.auth import (
    SUPERVISING_ROLES,
    WINDOW_ROLES,
    forbid_outside,
    forbid_unless,
    principal_of,
    require,
)
from gateway.i18n import field_refusal, refusal
from gateway.keys import CONFIG, LIMITS, OPENAPI, clients
from gateway.security import BODY_ERRORS, check_rate
from gateway.uploads import limits_of, send_to_intake, spool
from gateway.views.citizen import CODE, NUMBER
from gateway.views.common import CONTROL, matter
from gateway.views.console import own_department
from onestop.approval.v1 import approval_pb2
from onestop.intake.v1 import intake_pb2
from onestop.routing.v1 import routing_pb2
from onestop.supervision.v1 import supervision_pb2

routes = web.RouteTableDef()


def as_json(message: Message, *, status: int = 200) -> web.Response:
    """A protobuf message as JSON with the proto field names."""
    return web.json_response(
        json_format.MessageToDict(message, preserving_proto_field_name=True),
        status=status,
        dumps=lambda v: json.dumps(v, ensure_ascii=False),
    )


async def small_field(part: BodyPartReader, limit: int = 256) -> str:
    """A short text part of a multipart upload (read with a bound; 400 when longer or not UTF-8)."""
    data = b""
    while chunk := await part.read_chunk(limit + 1):
        data += chunk
        if len(data) > limit:
            raise field_refusal(part.name or "", "{field}过长", "field {field} is too long")
    try:
        value = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise field_refusal(
            part.name or "", "{field}不是 UTF-8 文本", "field {field} is not UTF-8 text"
        ) from None
    if CONTROL.search(value):
        raise field_refusal(
            part.name or "", "{field}含有不允许的控制字符", "field {field} contains control characters"
        )
    return value[:64]


@routes.get("/api/openapi.json", name="openapi")
async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3 description of /api/v1."""
    return web.json_response(request.app[OPENAPI])


@routes.get("/api/v1/matters", name="api_matters")
async def api_matters(request: web.Request) -> web.Response:
    """The catalogue, optionally searched by name or code and category."""
    reply = await clients(request).routing.ListMatters(
        routing_pb2.ListMattersRequest(
            query=request.query.get("q", "")[:100], category=request.query.get("category", "")[:64]
        ),
        timeout=5,
    )
    return as_json(reply)


@routes.get("/api/v1/matters/{code}", name="api_matter")
async def api_matter(request: web.Request) -> web.Response:
    """One matter's guide data."""
    return as_json(await matter(request, request.match_info["code"]))


@routes.post("/api/v1/uploads", name="api_upload")
async def api_upload(request: web.Request) -> web.Response:
    """Upload one document (multipart: matter_code, material_code, then file); returns its digest."""
    check_rate(request, request.app[LIMITS].upload)
    if request.content_type != "multipart/form-data":
        raise refusal(
            web.HTTPUnsupportedMediaType, "请以 multipart/form-data 方式提交", "send multipart/form-data"
        )
    ceiling = request.app[CONFIG].max_upload_bytes
    if request.content_length and request.content_length > ceiling + 64 * 1024:
        raise web.HTTPRequestEntityTooLarge(
            max_size=ceiling,
            actual_size=request.content_length,
            reason=f"The file is larger than {ceiling // (1024 * 1024)} MB",
        )
    try:
        reader = await request.multipart()
        fields: dict[str, str] = {}
        while True:
            part = await reader.next()
            if part is None:
                raise refusal(web.HTTPBadRequest, "上传内容中没有文件", "no file in the upload")
            if not isinstance(part, BodyPartReader):
                raise refusal(
                    web.HTTPBadRequest, "不接受嵌套的 multipart 内容", "nested multipart is not accepted"
                )
            if part.name in ("matter_code", "material_code", "_csrf"):
                fields[part.name] = await small_field(part)
                continue
            if part.name != "file":
                raise field_refusal(
                    clean(part.name or "", 64), "不应提交的字段:{field}", "unexpected field {field}"
                )
            break
        m = await matter(request, fields.get("matter_code", ""))
        material, limit = limits_of(m, fields.get("material_code", ""), ceiling)

        async def body(p: BodyPartReader = part) -> AsyncIterator[bytes]:
            while data := await p.read_chunk(256 * 1024):
                yield data

        fh, _ = await spool(body(), limit)
        filename = part.filename or "document"
        declared = part.headers.get("Content-Type", "")
    except BODY_ERRORS:  # a missing boundary, a broken part header ...
        raise refusal(
            web.HTTPBadRequest, "上传内容无法读取,请重新上传", "The upload could not be read; send it again"
        ) from None
    doc = await send_to_intake(
        clients(request),
        fh,
        filename=filename,
        declared=declared,
        matter_code=m.code,
        material=material,
        limit=limit,
    )
    return as_json(doc, status=201)


@routes.post("/api/v1/cases/lookup", name="api_lookup")
async def api_lookup(request: web.Request) -> web.Response:
    """A case with its timeline by number and query code (JSON body; rate-limited per address)."""
    check_rate(request, request.app[LIMITS].lookup)
    try:
        body = await request.json()
    except ValueError:
        raise refusal(
            web.HTTPBadRequest,
            "请提交含 number 和 code 的 JSON 对象",
            "send a JSON object with number and code",
        ) from None
    number = str(body.get("number", "")) if isinstance(body, dict) else ""
    code = str(body.get("code", "")) if isinstance(body, dict) else ""
    if not NUMBER.match(number) or not CODE.match(code):
        raise refusal(
            web.HTTPNotFound,
            "办件编号与查询码不匹配,或没有这个办件",
            "No case with this number and query code",
        )
    reply = await clients(request).intake.TrackCase(
        intake_pb2.TrackCaseRequest(case_number=number, query_code=code), timeout=5
    )
    out = json_format.MessageToDict(reply, preserving_proto_field_name=True)
    for private in ("id_number", "phone", "email"):
        out.get("case", {}).get("applicant", {}).pop(private, None)
    return web.json_response(out, dumps=lambda v: json.dumps(v, ensure_ascii=False))


@routes.get("/api/v1/statistics", name="api_statistics")
async def api_statistics(request: web.Request) -> web.Response:
    """Statistics rows grouped by center, department, window, staff or matter (from supervision)."""
    group = request.query.get("group_by", "department")
    if group not in ("center", "department", "window", "staff", "matter"):
        raise refusal(
            web.HTTPBadRequest,
            "group_by 只能是 center、department、window、staff 或 matter",
            "group_by must be center, department, window, staff or matter",
        )
    if group == "staff":  # figures on named people are for the center's supervisors
        who = principal_of(request)
        if who is None:
            raise refusal(
                web.HTTPUnauthorized,
                "按工作人员统计仅对已登录的工作人员开放",
                "statistics by staff member are for signed-in staff",
            )
        forbid_unless(
            who.role in SUPERVISING_ROLES,
            "statistics by staff member are for supervisors",
            zh="按工作人员统计仅对督查人员开放",
        )
        forbid_outside(who)
    return as_json(
        await clients(request).supervision.GetStatistics(
            supervision_pb2.GetStatisticsRequest(group_by=group), timeout=5
        )
    )


@routes.get("/api/v1/staff/queue", name="api_queue")
@require(*WINDOW_ROLES, here=True)
async def api_queue(request: web.Request) -> web.Response:
    """The signed-in window's queue as JSON (the department comes from the session, never the query)."""
    who = principal_of(request)
    assert who is not None
    own_department(request, who)
    return as_json(
        await clients(request).approval.ListQueue(
            approval_pb2.ListQueueRequest(
                center=who.center,
                department=who.department,
                include_closed=request.query.get("closed") == "1",
                limit=200,
            ),
            timeout=5,
        )
    )
