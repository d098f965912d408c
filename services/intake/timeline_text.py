"""How each event reads on a case's timeline, in zh-CN and English."""

from __future__ import annotations

from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from services.common.events import kind
from services.common.special_procedures import NAMES

_OUTCOME = {
    common_pb2.OUTCOME_APPROVED: ("准予许可", "approved"),
    common_pb2.OUTCOME_REJECTED: ("不予许可", "rejected"),
    common_pb2.OUTCOME_DEEMED_APPROVED: ("超时默许,视为通过", "deemed approved"),
    common_pb2.OUTCOME_WITHDRAWN: ("已撤回", "withdrawn"),
}
_TASK = {
    common_pb2.TASK_STATUS_APPROVED: ("同意", "approved"),
    common_pb2.TASK_STATUS_REJECTED: ("不同意", "rejected"),
    common_pb2.TASK_STATUS_SUPPLEMENT_REQUESTED: ("要求补正", "asked for a supplement"),
    common_pb2.TASK_STATUS_DEEMED_APPROVED: ("超时默许", "deemed approved"),
}


def describe(env: events_pb2.Envelope) -> tuple[str, str, str, str]:
    """(summary_zh, summary_en, actor, department) of one event."""
    what = kind(env)
    body = getattr(env, what)
    if what == "case_submitted":
        return "提交申请", "submitted", body.submitted_by.username, ""
    if what == "supplement_requested":
        items = "; ".join(i.reason for i in body.items)
        return f"一次性告知补正材料:{items}", f"one-time supplement notice: {len(body.items)} item(s)", "", ""
    if what == "case_supplemented":
        return "已补正材料", "supplemented", body.by.username, ""
    if what == "case_accepted":
        return (
            f"正式受理,报件编号 {env.case_number}",
            f"accepted as {env.case_number}",
            body.accepted_by.username,
            "",
        )
    if what == "case_routed":
        # The departments are named by their own entries (task_opened), which pages show with names.
        n = len(body.tasks)
        if body.preliminary_review:
            return (
                f"本中心初审(报上级中心决定),分送 {n} 个部门窗口",
                f"preliminary review here by {n} department window(s); decided above",
                "",
                "",
            )
        return f"分送部门窗口并联审批({n} 个部门窗口)", f"routed to {n} department window(s)", "", ""
    if what == "case_forwarded":
        return f"上报上级中心 {body.parent_center}", f"forwarded to {body.parent_center}", "", ""
    if what == "task_opened":
        return "部门窗口已接件", "department window received the case", "", body.task.department
    if what == "task_decided":
        zh, en = _TASK.get(body.status, ("处理", "handled"))
        return f"部门审批意见:{zh}", f"department decision: {en}", body.by.username, body.department
    if what == "supplement_round_opened":
        items = "; ".join(f"{i.department}:{i.reason}" for i in body.items)
        return (
            f"审查中一次性告知补正:{items}",
            f"supplement notice during review ({len(body.items)} item(s))",
            "",
            "",
        )
    if what == "extension_decided":
        zh = f"延期 {body.days} 个工作日已批准" if body.approved else "延期申请未批准"
        en = f"extension of {body.days} working day(s) approved" if body.approved else "extension refused"
        return zh, en, body.by.username, ""
    if what == "special_procedure_started":
        zh, en = NAMES.get(body.procedure, (body.procedure, body.procedure))
        return (
            f"启动特别程序:{zh},预计 {body.expected_days} 个工作日,期间不计入办理期限",
            f"special procedure started: {en}, expected {body.expected_days} working day(s), not counted",
            body.by.username,
            body.department,
        )
    if what == "special_procedure_ended":
        zh, en = NAMES.get(body.procedure, (body.procedure, body.procedure))
        return f"特别程序结束:{zh}", f"special procedure ended: {en}", body.by.username, body.department
    if what == "case_concluded":
        zh, en = _OUTCOME.get(body.outcome, ("办结", "concluded"))
        if body.preliminary_review:  # not the decision: the parent decides after an approving review
            return f"初审结论:{zh}", f"preliminary review: {en}", "", ""
        return f"办结:{zh}", f"concluded: {en}", "", ""
    if what == "case_withdrawn":
        return "申请人撤回申请", "withdrawn by the applicant", body.by.username, ""
    if what == "key_project_designated":
        return (
            "认定为重点项目(绿色通道)",
            "designated a key project (green channel)",
            body.designated_by.username,
            "",
        )
    if what == "task_urged":
        return "管理办公室催办", "urged by the management office", "", body.department
    if what == "task_deemed_approved":
        return (
            "超时默许,加盖行政许可专用章",
            "deemed approved under the management office's seal",
            "",
            body.department,
        )
    if what == "case_delivered":
        return f"结果已送达({body.method})", f"result delivered ({body.method})", body.by.username, ""
    if what == "evaluation_submitted":
        zh, en = (
            ("回访评价", "follow-up rating") if body.follow_up else ("申请人评价", "rated by the applicant")
        )
        return f"{zh}:{body.rating} 分(满分 5 分)", f"{en}: {body.rating} of 5", "", ""
    return what, what, "", ""
