"""Approval's rules, free of protobuf, SQL and the network: who may act, what opens, the join."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from services.common.errors import FailedPrecondition, InvalidArgument, PermissionDenied

# Task states (values of onestop.common.v1.TaskStatus; kept here so the rules stay pure).
WAITING, PENDING, CLAIMED, SUPPLEMENT, APPROVED, REJECTED, DEEMED, CANCELLED = 1, 2, 3, 4, 5, 6, 7, 8
OPEN = frozenset({PENDING, CLAIMED})
DONE = frozenset({APPROVED, REJECTED, DEEMED, CANCELLED})
POSITIVE = frozenset({APPROVED, DEEMED})
# Case outcomes (values of onestop.common.v1.Outcome).
OUTCOME_APPROVED, OUTCOME_REJECTED, OUTCOME_DEEMED = 1, 2, 3

DECIDING_ROLES = frozenset({"chief_representative", "department_head"})
WINDOW_ROLES = frozenset({"window_clerk", "chief_representative", "department_head"})
EXTENSION_DECIDERS = frozenset({"department_head", "center_director"})
MAX_EXTENSION_DAYS = 30
KEY_PROJECT_PRIORITY = 10


@dataclass(frozen=True)
class Who:
    """The person acting, as the gateway vouches for them."""

    username: str
    role: str
    department: str


class TaskView(NamedTuple):
    """What the rules need of a task (immutable; a named tuple, not a frozen dataclass: the join builds
    one per task of the case on every decision, and a tuple costs a third as much to build)."""

    task_id: str
    department: str
    status: int
    prerequisites: tuple[str, ...]
    claimed_by: str = ""


def check_window_actor(task: TaskView, who: Who, *, action: str, overrides_claim: bool = False) -> None:
    """Only staff of the task's department act on it (R15); another member's claim is theirs, except that
    the department's deciding role may decide (``overrides_claim``) a task its clerk has claimed."""
    if not who.username:
        raise InvalidArgument(
            "the acting staff member (by.username) is required", field="by.username", zh="缺少经办人员"
        )
    if who.role not in WINDOW_ROLES:
        raise PermissionDenied(
            f"role {who.role or '(none)'} may not {action} a department task",
            zh=f"只有部门窗口人员可以{_ACTION_ZH.get(action, action)}部门审批任务",
        )
    if who.department != task.department:
        raise PermissionDenied(
            f"task {task.task_id} belongs to department {task.department}, not {who.department or '(none)'}",
            zh=f"该审批任务属于 {task.department} 部门窗口，不属于您所在的部门",
        )
    if task.status == CLAIMED and task.claimed_by and task.claimed_by != who.username:
        # The clerk who claimed it prepares the case; the chief representative (or the head) of the same
        # window decides it without waiting for a release (R15). Anyone else waits for the release.
        if not (overrides_claim and who.role in DECIDING_ROLES):
            raise PermissionDenied(
                f"task {task.task_id} is claimed by {task.claimed_by}",
                zh=f"该审批任务已由 {task.claimed_by} 认领，请等其释放后再办理",
            )


def check_open(task: TaskView, *, action: str) -> None:
    """A closed, waiting or paused task cannot be acted on."""
    if task.status not in OPEN:
        raise FailedPrecondition(
            f"cannot {action} task {task.task_id}: it is {state_name(task.status)}",
            zh=f"该审批任务{state_name_zh(task.status)}，不能{_ACTION_ZH.get(action, action)}",
        )


def check_decision(*, verdict: str, who: Who, reasons: Sequence[str], items: Sequence[object]) -> None:
    """Rejections need reasons, supplements need items, and only a chief representative decides."""
    if verdict in ("approve", "reject") and who.role not in DECIDING_ROLES:
        raise PermissionDenied(
            "only the chief representative (or the department head) decides at the window",
            zh="只有首席代表（或部门负责人）可以在窗口作出审批决定",
        )
    if verdict == "reject" and not [r for r in reasons if r.strip()]:
        raise InvalidArgument(
            "a rejection needs at least one reason", field="reasons", zh="不予许可须写明至少一条理由"
        )
    if verdict == "supplement" and not items:
        raise InvalidArgument(
            "a supplement request needs at least one item", field="items", zh="要求补正须列出至少一项材料"
        )


def ready_to_open(tasks: Iterable[TaskView]) -> list[str]:
    """Waiting tasks whose prerequisites are all approved (R8)."""
    tasks = list(tasks)
    positive = {t.department for t in tasks if t.status in POSITIVE}
    return [t.task_id for t in tasks if t.status == WAITING and all(p in positive for p in t.prerequisites)]


def blocked(tasks: Iterable[TaskView]) -> list[str]:
    """Waiting tasks that can never open because a prerequisite was rejected or cancelled."""
    tasks = list(tasks)
    dead = {t.department for t in tasks if t.status in (REJECTED, CANCELLED)}
    return [t.task_id for t in tasks if t.status == WAITING and any(p in dead for p in t.prerequisites)]


def round_complete(tasks: Iterable[TaskView]) -> bool:
    """Every open task has spoken and at least one asked for a supplement: send one merged notice."""
    tasks = list(tasks)
    return any(t.status == SUPPLEMENT for t in tasks) and not any(t.status in OPEN for t in tasks)


def join(tasks: Iterable[TaskView]) -> int | None:
    """The case's outcome once every task is done; None while any is still in progress."""
    tasks = list(tasks)
    if any(t.status not in DONE for t in tasks):
        return None
    if any(t.status == REJECTED for t in tasks):
        return OUTCOME_REJECTED
    if any(t.status == DEEMED for t in tasks):
        return OUTCOME_DEEMED
    return OUTCOME_APPROVED


def check_extension_request(*, days: int, reason: str, pending: bool, task: TaskView) -> None:
    """An extension needs a reason and 1..30 days, on an open task without another pending one."""
    if task.status in DONE:
        raise FailedPrecondition(
            f"task {task.task_id} is already {state_name(task.status)}",
            zh=f"该审批任务{state_name_zh(task.status)}，不能再申请延期",
        )
    if days < 1 or days > MAX_EXTENSION_DAYS:
        raise InvalidArgument(
            f"days must be between 1 and {MAX_EXTENSION_DAYS}",
            field="days",
            zh=f"延期天数应在 1 至 {MAX_EXTENSION_DAYS} 个工作日之间",
        )
    if not reason.strip():
        raise InvalidArgument("an extension needs a reason", field="reason", zh="申请延期须写明理由")
    if pending:
        raise FailedPrecondition(
            "an extension request for this task is already awaiting the head's decision",
            zh="该审批任务已有一项延期申请在等待部门负责人决定",
        )


def check_extension_decider(*, who: Who, department: str) -> None:
    """Only the department's head, or the center director for the city, decides an extension (R7)."""
    if who.role == "center_director":
        return
    if who.role != "department_head" or who.department != department:
        raise PermissionDenied(
            "only the head of the department (or the center director) decides extensions",
            zh="只有本部门负责人（或中心主任）可以决定延期",
        )


# The actions named in refusals, in Chinese (check_window_actor, check_open).
_ACTION_ZH = {
    "claim": "认领",
    "release": "释放",
    "decide": "审批",
    "extend": "申请延期",
    "start a special procedure on": "启动特别程序",
}


# A task state as messages name it: (English, Chinese as in "该审批任务" + this).
_STATE_NAMES = {
    WAITING: ("waiting for its prerequisites", "正在等待前置事项办结"),
    PENDING: ("pending", "尚未认领"),
    CLAIMED: ("claimed", "已被认领"),
    SUPPLEMENT: ("waiting for a supplement", "正在等待补正材料"),
    APPROVED: ("approved", "已准予许可"),
    REJECTED: ("rejected", "已不予许可"),
    DEEMED: ("deemed approved", "已视为同意"),
    CANCELLED: ("cancelled", "已取消"),
}


def state_name_zh(status: int) -> str:
    """What a task state reads as in a Chinese refusal ("该审批任务" + this)."""
    return _STATE_NAMES[status][1] if status in _STATE_NAMES else f"处于状态 {status}"


def state_name(status: int) -> str:
    """A readable name of a task state for messages."""
    return _STATE_NAMES[status][0] if status in _STATE_NAMES else str(status)
