"""``type = "email"``: one email per notification (or per group), over SMTP with TLS.

A single notification::

    Subject: [balance-monitor] [CRITICAL] FIRING low-cash: cash_to_withdraw fell to 512.25 (< 1000)

    [CRITICAL] FIRING low-cash: cash_to_withdraw fell to 512.25 (< 1000)

    Rule:         low-cash
    Severity:     critical
    Status:       firing
    ...
    Change:       1500.00 → 512.25

A group (``group_window``) is one email, ``[balance-monitor] 3 alerts: 2 firing, 1 resolved``,
with one such block per notification. The body is text/plain with a text/html alternative.

``security = "starttls"`` refuses a server that does not offer STARTTLS (it never falls back to
clear text); ``tls`` is implicit TLS; ``none`` is for a relay on the same host. Certificates are
verified against the system's CAs, or only ``ca_file``'s. Timeouts, connection errors and SMTP
4xx replies are retryable; SMTP 5xx replies and TLS failures are not: a certificate that is not
trusted, a port that does not speak TLS, a server that closes the connection in the handshake
(``SSLEOFError``, ``SSLZeroReturnError``) all fail the same way again. A TLS failure is described
by what TLS said (:func:`monitor.http.tls_detail`), never by an errno. No message contains the
password: server replies are quoted with the credentials cut out.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import re
import ssl
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Literal

import aiohttp
import aiosmtplib
import structlog
from pydantic import SecretStr

from monitor import digest_render, http
from monitor.config import EmailSinkConfig, resolve_secret
from monitor.digest import Digest
from monitor.errors import SinkError
from monitor.models import Alert, Notification
from monitor.sinks.base import ID_HEADER
from monitor.sinks.text import detail_rows, tally, title
from monitor.text import clip, one_line

Security = Literal["starttls", "tls", "none"]

SUBJECT_LIMIT = 200
#: How long a polite QUIT may take once the message is accepted (its failure changes nothing).
QUIT_TIMEOUT = 5.0
TEXT_SEPARATOR = "\n\n" + "-" * 40 + "\n\n"

_log = structlog.get_logger("monitor.sinks.email")
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


class EmailSink:
    """Delivers notifications as emails through one SMTP server, one connection per message."""

    def __init__(
        self,
        name: str,
        *,
        host: str,
        port: int,
        security: Security,
        sender: str,
        to: Sequence[str],
        credentials: tuple[SecretStr, SecretStr] | None = None,
        tls_context: ssl.SSLContext | None = None,
        subject_prefix: str = "",
        timeout: float = 10.0,
    ) -> None:
        if security != "none" and tls_context is None:
            raise ValueError("TLS needs a tls_context")
        self._name = name
        self._host = host
        self._port = port
        self._security = security
        self._sender = sender
        self._to = tuple(to)
        self._credentials = credentials
        self._tls_context = tls_context if security != "none" else None
        self._prefix = one_line(subject_prefix)
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"EmailSink(name={self._name!r})"

    @property
    def name(self) -> str:
        return self._name

    async def send(self, notification: Notification) -> None:
        await self.send_batch([notification])

    async def send_batch(self, notifications: Sequence[Notification]) -> None:
        if not notifications:
            return
        message = build_message(
            notifications,
            sender=self._sender,
            to=self._to,
            prefix=self._prefix,
            now=datetime.now(tz=UTC),
        )
        await self._deliver(message)

    async def send_digest(self, digest: Digest) -> None:
        """One email with a plain-text and an HTML part."""
        message = EmailMessage()
        message["Subject"] = clip(
            one_line(f"{self._prefix} {digest_render.email_subject(digest)}"), SUBJECT_LIMIT
        )
        message["From"] = self._sender
        message["To"] = ", ".join(self._to)
        message["Date"] = format_datetime(datetime.now(tz=UTC))
        message["Message-ID"] = message_id([digest.id], self._sender)
        message[ID_HEADER] = digest.id
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(digest_render.text(digest) + "\n", cte="quoted-printable")
        message.add_alternative(
            digest_render.email_html(digest), subtype="html", cte="quoted-printable"
        )
        await self._deliver(message)

    async def aclose(self) -> None:
        """Nothing to release: every message has its own connection."""

    async def _deliver(self, message: EmailMessage) -> None:
        smtp = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            use_tls=self._security == "tls",
            start_tls=False,  # done in _transact, which refuses a server without STARTTLS
            tls_context=self._tls_context,
            timeout=self._timeout,
        )
        try:
            try:
                async with asyncio.timeout(self._timeout):
                    refused = await self._transact(smtp, message)
            except (aiosmtplib.SMTPException, OSError, TimeoutError, ValueError) as exc:
                raise self._error(exc) from None
            if refused:
                _log.warning(
                    "email_recipients_refused",
                    sink=self._name,
                    refused={
                        address: self._excerpt(f"{reply.code} {reply.message}")
                        for address, reply in refused.items()
                    },
                )
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                await smtp.execute_command(b"QUIT", timeout=min(self._timeout, QUIT_TIMEOUT))
        finally:
            _hang_up(smtp)

    async def _transact(
        self, smtp: aiosmtplib.SMTP, message: EmailMessage
    ) -> Mapping[str, aiosmtplib.SMTPResponse]:
        """Connect, secure, log in and send; the recipients the server refused (not all)."""
        await smtp.connect()
        if self._security == "starttls":
            await smtp.ehlo()
            if not smtp.supports_extension("starttls"):
                raise SinkError(
                    f"the SMTP server of sink '{self._name}' does not offer STARTTLS; "
                    'not sending in clear text (security = "starttls")',
                    retryable=False,
                )
            await smtp.starttls()
        if self._credentials is not None:
            username, password = self._credentials
            await smtp.login(username.get_secret_value(), password.get_secret_value())
        refused, _ = await smtp.send_message(
            message,
            sender=envelope_address(self._sender),
            recipients=[envelope_address(address) for address in self._to],
        )
        return refused

    def _error(self, exc: Exception) -> SinkError:
        """The ``SinkError`` for what aiosmtplib, ssl or the socket raised."""
        sink = self._name
        tls = _find_tls_error(exc)
        if tls is not None:  # a configuration problem: permanent, whatever TLS said
            if isinstance(tls, ssl.SSLCertVerificationError):
                hint = " (is ca_file the CA that issued it?)"
            elif http.not_tls(tls):
                hint = ""  # the description asks "wrong port?" already
            else:
                hint = " (do security and port match the server?)"
            return SinkError(
                f"TLS with the SMTP server of sink '{sink}' failed: {http.tls_detail(tls)}{hint}",
                retryable=False,
            )
        if isinstance(exc, TimeoutError):
            return SinkError(
                f"timeout after {self._timeout:g}s sending to sink '{sink}'", retryable=True
            )
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
            first = exc.recipients[0]
            return SinkError(
                f"SMTP {first.code} from sink '{sink}': every recipient refused: "
                f"{self._excerpt(first.message)}",
                retryable=any(400 <= r.code < 500 for r in exc.recipients),
            )
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            auth = isinstance(exc, aiosmtplib.SMTPAuthenticationError)
            return SinkError(
                f"SMTP {exc.code} from sink '{sink}'{' (login failed)' if auth else ''}: "
                f"{self._excerpt(exc.message)}",
                retryable=400 <= exc.code < 500,
            )
        if isinstance(exc, OSError):  # refused, reset, SMTPConnectError, SMTPServerDisconnected
            return SinkError(
                f"connection failed sending to sink '{sink}': {_describe(exc)}", retryable=True
            )
        text = exc.message if isinstance(exc, aiosmtplib.SMTPException) else str(exc)
        return SinkError(f"SMTP error for sink '{sink}': {self._excerpt(text)}", retryable=False)

    def _excerpt(self, text: str) -> str:
        """A server's reply on one line, clipped, with the credentials cut out."""
        secrets = [secret.get_secret_value() for secret in self._credentials or ()]
        return http.excerpt(text, secrets=secrets, mask="***")


# --------------------------------------------------------------------------- the message


def build_message(
    notifications: Sequence[Notification],
    *,
    sender: str,
    to: Sequence[str],
    prefix: str,
    now: datetime,
) -> EmailMessage:
    """The email for one or more notifications (``now`` is its Date)."""
    message = EmailMessage()
    message["Subject"] = subject(notifications, prefix=prefix)
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Date"] = format_datetime(now)
    ids = [one_line(n.id) for n in notifications]
    message["Message-ID"] = message_id(ids, sender)
    message[ID_HEADER] = ", ".join(ids)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
    alerts = [n.alert for n in notifications]
    text = TEXT_SEPARATOR.join(text_block(alert) for alert in alerts) + "\n"
    message.set_content(text, cte="quoted-printable")
    message.add_alternative(html_document(alerts), subtype="html", cte="quoted-printable")
    return message


def subject(notifications: Sequence[Notification], *, prefix: str = "") -> str:
    """One line, at most ``SUBJECT_LIMIT`` characters: the headline, or the counts of a group."""
    if len(notifications) == 1:
        text = headline(notifications[0].alert)
    else:
        text = tally([n.alert for n in notifications])
    return clip(one_line(f"{prefix} {text}"), SUBJECT_LIMIT)


def headline(alert: Alert) -> str:
    """``[CRITICAL] FIRING rule: summary`` or ``RESOLVED [CRITICAL] rule: summary``."""
    return one_line(f"{title(alert)}: {alert.summary}")


def text_block(alert: Alert) -> str:
    """The plain-text part for one alert: headline, details, then the description."""
    rows = detail_rows(alert)
    width = max(len(key) for key, _ in rows) + 2
    lines = [headline(alert), ""]
    lines += [f"{key + ':':<{width}}{value}" for key, value in rows]
    if alert.description:
        lines += ["", alert.description.strip()]
    return "\n".join(lines)


def html_document(alerts: Sequence[Alert]) -> str:
    """The text/html alternative: a heading and a table per alert, everything escaped."""
    sections = []
    for alert in alerts:
        rows = "".join(
            f'<tr><th align="left" valign="top">{html.escape(key)}</th>'
            f"<td>{html.escape(value)}</td></tr>"
            for key, value in detail_rows(alert)
        )
        section = f"<p><strong>{html.escape(headline(alert))}</strong></p><table>{rows}</table>"
        if alert.description:
            section += (
                f'<p style="white-space: pre-wrap">{html.escape(alert.description.strip())}</p>'
            )
        sections.append(section)
    body = "<hr>".join(sections)
    return f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{body}</body></html>\n'


def message_id(ids: Sequence[str], sender: str) -> str:
    """``<bm.<digest>@<sender's domain>>``: the same for every retry of the same notifications."""
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:40]
    domain = envelope_address(sender).rpartition("@")[2]
    if not _DOMAIN.fullmatch(domain):
        domain = "balance-monitor.invalid"
    return f"<bm.{digest}@{domain}>"


def envelope_address(address: str) -> str:
    """``alerts@example.com`` from ``Balance Monitor <alerts@example.com>`` (or as given)."""
    return parseaddr(address)[1] or address


# --------------------------------------------------------------------------- helpers


def _hang_up(smtp: aiosmtplib.SMTP) -> None:
    """Drop the connection at once: nothing is left to say, and a TLS goodbye that waits for
    the server's could outlive the event loop."""
    if isinstance(smtp.transport, asyncio.WriteTransport):
        smtp.transport.abort()
    smtp.close()


def _find_tls_error(exc: BaseException) -> ssl.SSLError | None:
    """``exc`` or the first of its causes that is an ``ssl.SSLError`` (aiosmtplib wraps them)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _describe(exc: BaseException) -> str:
    """``ConnectionRefusedError (ECONNREFUSED)``: the class and errno of the root cause
    (aiosmtplib wraps the socket's error in its own)."""
    current: BaseException = exc
    while current.__cause__ is not None:
        current = current.__cause__
    return http.describe(current)


def create(config: EmailSinkConfig, *, index: int, session: aiohttp.ClientSession) -> EmailSink:
    """Build the sink, resolving its credentials and loading ``ca_file`` now."""
    del session  # SMTP, not HTTP
    username_ref = config.ref(index, "username")
    password_ref = config.ref(index, "password")
    credentials = None
    if username_ref is not None and password_ref is not None:
        credentials = (resolve_secret(username_ref), resolve_secret(password_ref))
    context = config.tls_context(index)
    return EmailSink(
        config.name,
        host=config.host,
        port=config.port,
        security=config.security,
        sender=config.sender,
        to=config.to,
        credentials=credentials,
        tls_context=context,
        subject_prefix=config.subject_prefix,
        timeout=config.timeout.total_seconds(),
    )
