"""The outward channels: an HTTP SMS gateway and an SMTP server, each answering with an Outcome."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from typing import Protocol

import aiohttp

from services.common.logging import mask
from services.notification.model import EMAIL, SMS, Outcome, mask_address, normalize_phone, valid_email


class SmsSender(Protocol):
    """Sends one text message."""

    async def send(self, *, to: str, text: str, key: str) -> Outcome: ...


class MailSender(Protocol):
    """Sends one e-mail."""

    async def send(self, *, to: str, subject: str, text: str, html: str, key: str) -> Outcome: ...


def classify_http(status: int, body: str) -> Outcome:
    """2xx sent; 429 and 5xx try again; other 4xx will never work as they are."""
    if 200 <= status < 300:
        return Outcome.sent(f"HTTP {status}")
    detail = f"SMS gateway answered HTTP {status}: {mask(body.strip())[:200]}"
    if status == 429 or status >= 500:
        return Outcome.transient(detail)
    return Outcome.permanent(detail)


def classify_smtp(code: int, message: str) -> Outcome:
    """5xx replies are final (unknown user, refused); 4xx ones are for later."""
    detail = f"SMTP {code}: {mask(message)[:200]}"
    return Outcome.permanent(detail) if code >= 500 else Outcome.transient(detail)


class SmsGateway:
    """POSTs {"to", "text"} as JSON to the gateway; the delivery id goes along as Idempotency-Key."""

    def __init__(self, *, url: str, timeout_s: float) -> None:
        self._url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, *, to: str, text: str, key: str) -> Outcome:
        """Send `text` to mobile number `to`."""
        phone = normalize_phone(to)
        if phone is None:
            return Outcome.permanent(
                f"undeliverable address: {mask_address(SMS, to)} is not a mainland mobile number"
            )
        if not text:
            return Outcome.permanent("template error: the message has no SMS text")
        if self._session is None:
            # Opened lazily inside the running loop, never at import or construction time.
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(
                self._url, json={"to": phone, "text": text, "id": key}, headers={"Idempotency-Key": key}
            ) as resp:
                body = await resp.text()
                return classify_http(resp.status, body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Outcome.transient(f"SMS gateway unreachable: {type(exc).__name__}: {mask(str(exc))[:200]}")


class SmtpMailer:
    """Sends through an SMTP server with the standard library, in a worker thread."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        timeout_s: float,
        user: str = "",
        password: str = "",
        starttls: bool = False,
    ) -> None:
        self._host, self._port, self._sender = host, port, sender
        self._timeout = timeout_s
        self._user, self._password, self._starttls = user, password, starttls

    async def send(self, *, to: str, subject: str, text: str, html: str, key: str) -> Outcome:
        """Send a text e-mail, with the written notice as its HTML alternative when there is one."""
        if not valid_email(to):
            return Outcome.permanent(
                f"undeliverable address: {mask_address(EMAIL, to)} is not an e-mail address"
            )
        msg = EmailMessage()
        msg["From"] = self._sender
        msg["To"] = to.strip()
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False)
        # A stable Message-ID lets mail systems drop the duplicate of a retried send.
        msg["Message-ID"] = f"<{key}@{self._sender.partition('@')[2] or 'onestop'}>"
        # base64 keeps Chinese text intact through servers that never offered 8BITMIME.
        msg.set_content(text, cte="base64")
        if html:
            msg.add_alternative(html, subtype="html", cte="base64")
        return await asyncio.to_thread(self._send_blocking, msg)

    def _send_blocking(self, msg: EmailMessage) -> Outcome:
        try:
            with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
                if self._starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self._user:
                    smtp.login(self._user, self._password)
                smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = max(exc.recipients.values(), key=lambda v: v[0])
            return classify_smtp(
                code, reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
            )
        except smtplib.SMTPResponseException as exc:
            error = exc.smtp_error
            return classify_smtp(
                exc.smtp_code, error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
            )
        except (smtplib.SMTPException, OSError) as exc:
            return Outcome.transient(f"SMTP server unreachable: {type(exc).__name__}: {mask(str(exc))[:200]}")
        return Outcome.sent("SMTP 250")
