"""zh-CN first, English second: the visitor's choice lives in a cookie."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import grpc
from aiohttp import web
from google.rpc import error_details_pb2
from grpc_status import rpc_status

LANGUAGES = ("zh-CN", "en")


def language_of(request: web.Request) -> str:
    """The visitor's language: ?lang=, then the cookie, then zh-CN."""
    lang = request.query.get("lang") or request.cookies.get("lang") or "zh-CN"
    return lang if lang in LANGUAGES else "zh-CN"


def translator(lang: str) -> Callable[[str, str], str]:
    """t(zh, en) picks the visitor's language."""

    def t(zh: str, en: str) -> str:
        return en if lang == "en" else zh

    return t


_ZH = "onestop_reason_zh"
_E = TypeVar("_E", bound=web.HTTPException)

# How the form fields are called on the pages (the refusal names the field the visitor sees).
FIELD_LABELS: dict[str, str] = {
    "agent": "代办员",
    "answer": "答复",
    "applicant_kind": "申请人类型",
    "case_id": "办件编号",
    "case_number": "办件编号",
    "code": "查询码",
    "collector": "收费员",
    "comment": "评价意见",
    "contact": "联系方式",
    "day": "日期",
    "days": "天数",
    "email": "电子邮箱",
    "expected_days": "预计工作日",
    "fee_code": "收费项目",
    "id_number": "证件号码",
    "matter_code": "事项编码",
    "method": "方式",
    "name": "姓名或名称",
    "next": "下一步",
    "note": "备注",
    "number": "办件编号",
    "opinion": "审批意见",
    "payer": "缴费人",
    "phone": "联系电话",
    "procedure": "特别程序",
    "procedure_id": "特别程序",
    "promised_date": "承诺办结日期",
    "query_code": "查询码",
    "question": "问题",
    "rating": "评价",
    "reason": "理由",
    "reasons": "理由",
    "receipt_number": "票据号",
    "receiver_name": "签收人",
    "request_id": "申请标识",
    "result": "结果",
    "text": "内容",
    "title": "申请标题",
    "tracker": "跟踪人",
}


def refusal(kind: type[_E], zh: str, en: str) -> _E:
    """An HTTP error whose message the page shows in the visitor's language (the reason phrase, and
    the JSON API's message, stay English)."""
    exc = kind(reason=en)
    setattr(exc, _ZH, zh)
    return exc


def field_refusal(name: str, zh: str, en: str) -> web.HTTPBadRequest:
    """A 400 about one form field: ``zh`` and ``en`` take ``{field}`` (its label, or its name)."""
    return refusal(web.HTTPBadRequest, zh.format(field=FIELD_LABELS.get(name, name)), en.format(field=name))


def reason_zh(exc: web.HTTPException) -> str:
    """The Chinese message of a refusal built by `refusal`, or empty."""
    return str(getattr(exc, _ZH, ""))


def service_reason_zh(exc: grpc.aio.AioRpcError) -> str:
    """The Chinese text a service gave with its refusal (a zh-CN google.rpc.LocalizedMessage in the
    status details), or empty when it gave none."""
    try:
        status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    except ValueError:  # details that do not match the call's code and message: none of ours
        return ""
    if status is None:
        return ""
    for detail in status.details:
        if detail.Is(error_details_pb2.LocalizedMessage.DESCRIPTOR):
            message = error_details_pb2.LocalizedMessage()
            detail.Unpack(message)
            if message.locale.lower().startswith("zh"):
                return message.message
    return ""
