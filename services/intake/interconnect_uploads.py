"""UploadCase in shared transactions: a child's uploads that arrive together are looked up, accepted and
committed together (services/common/batching.py), each caller still getting exactly its own answer.

A batch reads the cases already uploaded under its child case ids (and its client request ids) in one
statement and its stored documents in another, then takes its case numbers, writes its cases, timeline
entries and events, and commits once. An upload's events are in the transaction that creates its case, and
the reply goes out only after that commit; a repeated upload (a retry, or twice in one batch) answers the
case the first one created.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from onestop.common.v1 import common_pb2
from onestop.intake.v1 import intake_pb2
from onestop.interconnect.v1 import interconnect_pb2
from services.common.batching import GroupCommitter
from services.common.errors import InvalidArgument, PermissionDenied
from services.common.outbox import UnitOfWork
from services.common.runtime import Runtime
from services.intake import handlers, orm, repository


def call_record(center: str, method: str, child_case_id: str, **detail: Any) -> dict[str, Any]:
    """The audit record of a node-to-node call a parent served (`allowed` unless `detail` says otherwise):
    the caller is the center its certificate names."""
    return {
        "at": datetime.now(UTC),
        "actor": f"center:{center}"[:128],
        "role": "child_center",
        "action": method,
        "subject": child_case_id[:128],
        "detail": {"allowed": True, **detail},
    }


class ForeignCase(PermissionDenied):
    """The child case id names a case another child center uploaded."""

    def __init__(self, message: str, *, owner: str, zh: str = "") -> None:
        super().__init__(message, zh=zh)
        self.owner = owner


def not_uploaded_by_zh(center: str) -> str:
    """The Chinese of "case X was not uploaded by <center>" (a child case id another child uploaded)."""
    return f"该报件不是由中心 {center} 上报的，不能查看或办理"


def request_id(center: str, child_case_id: str) -> str:
    """The client request id an uploaded case is created under (unique per child center and case)."""
    return f"ic/{center}/{child_case_id}"


def check_child_case_id(child_case_id: str) -> None:
    """Refuse a missing or oversized child case id."""
    if not child_case_id or len(child_case_id) > 64:
        raise InvalidArgument(
            "child_case_id is required (at most 64 characters)",
            field="child_case_id",
            zh="缺少下级中心的报件标识 (child_case_id)，或其超过 64 个字符",
        )


def submission(center: str, req: interconnect_pb2.UploadCaseRequest) -> intake_pb2.SubmitCaseRequest:
    """The submission an upload makes here: who vouches for it is the certificate's center, not the body."""
    by = common_pb2.Actor()
    by.CopyFrom(req.preliminary_reviewer)
    by.center = center
    return intake_pb2.SubmitCaseRequest(
        client_request_id=request_id(center, req.child_case_id),
        matter_code=req.matter_code,
        channel=common_pb2.CHANNEL_UPLOAD,
        applicant=req.applicant,
        documents=req.documents,
        submitted_by=by,
        title=req.title,
        form=dict(req.form),
    )


class Uploads:
    """Creates uploaded cases, the uploads that arrive together in one transaction."""

    def __init__(self, *, runtime: Runtime, ctx: handlers.IntakeContext) -> None:
        self.ctx = ctx
        self.committer = GroupCommitter(runtime.uow, prepare=self._prepare)
        self._waiting: dict[str, tuple[str, intake_pb2.SubmitCaseRequest]] = {}
        self._keys = itertools.count()

    async def upload(
        self, center: str, req: interconnect_pb2.UploadCaseRequest
    ) -> tuple[dict[str, Any], bool]:
        """(the case, True when it had been uploaded before); committed before this returns."""
        check_child_case_id(req.child_case_id)
        submit = submission(center, req)
        key = str(next(self._keys))
        self._waiting[key] = (req.child_case_id, submit)
        try:
            result: tuple[dict[str, Any], bool] = await self.committer.run(
                lambda uow: self._create(uow, center, req.child_case_id, submit), key=key
            )
        finally:
            del self._waiting[key]
        return result

    async def _prepare(self, uow: UnitOfWork, keys: Sequence[str]) -> None:
        waiting = [self._waiting[k] for k in keys if k in self._waiting]
        await repository.preload_uploads(uow, {child: submit.client_request_id for child, submit in waiting})
        await handlers.prepare_submissions(uow, [submit for _, submit in waiting])

    async def _create(
        self, uow: UnitOfWork, center: str, child_case_id: str, submit: intake_pb2.SubmitCaseRequest
    ) -> tuple[dict[str, Any], bool]:
        rows = await repository.uploaded_cases(uow, child_case_id, submit.client_request_id)
        for row in rows:
            if row["origin_center"] == center:
                uow.audit(orm.audit, **call_record(center, "UploadCase", child_case_id, duplicate=True))
                return row, True
        if rows:
            raise ForeignCase(
                f"case {child_case_id} was not uploaded by {center}",
                owner=rows[0]["origin_center"],
                zh=not_uploaded_by_zh(center),
            )
        row, _ = await handlers.submit_case(uow, self.ctx, submit, origin=(center, child_case_id))
        uow.audit(
            orm.audit, **call_record(center, "UploadCase", child_case_id, parent_case_id=row["case_id"])
        )
        return row, False
