"""Bilingual names of statuses, outcomes and categories, and small formatting filters for templates."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from google.protobuf.timestamp_pb2 import Timestamp

from services.common import special_procedures

SHANGHAI = ZoneInfo("Asia/Shanghai")

CATEGORIES = {
    "business_registration": ("工商企业注册登记", "business registration"),
    "capital_construction": ("基本建设", "capital construction"),
    "foreign_investment": ("外商投资", "foreign investment"),
    "real_estate": ("房地产开发", "real-estate development"),
    "technical_renovation": ("技术改造", "technical renovation"),
    "convenience": ("便民服务", "convenience service"),
    "other": ("其他", "other"),
}
CASE_STATUS = {
    0: ("未知", "unknown"),
    1: ("已提交(预审中)", "submitted (pre-review)"),
    2: ("待补正", "supplement requested"),
    3: ("已受理", "accepted"),
    4: ("审批中", "under review"),
    5: ("已上报上级中心", "forwarded upward"),
    6: ("已办结", "concluded"),
    7: ("已送达", "delivered"),
}
OUTCOME = {
    0: ("", ""),
    1: ("准予许可", "approved"),
    2: ("不予许可", "rejected"),
    3: ("超时默许(视为准予)", "deemed approved"),
    4: ("已撤回", "withdrawn"),
}
TASK_STATUS = {
    0: ("未知", "unknown"),
    1: ("等待前置审批", "waiting for prerequisites"),
    2: ("待办", "pending"),
    3: ("办理中", "claimed"),
    4: ("待补正", "waiting for a supplement"),
    5: ("同意", "approved"),
    6: ("不同意", "rejected"),
    7: ("超时默许", "deemed approved"),
    8: ("已取消", "cancelled"),
}
CLOCK_STATE = {
    0: ("期限待定(工作日历缺失)", "no due date yet (calendar missing)", "grey"),  # only then
    1: ("正常", "on time", "green"),
    2: ("黄灯预警", "yellow warning", "yellow"),
    3: ("红灯超时", "red: overdue", "red"),
    4: ("暂停(补正或特别程序中)", "paused (supplement or special procedure)", "grey"),
    5: ("已停止", "stopped", "grey"),
}
CHANNEL = {
    0: ("未知", "unknown"),
    1: ("窗口收件", "at the counter"),
    2: ("网上申请", "online"),
    3: ("代办员代办", "through an agent"),
    4: ("下级中心上传", "uploaded by a lower center"),
}
APPLICANT_KIND = {1: ("个人", "person"), 2: ("企业/单位", "company or organisation")}
RATINGS = {
    5: ("非常满意", "very satisfied"),
    4: ("满意", "satisfied"),
    3: ("基本满意", "neutral"),
    2: ("不满意", "dissatisfied"),
    1: ("非常不满意", "very dissatisfied"),
}

ROLE_NAMES = {
    "window_clerk": ("窗口工作人员", "window clerk"),
    "chief_representative": ("首席代表", "chief representative"),
    "department_head": ("部门负责人", "department head"),
    "center_director": ("中心主任", "center director"),
    "supervisor": ("管理办(督查)", "management office (supervisor)"),
    "tracker": ("督办人", "tracker"),
    "administrator": ("系统管理员", "administrator"),
    "agent": ("代办员", "agent"),
    "liaison_officer": ("联络员", "liaison officer"),
    "fee_collector": ("收费员", "fee collector"),
}
# Convenience service (R20): fee ledger entries and how a result reaches the applicant.
ENTRY_KINDS = {"charge": ("收费", "charge"), "refund": ("退费", "refund"), "void": ("作废", "void")}
FEE_KINDS = {
    "administrative": ("行政事业性收费", "administrative fee"),
    "other": ("其他收费", "other charge"),
    "fine": ("罚没款", "fine"),
}
PAY_METHODS = {"cash": ("现金", "cash"), "card": ("刷卡", "card"), "transfer": ("转账", "transfer")}
DELIVERY_METHODS = {
    "handed_over": ("当面交付", "handed over"),
    "posted": ("邮寄", "posted"),
    "picked_up": ("本人领取", "picked up"),
}


def when(value: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A protobuf Timestamp or datetime in Beijing time; an unset one is a dash."""
    if isinstance(value, Timestamp):
        if not value.seconds and not value.nanos:
            return "—"
        value = value.ToDatetime(tzinfo=UTC)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(SHANGHAI).strftime(fmt)
    return "—"


def mask(value: str, keep: int = 3) -> str:
    """An ID or phone number with the middle hidden (staff pages never need the whole)."""
    if len(value) <= keep * 2:
        return "*" * len(value)
    return value[:keep] + "*" * (len(value) - keep * 2) + value[-keep:]


def size(value: int) -> str:
    """Bytes as a short human figure."""
    if value >= 1024 * 1024:
        return f"{value / 1024 / 1024:.1f} MB"
    if value >= 1024:
        return f"{value / 1024:.0f} KB"
    return f"{value} B"


FILTERS = {"when": when, "mask": mask, "size": size}
GLOBALS = {
    "CATEGORIES": CATEGORIES,
    "CASE_STATUS": CASE_STATUS,
    "OUTCOME": OUTCOME,
    "TASK_STATUS": TASK_STATUS,
    "SPECIAL_PROCEDURES": special_procedures.NAMES,
    "CLOCK_STATE": CLOCK_STATE,
    "APPLICANT_KIND": APPLICANT_KIND,
    "CHANNEL": CHANNEL,
    "RATINGS": RATINGS,
    "ROLE_NAMES": ROLE_NAMES,
    "ENTRY_KINDS": ENTRY_KINDS,
    "FEE_KINDS": FEE_KINDS,
    "PAY_METHODS": PAY_METHODS,
    "DELIVERY_METHODS": DELIVERY_METHODS,
}
