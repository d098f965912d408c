"""Public pages: service guides and search, form templates, questions, announcements, statistics, seals."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from aiohttp import web
from google.protobuf.message import DecodeError

from gateway import charts
from gateway.clients import call_or_none, optional
from gateway.i18n import refusal
from gateway.keys import CONFIG, LIMITS, clients, now, store
from gateway.labels import CATEGORIES
from gateway.security import check_rate
from gateway.views.common import (
    center_names,
    departments,
    form_data,
    light,
    matter,
    redirect,
    remaining_days,
    render,
    text,
    tr,
)
from onestop.approval.v1 import approval_pb2
from onestop.common.v1 import common_pb2
from onestop.intake.v1 import intake_pb2
from onestop.routing.v1 import routing_pb2
from onestop.supervision.v1 import supervision_pb2

routes = web.RouteTableDef()


@routes.get("/", name="index")
async def index(request: web.Request) -> web.Response:
    """Service guides: search by name and category (办事指南)."""
    query = request.query.get("q", "").strip()[:100]
    category = request.query.get("category", "")
    if category and category not in CATEGORIES:
        raise refusal(web.HTTPBadRequest, "未知的分类", "unknown category")
    reply = await clients(request).routing.ListMatters(
        routing_pb2.ListMattersRequest(query=query, category=category), timeout=5
    )
    return render(request, "index.html", {"matters": reply.matters, "query": query, "category": category})


@routes.get("/guide/{code}", name="guide")
async def guide(request: web.Request) -> web.Response:
    """One matter's service guide with its FAQ and the question form."""
    m = await matter(request, request.match_info["code"])
    faq = await store(request).faq(m.code)
    return render(
        request,
        "guide.html",
        {
            "matter": m,
            "departments": await departments(request),
            "faq": faq,
            "asked": request.query.get("asked") == "1",
        },
    )


@routes.get("/guide/{code}/forms/{material}", name="form_template")
async def form_template(request: web.Request) -> web.StreamResponse:
    """A material's blank form: the center's file when installed, else a printable template."""
    m = await matter(request, request.match_info["code"])
    material = next((x for x in m.materials if x.code == request.match_info["material"]), None)
    if material is None or not material.form_template:
        raise refusal(web.HTTPNotFound, "该材料没有表格模板", "this material has no form template")
    root = request.app[CONFIG].forms_dir
    if root is not None:
        candidate = (root / material.form_template).resolve()
        if candidate.is_relative_to(root.resolve()) and candidate.is_file():
            return web.FileResponse(
                candidate, headers={"Content-Disposition": f'attachment; filename="{candidate.name}"'}
            )
    response = render(request, "form_template.html", {"matter": m, "material": material})
    name = f"{m.code}-{material.code}.html".lower()
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@routes.post("/guide/{code}/questions", name="ask")
async def ask(request: web.Request) -> web.Response:
    """A citizen's question (咨询) goes to the window of the matter's lead department."""
    check_rate(request, request.app[LIMITS].question)
    m = await matter(request, request.match_info["code"])
    data = await form_data(request)
    question = text(data, "question", max_len=1000, required=True)
    lead = next((s.department for s in m.workflow if s.lead), m.workflow[0].department if m.workflow else "")
    await store(request).add_question(
        matter_code=m.code,
        department=lead,
        question=question,
        asker_name=text(data, "name", max_len=64),
        asker_contact=text(data, "contact", max_len=128),
        now=now(request),
    )
    raise redirect(f"/guide/{m.code}?asked=1#faq")


@routes.get("/announcements", name="announcements")
async def announcements(request: web.Request) -> web.Response:
    """Public announcement of decisions (办结公示): no personal data, companies by name."""
    rows: list[common_pb2.Case] = []
    for status in (common_pb2.CASE_STATUS_CONCLUDED, common_pb2.CASE_STATUS_DELIVERED):
        reply = await clients(request).intake.ListCases(
            intake_pb2.ListCasesRequest(status=status, page=common_pb2.PageRequest(page_size=100)), timeout=5
        )
        rows.extend(reply.cases)
    rows.sort(key=lambda c: c.concluded_at.seconds, reverse=True)
    names = {}
    for c in rows:
        if c.matter_code not in names:
            try:
                names[c.matter_code] = await matter(request, c.matter_code)
            except Exception:  # noqa: BLE001 - a retired matter still shows by its code
                names[c.matter_code] = routing_pb2.Matter(
                    code=c.matter_code, name_zh=c.matter_code, name_en=c.matter_code
                )
    return render(request, "announcements.html", {"cases": rows[:100], "matters": names})


async def statistics_data(request: web.Request) -> dict[str, Any]:
    """Figures for the public board and the supervisors' dashboard; each source may be missing."""
    t = tr(request)
    names = await departments(request)
    stats, missing = await optional(
        call_or_none(
            clients(request),
            "supervision",
            "GetStatistics",
            supervision_pb2.GetStatisticsRequest(group_by="department"),
        ),
        "supervision",
    )
    # Per center: the cases sent up to the parent, which the department figures never include.
    by_center, _ = await optional(
        call_or_none(
            clients(request),
            "supervision",
            "GetStatistics",
            supervision_pb2.GetStatisticsRequest(group_by="center"),
        ),
        "supervision",
    )
    queue, _ = await optional(
        call_or_none(
            clients(request),
            "approval",
            "ListQueue",
            approval_pb2.ListQueueRequest(include_closed=True, limit=1000),
        ),
        "approval",
    )
    by_dept: dict[str, dict[int, int]] = {}
    for task in queue.tasks if queue else []:
        by_dept.setdefault(task.department, {}).setdefault(task.status, 0)
        by_dept[task.department][task.status] += 1
    label = {code: t(*names.get(code, (code, code))) for code in set(by_dept) | set(names)}
    instant = now(request)
    urgency: dict[int, int] = {
        common_pb2.CLOCK_STATE_GREEN: 0,
        common_pb2.CLOCK_STATE_YELLOW: 0,
        common_pb2.CLOCK_STATE_RED: 0,
    }
    for task in queue.tasks if queue else []:
        if task.status in (common_pb2.TASK_STATUS_PENDING, common_pb2.TASK_STATUS_CLAIMED):
            state = light(remaining_days(task.due_at, instant), task.due_at, instant)
            if state in urgency:
                urgency[state] += 1
    open_rows = sorted(
        ((label[d], sum(n for s, n in v.items() if s in (2, 3, 4))) for d, v in by_dept.items()),
        key=lambda r: -r[1],
    )
    done_rows = sorted(
        ((label[d], sum(n for s, n in v.items() if s in (5, 6, 7))) for d, v in by_dept.items()),
        key=lambda r: -r[1],
    )
    out: dict[str, Any] = {
        "open_chart": charts.bar_chart(
            [r for r in open_rows if r[1]][:16], title=t("各部门在办件", "Open tasks by department")
        ),
        "done_chart": charts.bar_chart(
            [r for r in done_rows if r[1]][:16], title=t("各部门已办结", "Decided tasks by department")
        ),
        "urgency_chart": charts.lights(
            [
                (t("正常", "on time"), urgency[common_pb2.CLOCK_STATE_GREEN], "green"),
                (t("临近到期", "due soon"), urgency[common_pb2.CLOCK_STATE_YELLOW], "yellow"),
                (t("已超时", "overdue"), urgency[common_pb2.CLOCK_STATE_RED], "red"),
            ],
            title=t("在办任务时限状态", "Open tasks by time left"),
        ),
        "stats_missing": missing,
        "rows": [],
        "rate_chart": "",
        "rating_chart": "",
        "forwarded_rows": [],
    }
    sent_up = [r for r in by_center.rows if r.forwarded or r.forwarded_waiting] if by_center else []
    if sent_up:
        centers = await center_names(request)
        out["forwarded_rows"] = [(t(*centers.get(r.key, (r.key, r.key))), r) for r in sent_up]
    if stats is not None:
        rows = [(label.get(r.key, r.key), r) for r in stats.rows]
        out["rows"] = rows
        out["rate_chart"] = charts.bar_chart(
            [(n, round(r.on_time_rate * 100, 1)) for n, r in rows][:16],
            title=t("按时办结率 (%)", "On-time rate (%)"),
            max_value=100,
            unit="%",
        )
        out["rating_chart"] = charts.bar_chart(
            [(n, round(r.avg_rating, 2)) for n, r in rows if r.evaluations][:16],
            title=t("平均满意度 (1–5)", "Average rating (1–5)"),
            max_value=5,
        )
    return out


@routes.get("/statistics", name="statistics")
async def statistics(request: web.Request) -> web.Response:
    """The public statistics board with server-rendered SVG charts."""
    return render(request, "statistics.html", await statistics_data(request))


def decode_sealed(value: str) -> common_pb2.SealedDecision | None:
    """A SealedDecision from base64 (URL-safe or standard), or None when it is not one."""
    raw = value.strip().replace("\n", "").replace(" ", "")
    if not raw or len(raw) > 8000:
        return None
    try:
        data = base64.urlsafe_b64decode(raw.replace("+", "-").replace("/", "_") + "=" * (-len(raw) % 4))
        sealed = common_pb2.SealedDecision.FromString(data)
    except (binascii.Error, ValueError, DecodeError):
        return None
    return sealed if sealed.seal.signature else None


def encode_sealed(sealed: common_pb2.SealedDecision) -> str:
    """The URL-safe text form of a sealed decision (what the 'verify' link carries)."""
    return base64.urlsafe_b64encode(sealed.SerializeToString()).decode().rstrip("=")


async def _verify(request: web.Request, value: str) -> web.Response:
    key = await clients(request).approval.GetSealKey(approval_pb2.GetSealKeyRequest(), timeout=5)
    context: dict[str, Any] = {"key": key, "value": value, "result": None, "sealed": None, "malformed": False}
    if value:
        sealed = decode_sealed(value)
        if sealed is None:
            context["malformed"] = True
        else:
            context["sealed"] = sealed
            context["result"] = await clients(request).approval.VerifySeal(
                approval_pb2.VerifySealRequest(sealed=sealed), timeout=5
            )
    return render(request, "verify.html", context)


@routes.get("/verify", name="verify")
async def verify_get(request: web.Request) -> web.Response:
    """Verify a sealed decision given in the link, and show the center's public key."""
    return await _verify(request, request.query.get("sealed", "")[:8000])


@routes.post("/verify")
async def verify_post(request: web.Request) -> web.Response:
    """Verify a pasted sealed decision."""
    return await _verify(request, text(await form_data(request), "sealed", max_len=8000))


@routes.get("/seal-key.pem", name="seal_key")
async def seal_key(request: web.Request) -> web.Response:
    """The center's public seal key as PEM, for offline verification."""
    key = await clients(request).approval.GetSealKey(approval_pb2.GetSealKeyRequest(), timeout=5)
    return web.Response(
        text=key.public_key_pem,
        content_type="application/x-pem-file",
        headers={"Content-Disposition": f'attachment; filename="seal-{key.center}-{key.key_id}.pem"'},
    )
