"""SupervisionService over gRPC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from onestop.supervision.v1 import supervision_pb2
from services.common.calendar import CalendarError
from services.common.clock import from_timestamp
from services.common.errors import InvalidArgument, NotFound, PermissionDenied
from services.common.events import timestamp
from services.common.runtime import Runtime
from services.supervision import convert, evaluations, ranking, recompute, reports, repository, stats, ticker
from services.supervision.clocks import SupervisionContext

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The statistics groupings (stats.GROUPS), in Chinese for GetStatistics' refusal.
_GROUP_ZH = {"center": "中心", "department": "部门", "window": "窗口", "staff": "工作人员", "matter": "事项"}


class SupervisionApi:
    """Implements onestop.supervision.v1.SupervisionService."""

    def __init__(self, *, runtime: Runtime, ctx: SupervisionContext) -> None:
        self.rt = runtime
        self.ctx = ctx

    def _clock(self, row: dict[str, Any], now: datetime) -> Any:
        return convert.clock_message(row, now=now, cal=self.ctx.calendar, center=self.ctx.center)

    async def GetClocks(
        self, req: supervision_pb2.GetClocksRequest, _: Any
    ) -> supervision_pb2.GetClocksResponse:
        if not req.case_number:
            raise InvalidArgument("case_number is required", field="case_number", zh="请填写报件编号")
        async with self.rt.engine.connect() as conn:
            case = await repository.get_case(conn, case_number=req.case_number)
            rows = await repository.case_clocks(conn, case_id=case["case_id"]) if case else []
        if case is None or (not rows and not case["forwarded_to"]):
            raise NotFound(
                f"no clocks for case {req.case_number}", zh=f"未查到报件 {req.case_number} 的时限计时信息"
            )
        now = self.ctx.clock.now()
        # A case decided above has no clocks here, but its state (forwarded, the parent's outcome) shows.
        return supervision_pb2.GetClocksResponse(
            clocks=[self._clock(r, now) for r in rows],
            case_status=case["status"],
            forwarded_to=case["forwarded_to"],
            outcome=case["outcome"],
        )

    async def ListWarnings(
        self, req: supervision_pb2.ListWarningsRequest, _: Any
    ) -> supervision_pb2.ListWarningsResponse:
        async with self.rt.engine.connect() as conn:
            found = await repository.current_warnings(
                conn, department=req.department, min_level=req.min_level
            )
        now = self.ctx.clock.now()
        out = supervision_pb2.ListWarningsResponse()
        for row, level, raised_at in found:
            out.warnings.add(clock=self._clock(row, now), level=level, raised_at=timestamp(raised_at))
        return out

    async def ListKeyProjects(
        self, req: supervision_pb2.ListKeyProjectsRequest, _: Any
    ) -> supervision_pb2.GetClocksResponse:
        now = self.ctx.clock.now()
        out = supervision_pb2.GetClocksResponse()
        async with self.rt.engine.connect() as conn:
            for case in await repository.key_project_cases(conn, tracker=req.tracker):
                rows = await repository.case_clocks(conn, case_id=case["case_id"])
                out.clocks.extend(self._clock(r, now) for r in rows)
        return out

    async def ListAccountability(
        self, req: supervision_pb2.ListAccountabilityRequest, _: Any
    ) -> supervision_pb2.ListAccountabilityResponse:
        async with self.rt.engine.connect() as conn:
            rows = await repository.accountability(conn, department=req.department)
        return supervision_pb2.ListAccountabilityResponse(
            records=[convert.accountability_message(r) for r in rows]
        )

    async def SubmitEvaluation(
        self, req: supervision_pb2.SubmitEvaluationRequest, _: Any
    ) -> supervision_pb2.Evaluation:
        async with self.rt.uow() as uow:
            row = await evaluations.submit(
                uow,
                self.ctx,
                case_number=req.case_number.strip(),
                query_code_digest=req.query_code_digest,
                rating=req.rating,
                tags=list(req.tags),
                text=req.text,
            )
            await uow.commit()
        return convert.evaluation_message(row)

    async def GetEvaluation(
        self, req: supervision_pb2.GetEvaluationRequest, _: Any
    ) -> supervision_pb2.Evaluation:
        async with self.rt.uow() as uow:
            row = await evaluations.get(
                uow, case_number=req.case_number.strip(), query_code_digest=req.query_code_digest
            )
        return convert.evaluation_message(row)

    async def GetStatistics(
        self, req: supervision_pb2.GetStatisticsRequest, _: Any
    ) -> supervision_pb2.Statistics:
        group_by = req.group_by or "center"
        if group_by not in stats.GROUPS:
            raise InvalidArgument(
                f"group_by must be one of {', '.join(stats.GROUPS)}",
                field="group_by",
                zh=f"统计维度应为以下之一：{'、'.join(_GROUP_ZH.get(g, g) for g in stats.GROUPS)}",
            )
        start = from_timestamp(getattr(req, "from")) if req.HasField("from") else EPOCH
        end = from_timestamp(req.to) if req.HasField("to") else self.ctx.clock.now()
        if end <= start:
            raise InvalidArgument(
                "the period must end after it starts", field="to", zh="统计时段的结束时间应晚于开始时间"
            )
        async with self.rt.engine.connect() as conn:
            rows = await reports.statistics(conn, group_by=group_by, start=start, end=end)
        return supervision_pb2.Statistics(rows=[convert.statistics_row(r) for r in rows])

    async def LoadCalendarYear(
        self, req: supervision_pb2.LoadCalendarYearRequest, _: Any
    ) -> supervision_pb2.LoadCalendarYearResponse:
        if req.by.role != "administrator":
            raise PermissionDenied(
                "only an administrator loads calendar years", zh="只有系统管理员可以载入年度工作日历"
            )
        if not 2000 <= req.year <= 2100:
            raise InvalidArgument(
                "year must be between 2000 and 2100", field="year", zh="年份应在 2000 至 2100 之间"
            )
        try:
            moved = await recompute.load_year(
                self.ctx,
                self.rt.uow,
                year=req.year,
                holidays=dict(req.holidays),
                workdays=list(req.workdays),
                source=req.source or req.by.username,
            )
        except (CalendarError, ValueError) as exc:
            raise InvalidArgument(
                str(exc),
                field="holidays",
                zh=f"{req.year} 年的工作日历数据有误，未能载入，请按下方英文说明改正",
            ) from None
        return supervision_pb2.LoadCalendarYearResponse(moved_clocks=moved)

    async def GetCalendarStatus(
        self, req: supervision_pb2.GetCalendarStatusRequest, _: Any
    ) -> supervision_pb2.CalendarStatus:
        missing, loaded = await recompute.status(self.ctx, self.rt.uow)
        return supervision_pb2.CalendarStatus(
            missing_years=missing,
            loaded_years=[
                supervision_pb2.CalendarYear(
                    year=r["year"], holidays=r["holidays"], workdays=r["workdays"], source=r["source"]
                )
                for r in loaded
            ],
        )

    async def RecordRectification(
        self, req: supervision_pb2.RecordRectificationRequest, _: Any
    ) -> supervision_pb2.Evaluation:
        async with self.rt.uow() as uow:
            row = await evaluations.record_progress(
                uow, self.ctx, evaluation_id=req.evaluation_id, step=req.step
            )
            await uow.commit()
        return convert.evaluation_message(row)

    async def GetAssessment(
        self, req: supervision_pb2.GetAssessmentRequest, _: Any
    ) -> supervision_pb2.Assessment:
        year = req.year or self.ctx.clock.now().year
        if not 2000 <= year <= 2100:
            raise InvalidArgument(
                "year must be between 2000 and 2100", field="year", zh="年份应在 2000 至 2100 之间"
            )
        if req.quarter not in (0, 1, 2, 3, 4):
            raise InvalidArgument(
                "quarter must be 0 (the year) or 1-4", field="quarter", zh="季度应为 0（全年）或 1 至 4"
            )
        start, end = ranking.quarter(year, req.quarter) if req.quarter else ranking.year(year)
        async with self.rt.engine.connect() as conn:
            rows = await reports.assess_windows(conn, start=start, end=end)
            flags = await reports.red_flag_windows(conn, year=year) if not req.quarter else []
        return supervision_pb2.Assessment(
            windows=[
                supervision_pb2.WindowAssessment(
                    window=a.key,
                    score=a.score,
                    grade=a.grade,
                    veto=a.veto,
                    veto_reasons=list(a.veto_reasons),
                    on_time_rate=a.on_time_rate,
                    concluded=a.concluded,
                )
                for a in rows
            ],
            red_flag_windows=[a.key for a in flags],
        )

    async def Tick(self, req: supervision_pb2.TickRequest, _: Any) -> supervision_pb2.TickResponse:
        result = await ticker.tick(self.ctx, self.rt.uow)
        return supervision_pb2.TickResponse(
            warned=result.warned, urged=result.urged, deemed=result.deemed, now=timestamp(result.now)
        )
