"""The delivery worker: sends due deliveries, records every attempt, retries, dead-letters."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.clock import Clock
from services.common.logging import get_logger
from services.notification import repository
from services.notification.channels import MailSender, SmsSender
from services.notification.model import EMAIL, INBOX, NOTICE, SMS, Outcome, RetryPolicy, new_id
from services.notification.templates import RenderError, Templates

log = get_logger(__name__)

# Longer than any single send may take (timeouts are ~10 s), so a lease never expires mid-send.
LEASE = timedelta(seconds=120)


LOCAL_CHANNELS = frozenset({INBOX, NOTICE})


def render_local(templates: Templates, row: dict[str, Any]) -> tuple[Outcome, tuple[str, dict[str, Any]]]:
    """A delivery to this node's own tables (a web inbox message or a written notice): the outcome and
    the row to write with the delivery's new state. RenderError when the template fails."""
    language, context = row["language"], dict(row["context"])
    if row["channel"] == NOTICE:
        html = templates.notice(notice_kind=row["notice_kind"], language=language, context=context)
        return Outcome.sent("notice stored"), (
            NOTICE,
            {
                "notice_id": row["notice_id"],
                "delivery_id": row["delivery_id"],
                "case_number": row["case_number"],
                "kind": row["notice_kind"],
                "language": language,
                "html": html,
            },
        )
    message = templates.message(kind=row["kind"], language=language, context=context)
    return Outcome.sent("inbox"), (
        INBOX,
        {
            "message_id": new_id(),
            "delivery_id": row["delivery_id"],
            "recipient": row["recipient"],
            "case_number": row["case_number"],
            "kind": row["kind"],
            "title": message.title,
            "body": message.body,
        },
    )


class DeliveryWorker:
    """Sends pending deliveries in batches; one slow or broken delivery never holds up the others."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        clock: Clock,
        templates: Templates,
        policy: RetryPolicy,
        sms: SmsSender | None,
        mail: MailSender | None,
        poll_s: float = 1.0,
        batch: int = 100,
        concurrency: int = 8,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._templates = templates
        self._policy = policy
        self._sms = sms
        self._mail = mail
        self._poll_s = poll_s
        self._batch = batch
        self._limit = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self.sent = 0
        self.failed = 0

    def wake(self) -> None:
        """New deliveries are committed: look now instead of at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver forever; database trouble is waited out, never fatal."""
        backoff = self._poll_s
        try:
            while True:
                try:
                    done = await self.run_once()
                    backoff = self._poll_s
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the rows are safe in the database; try again
                    log.warning("delivery round failed; will retry", error=repr(exc), retry_in=backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
                if done < self._batch:
                    await self._idle()
        finally:
            close = getattr(self._sms, "close", None)
            if close is not None:
                await close()

    async def _idle(self) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), self._poll_s)
        except TimeoutError:
            pass
        self._wake.clear()

    async def run_once(self) -> int:
        """Claim one batch of due deliveries and attempt each; the number attempted."""
        async with self._engine.begin() as conn:
            rows = await repository.claim_due(conn, now=self._clock.now(), lease=LEASE, limit=self._batch)
        if rows:
            await asyncio.gather(*(self._guarded(row) for row in rows))
        return len(rows)

    async def _guarded(self, row: dict[str, Any]) -> None:
        async with self._limit:
            try:
                await self._attempt(row)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - this row waits for its lease; the others go on
                log.warning(
                    "delivery attempt could not be recorded", delivery_id=row["delivery_id"], error=repr(exc)
                )

    async def _attempt(self, row: dict[str, Any]) -> None:
        started = time.monotonic()
        effect: tuple[str, dict[str, Any]] | None = None
        try:
            outcome, effect = await self._send(row)
        except RenderError as exc:
            outcome = Outcome.permanent(str(exc))
        elapsed_ms = int((time.monotonic() - started) * 1000)
        attempt = row["attempts"] + 1
        now = self._clock.now()
        state, next_at, error = self._policy.next_state(outcome=outcome, attempts=attempt, now=now)
        async with self._engine.begin() as conn:
            # The inbox row or notice and the delivery's new state commit together: written once.
            if effect is not None and outcome.status == "sent":
                table, values = effect
                values["created_at"] = now
                if table == INBOX:
                    await repository.add_inbox_message(conn, values)
                else:
                    await repository.add_notice(conn, values)
            await repository.finish_attempt(
                conn,
                delivery_id=row["delivery_id"],
                attempt=attempt,
                outcome=outcome.status,
                detail=error or outcome.detail,
                elapsed_ms=elapsed_ms,
                state=state,
                next_attempt_at=next_at,
                now=now,
                address_masked=row["address_masked"],
            )
        fields = {
            "delivery_id": row["delivery_id"],
            "case_number": row["case_number"],
            "channel": row["channel"],
            "kind": row["kind"],
            "address": row["address_masked"],
            "attempt": attempt,
            "state": state,
        }
        if outcome.status == "sent":
            self.sent += 1
            log.info("delivered", **fields)
        else:
            self.failed += 1
            log.warning("delivery failed", error=error, next_attempt_at=next_at.isoformat(), **fields)

    async def _send(self, row: dict[str, Any]) -> tuple[Outcome, tuple[str, dict[str, Any]] | None]:
        channel, language, context = row["channel"], row["language"], dict(row["context"])
        if channel in LOCAL_CHANNELS:
            return render_local(self._templates, row)
        message = self._templates.message(kind=row["kind"], language=language, context=context)
        if channel == SMS:
            if self._sms is None:
                return Outcome.permanent("sms channel not configured (ONESTOP_SMS_URL is not set)"), None
            return await self._sms.send(to=row["address"], text=message.sms, key=row["delivery_id"]), None
        if channel == EMAIL:
            if self._mail is None:
                return Outcome.permanent("email channel not configured (ONESTOP_SMTP_HOST is not set)"), None
            html = ""
            if row["notice_kind"]:
                html = self._templates.notice(
                    notice_kind=row["notice_kind"], language=language, context=context
                )
            return await self._mail.send(
                to=row["address"], subject=message.title, text=message.body, html=html, key=row["delivery_id"]
            ), None
        return Outcome.permanent(f"unknown channel {channel!r}"), None
