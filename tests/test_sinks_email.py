"""The email sink against a real SMTP server (aiosmtpd) on 127.0.0.1, with TLS from trustme."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from sinks_helpers import OBSERVED_AT, make_digest, make_notification
from structlog.testing import capture_logs

from monitor import digest_render
from monitor.config import EmailSinkConfig
from monitor.errors import ConfigError, SinkError
from monitor.models import Notification, Status
from monitor.sinks import email as email_sink
from monitor.sinks import text as sink_text
from monitor.sinks.base import BatchSink
from monitor.sinks.registry import build_sink

USERNAME = "monitor@example.com"
PASSWORD = "s3cret-Pa55word!"
SENDER = "alerts@example.com"
RECIPIENT = "ops@example.com"


# --------------------------------------------------------------------------- the server


@dataclass(frozen=True)
class Delivered:
    mail_from: str | None
    rcpt_tos: list[str]
    content: bytes
    authenticated: bool
    tls: bool

    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Mailbox:
    """The handler: records what is delivered, and answers RCPT/DATA as told."""

    delivered: list[Delivered] = field(default_factory=list)
    mechanisms: list[str] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # recipient -> reply
    data_reply: str = "250 2.0.0 Accepted"

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if not self.data_reply.startswith("250"):
            return self.data_reply
        content = envelope.original_content or b""
        tls = server.transport is not None and bool(server.transport.get_extra_info("sslcontext"))
        self.delivered.append(
            Delivered(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                content,
                bool(session.authenticated),
                tls,
            )
        )
        return self.data_reply

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        self.mechanisms.append(mechanism)
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == USERNAME.encode()
            and auth_data.password == PASSWORD.encode()
        )
        return AuthResult(success=ok, handled=False)


@dataclass(frozen=True)
class Server:
    port: int
    mailbox: Mailbox


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


StartServer = Callable[..., Server]


@pytest.fixture
def smtp_server(server_tls: ssl.SSLContext) -> Iterator[StartServer]:
    """Starts aiosmtpd servers: ``tls`` is "starttls", "implicit" or "none"."""
    controllers: list[Controller] = []

    def start(*, tls: str = "starttls", exclude: tuple[str, ...] = ()) -> Server:
        mailbox = Mailbox()
        port = free_port()
        settings: dict[str, Any] = {
            "authenticator": mailbox.authenticate,
            "auth_exclude_mechanism": list(exclude),
        }
        if tls == "starttls":
            settings |= {"tls_context": server_tls, "require_starttls": True}
        elif tls == "implicit":
            # AUTH over implicit TLS: aiosmtpd only knows of STARTTLS, so it must not insist.
            settings |= {"ssl_context": server_tls, "auth_require_tls": False}
        controller = Controller(mailbox, hostname="127.0.0.1", port=port, **settings)
        controller.start()
        controllers.append(controller)
        return Server(port, mailbox)

    yield start
    for controller in controllers:
        controller.stop()


def make_sink(port: int, **settings: Any) -> email_sink.EmailSink:
    config = EmailSinkConfig.model_validate(
        {
            "type": "email",
            "name": "mail",
            "host": "127.0.0.1",
            "port": port,
            "from": SENDER,
            "to": [RECIPIENT],
            **settings,
        }
    )
    return email_sink.create(config, index=0, session=None)  # type: ignore[arg-type]


def login(ca_file: Path, **settings: Any) -> dict[str, Any]:
    return {"username": USERNAME, "password": PASSWORD, "ca_file": str(ca_file), **settings}


async def send_failing(
    sink: email_sink.EmailSink, notification: Notification | None = None
) -> SinkError:
    with pytest.raises(SinkError) as info:
        await sink.send(notification or make_notification())
    return info.value


# --------------------------------------------------------------------------- TLS and AUTH


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_starttls_and_login(smtp_server: StartServer, ca_file: Path, mechanism: str) -> None:
    """STARTTLS with the CA from ca_file, then AUTH with the password, then the message."""
    other = {"PLAIN": "LOGIN", "LOGIN": "PLAIN"}[mechanism]
    server = smtp_server(tls="starttls", exclude=(other,))

    await make_sink(server.port, **login(ca_file)).send(make_notification())

    [delivered] = server.mailbox.delivered
    assert server.mailbox.mechanisms == [mechanism]
    assert (delivered.tls, delivered.authenticated) == (True, True)
    assert delivered.mail_from == SENDER
    assert delivered.rcpt_tos == [RECIPIENT]


async def test_implicit_tls(smtp_server: StartServer, ca_file: Path) -> None:
    """security = "tls" speaks TLS from the first byte (port 465 style)."""
    server = smtp_server(tls="implicit")

    await make_sink(server.port, **login(ca_file, security="tls")).send(make_notification())

    [delivered] = server.mailbox.delivered
    assert (delivered.tls, delivered.authenticated) == (True, True)


async def test_no_tls_for_a_local_relay(smtp_server: StartServer) -> None:
    """security = "none" sends in clear text, without credentials, to a relay."""
    server = smtp_server(tls="none")

    await make_sink(server.port, security="none").send(make_notification())

    [delivered] = server.mailbox.delivered
    assert (delivered.tls, delivered.authenticated) == (False, False)


async def test_wrong_password(smtp_server: StartServer, ca_file: Path) -> None:
    """A refused login is permanent, and the message quotes the server but not the password."""
    server = smtp_server()
    sink = make_sink(server.port, **login(ca_file, password="wrong-" + PASSWORD))

    error = await send_failing(sink)

    assert not error.retryable
    assert str(error) == (
        "SMTP 535 from sink 'mail' (login failed): 5.7.8 Authentication credentials invalid"
    )
    assert PASSWORD not in str(error)
    assert server.mailbox.delivered == []


async def test_server_echoing_the_password(smtp_server: StartServer, ca_file: Path) -> None:
    """Even a reply that repeats the password does not put it in the message."""
    server = smtp_server()
    server.mailbox.data_reply = f"554 5.7.1 rejected for {USERNAME}:{PASSWORD}"

    error = await send_failing(make_sink(server.port, **login(ca_file)))

    assert not error.retryable
    assert PASSWORD not in str(error)
    assert USERNAME not in str(error)
    assert str(error) == "SMTP 554 from sink 'mail': 5.7.1 rejected for ***:***"


async def test_starttls_not_offered(smtp_server: StartServer, ca_file: Path) -> None:
    """security = "starttls" against a server without STARTTLS fails instead of sending clear."""
    server = smtp_server(tls="none")

    error = await send_failing(make_sink(server.port, **login(ca_file)))

    assert not error.retryable
    assert "does not offer STARTTLS" in str(error)
    assert server.mailbox.delivered == []


@pytest.mark.parametrize(("tls", "security"), [("starttls", "starttls"), ("implicit", "tls")])
async def test_untrusted_certificate(smtp_server: StartServer, tls: str, security: str) -> None:
    """Without ca_file the system's CAs do not know the test CA: a permanent, clear error."""
    server = smtp_server(tls=tls)

    error = await send_failing(make_sink(server.port, security=security))

    assert not error.retryable
    assert str(error) == (
        "TLS with the SMTP server of sink 'mail' failed: certificate verify failed: "
        "unable to get local issuer certificate (is ca_file the CA that issued it?)"
    )
    assert server.mailbox.delivered == []


async def test_tls_to_a_plain_server(smtp_server: StartServer, ca_file: Path) -> None:
    """Implicit TLS against a server that speaks plain SMTP is a permanent TLS error that says
    so, with no errno (ssl's error code 1 is not EPERM)."""
    server = smtp_server(tls="none")

    error = await send_failing(make_sink(server.port, security="tls", ca_file=str(ca_file)))

    assert not error.retryable
    assert str(error) == (
        "TLS with the SMTP server of sink 'mail' failed: "
        "the server does not speak TLS (wrong port?)"
    )


#: A TLS alert record: close_notify, in answer to the client's hello.
CLOSE_NOTIFY = b"\x15\x03\x03\x00\x02\x01\x00"


@pytest.fixture
async def closing_tls_port() -> AsyncIterator[int]:
    """A server that greets (and offers STARTTLS) like SMTP, then answers the TLS handshake
    by closing TLS (close_notify): ssl raises SSLZeroReturnError in the handshake."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mail.example ESMTP\r\n")
        await writer.drain()
        while line := await reader.readline():
            if line.upper().startswith(b"EHLO"):
                writer.write(b"250-mail.example\r\n250 STARTTLS\r\n")
            elif line.upper().startswith(b"STARTTLS"):
                writer.write(b"220 2.0.0 Ready to start TLS\r\n")
                await writer.drain()
                await reader.read(65536)  # the client's hello
                writer.write(CLOSE_NOTIFY)
                await writer.drain()
                break
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_tls_closed_during_the_handshake_is_permanent(
    closing_tls_port: int, ca_file: Path
) -> None:
    """A server that ends TLS in the handshake (SSLZeroReturnError; SSLEOFError alike) will do
    so again: a permanent TLS error, not a retried connection failure, and no errno name (the
    ssl error code 6 is not ENXIO)."""
    error = await send_failing(make_sink(closing_tls_port, **login(ca_file)))

    assert not error.retryable
    assert str(error) == (
        "TLS with the SMTP server of sink 'mail' failed: the server closed the connection "
        "(do security and port match the server?)"
    )


# --------------------------------------------------------------------------- other errors


async def test_connection_refused() -> None:
    """Nothing listening is retryable and says so without the traceback's text."""
    error = await send_failing(make_sink(free_port(), security="none"))

    assert error.retryable
    assert str(error) == (
        "connection failed sending to sink 'mail': ConnectionRefusedError (ECONNREFUSED)"
    )


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A server that accepts connections and never says a word."""
    done = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await done.wait()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        done.set()
        server.close()
        await server.wait_closed()


async def test_timeout(silent_port: int) -> None:
    """A server that never greets is a retryable timeout after the sink's timeout."""
    error = await send_failing(make_sink(silent_port, security="none", timeout="0.2s"))

    assert error.retryable
    assert str(error) == "timeout after 0.2s sending to sink 'mail'"


@pytest.mark.parametrize(
    ("refuse", "data_reply", "retryable", "message"),
    [
        ("550 5.1.1 No such user", "250 OK", False, "SMTP 550 from sink 'mail': every recipient"),
        ("450 4.2.1 Mailbox busy", "250 OK", True, "SMTP 450 from sink 'mail': every recipient"),
        (None, "451 4.3.0 Try again later", True, "SMTP 451 from sink 'mail': 4.3.0 Try again"),
        (None, "554 5.6.0 Message refused", False, "SMTP 554 from sink 'mail': 5.6.0 Message"),
    ],
)
async def test_smtp_replies(
    smtp_server: StartServer,
    ca_file: Path,
    *,
    refuse: str | None,
    data_reply: str,
    retryable: bool,
    message: str,
) -> None:
    """SMTP 4xx replies are retryable, 5xx are permanent; the message quotes the reply."""
    server = smtp_server()
    if refuse is not None:
        server.mailbox.refuse[RECIPIENT] = refuse
    server.mailbox.data_reply = data_reply

    error = await send_failing(make_sink(server.port, **login(ca_file)))

    assert error.retryable is retryable
    assert str(error).startswith(message)


async def test_some_recipients_refused(smtp_server: StartServer, ca_file: Path) -> None:
    """Delivered to the others is delivered (a retry would repeat it); the refusal is logged."""
    server = smtp_server()
    server.mailbox.refuse["gone@example.com"] = "550 5.1.1 No such user"
    sink = make_sink(server.port, **login(ca_file, to=[RECIPIENT, "gone@example.com"]))

    with capture_logs() as events:
        await sink.send(make_notification())

    [delivered] = server.mailbox.delivered
    assert delivered.rcpt_tos == [RECIPIENT]
    assert events == [
        {
            "event": "email_recipients_refused",
            "log_level": "warning",
            "sink": "mail",
            "refused": {"gone@example.com": "550 5.1.1 No such user"},
        }
    ]


# --------------------------------------------------------------------------- the message


async def test_message_headers_and_body(smtp_server: StartServer, ca_file: Path) -> None:
    """Subject, addresses, Date, Message-ID, the id header, and every detail in the text."""
    server = smtp_server()
    notification = make_notification(
        description="Top up the account\nbefore the close.",
        labels={"team": "ops", "env": "prod"},
        started_at=datetime(2024, 5, 1, 11, 55, tzinfo=UTC),
        source="vision",
    )
    await make_sink(server.port, **login(ca_file, subject_prefix="[bm]")).send(notification)

    message = server.mailbox.delivered[0].message()
    assert message["Subject"] == (
        "[bm] [CRITICAL] FIRING low-cash (vision): cash_to_withdraw fell to 512.25 (< 1000)"
    )
    assert message["From"] == SENDER
    assert message["To"] == RECIPIENT
    assert message["X-Balance-Monitor-Id"] == "n-0001"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"].startswith("<bm.")
    assert message["Message-ID"].endswith("@example.com>")
    date = parsedate_to_datetime(message["Date"])
    assert abs((datetime.now(tz=UTC) - date).total_seconds()) < 60
    assert message.get_content_type() == "multipart/alternative"
    text_part = message.get_body(preferencelist=("plain",))
    assert text_part is not None
    text = text_part.get_content()
    assert text.splitlines() == [
        "[CRITICAL] FIRING low-cash (vision): cash_to_withdraw fell to 512.25 (< 1000)",
        "",
        "Rule:        low-cash",
        "Severity:    critical",
        "Status:      firing",
        "Source:      vision",
        "Account:     12345678",
        "Field:       cash_to_withdraw",
        "Change:      1500.00 → 512.25",
        "Observed at: 2024-05-01T12:00:00Z",
        "Started at:  2024-05-01T11:55:00Z",
        "Labels:      team=ops, env=prod",
        "Fingerprint: fp-0123456789abcdef",
        "",
        "Top up the account",
        "before the close.",
    ]
    html_part = message.get_body(preferencelist=("html",))
    assert html_part is not None
    markup = html_part.get_content()
    assert "cash_to_withdraw fell to 512.25 (&lt; 1000)" in markup
    assert "<td>1500.00 → 512.25</td>" in markup


async def test_message_id_is_stable_across_retries(smtp_server: StartServer, ca_file: Path) -> None:
    """A retried notification keeps its Message-ID, so mail systems can drop the duplicate."""
    server = smtp_server()
    sink = make_sink(server.port, **login(ca_file))

    await sink.send(make_notification())
    await sink.send(make_notification())
    await sink.send(Notification(id="n-0002", alert=make_notification().alert))
    first, retry, other = [d.message()["Message-ID"] for d in server.mailbox.delivered]

    assert first == retry
    assert other != first


async def test_batch_is_one_message(smtp_server: StartServer, ca_file: Path) -> None:
    """A group of three is one email that counts them and lists each."""
    server = smtp_server()
    sink = make_sink(server.port, **login(ca_file))
    notifications = [
        Notification(id="n-1", alert=make_notification(summary="first").alert),
        Notification(id="n-2", alert=make_notification(summary="second").alert),
        Notification(
            id="n-3", alert=make_notification(summary="third", status=Status.RESOLVED).alert
        ),
    ]

    assert isinstance(sink, BatchSink)
    await sink.send_batch(notifications)

    [delivered] = server.mailbox.delivered
    message = delivered.message()
    assert message["Subject"] == "[balance-monitor] 3 alerts: 2 firing, 1 resolved"
    assert message["X-Balance-Monitor-Id"] == "n-1, n-2, n-3"
    text_part = message.get_body(preferencelist=("plain",))
    assert text_part is not None
    text = text_part.get_content()
    assert text.index(": first") < text.index(": second") < text.index("RESOLVED [CRITICAL]")
    assert text.count("Fingerprint:") == 3


async def test_subject_header_injection(smtp_server: StartServer, ca_file: Path) -> None:
    """Line breaks in a summary stay inside the one Subject line: no extra header, no Bcc."""
    server = smtp_server()
    notification = make_notification(summary="pwned\r\nBcc: attacker@evil.example\r\n\r\nbody")

    await make_sink(server.port, **login(ca_file)).send(notification)

    [delivered] = server.mailbox.delivered
    message = delivered.message()
    assert message.get_all("Subject") == [
        "[balance-monitor] [CRITICAL] FIRING low-cash: pwned Bcc: attacker@evil.example body"
    ]
    assert message.get_all("Bcc") is None
    assert delivered.rcpt_tos == [RECIPIENT]
    header_block = delivered.content.split(b"\r\n\r\n")[0]
    assert b"\r\nBcc:" not in header_block


# --------------------------------------------------------------------------- pure parts


def test_subject_is_clipped() -> None:
    """A long summary makes a subject of at most 200 characters, ending in an ellipsis."""
    text = email_sink.subject([make_notification(summary="x" * 500)], prefix="[bm]")

    assert len(text) == 200
    assert text.endswith("…")
    assert text.startswith("[bm] [CRITICAL] FIRING low-cash: xxx")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, "[CRITICAL] FIRING low-cash: cash_to_withdraw fell to 512.25 (< 1000)"),
        ({"status": Status.RESOLVED}, "RESOLVED [CRITICAL] low-cash: cash_to_withdraw fell"),
        ({"source": "family"}, "[CRITICAL] FIRING low-cash (family): "),
        ({"summary": "a\tb\x00c\u2028d"}, "[CRITICAL] FIRING low-cash: a b c d"),
    ],
)
def test_headline(changes: dict[str, Any], expected: str) -> None:
    """Status, severity, rule (with a non-default source) and the summary, on one line."""
    assert email_sink.headline(make_notification(**changes).alert).startswith(expected)


def test_details_without_account_or_values() -> None:
    """A source-level alert shows dashes; money keeps its digits."""
    alert = make_notification(account_number=None, field=None, previous=None, current=None).alert

    rows = dict(sink_text.detail_rows(alert))

    assert rows["Account"] == "—"
    assert rows["Change"] == "— → —"
    assert rows["Started at"] == "—"
    assert rows["Labels"] == "—"
    assert rows["Observed at"] == OBSERVED_AT.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_html_escapes_user_text() -> None:
    """Rule names, summaries and descriptions are escaped in the HTML part."""
    alert = make_notification(summary="<script>x</script>", description="a & <b>").alert

    markup = email_sink.html_document([alert])

    assert "<script>" not in markup
    assert "&lt;script&gt;x&lt;/script&gt;" in markup
    assert "a &amp; &lt;b&gt;" in markup


@pytest.mark.parametrize(
    ("sender", "domain"),
    [
        ("alerts@example.com", "@example.com>"),
        ("Balance Monitor <alerts@mail.example.org>", "@mail.example.org>"),
        ("alerts@[127.0.0.1]", "@balance-monitor.invalid>"),
    ],
)
def test_message_id_domain(sender: str, domain: str) -> None:
    """The Message-ID takes the sender's domain when it is a plain host name."""
    first = email_sink.message_id(["n-1"], sender)

    assert first.startswith("<bm.")
    assert first.endswith(domain)
    assert email_sink.message_id(["n-1"], sender) == first
    assert email_sink.message_id(["n-1", "n-2"], sender) != first


def test_envelope_addresses() -> None:
    """Display names stay in the headers; the envelope carries the bare addresses."""
    assert email_sink.envelope_address("Ops Team <ops@example.com>") == "ops@example.com"
    assert email_sink.envelope_address("ops@example.com") == "ops@example.com"


# --------------------------------------------------------------------------- building


def test_repr_hides_the_credentials(ca_file: Path) -> None:
    """The sink's repr names it and nothing else."""
    sink = make_sink(25, **login(ca_file))

    assert repr(sink) == "EmailSink(name='mail')"


def test_credentials_from_the_environment(ca_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unset password_env is a ConfigError naming the key, not the value."""
    monkeypatch.delenv("TEST_SMTP_PASSWORD", raising=False)

    with pytest.raises(
        ConfigError, match=r"^sinks\[0\] \(mail\)\.password_env: .*TEST_SMTP_PASSWORD"
    ):
        make_sink(25, username=USERNAME, password_env="TEST_SMTP_PASSWORD")


@pytest.mark.parametrize("content", [None, "not a certificate\n"])
def test_unusable_ca_file(tmp_path: Path, content: str | None) -> None:
    """A missing or unreadable CA bundle is a ConfigError naming sinks[i].ca_file."""
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_text(content, encoding="utf-8")

    with pytest.raises(ConfigError, match=r"^sinks\[0\] \(mail\)\.ca_file: cannot load "):
        make_sink(25, ca_file=str(path))


def test_registry_builds_the_email_sink(ca_file: Path) -> None:
    """type = "email" in the registry builds an EmailSink, which can send groups."""
    config = EmailSinkConfig.model_validate(
        {"type": "email", "name": "mail", "host": "h", "from": SENDER, "to": [RECIPIENT]}
    )

    sink = build_sink(config, index=0, session=None)  # type: ignore[arg-type]

    assert isinstance(sink, email_sink.EmailSink)
    assert isinstance(sink, BatchSink)


# --------------------------------------------------------------------------- digests


async def test_a_digest_is_one_email_with_a_text_and_an_html_part(
    smtp_server: StartServer,
) -> None:
    digest = make_digest()
    server = smtp_server(tls="none")
    await make_sink(server.port, security="none", subject_prefix="[bm]").send_digest(digest)
    [delivered] = server.mailbox.delivered
    message = delivered.message()
    assert message["Subject"].startswith("[bm] Digest close: 2026-12-01: 2,200.00 (+200.00")
    assert message["X-Balance-Monitor-Id"] == "d-1"
    text = message.get_body(("plain",))
    page = message.get_body(("html",))
    assert text is not None
    assert page is not None
    assert text.get_content().replace("\r\n", "\n").rstrip("\n") == digest_render.text(digest)
    assert "PDT &lt;flag&gt; &amp; co" in page.get_content()
