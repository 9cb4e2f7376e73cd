"""An SMTP server on 127.0.0.1 (aiosmtpd) that offers STARTTLS with a certificate made for the
test, requires it before AUTH, checks one user and password, and records every mail.

Fixtures:
  smtp_server -> SmtpServer (session): the server, its CA file (``ca``), ``user``/``password``
  smtp        -> SmtpServer (function): same server, mails and logins forgotten before the test
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from .tlsproxy import make_certificates


@dataclass
class ReceivedMail:
    sender: str
    recipients: list[str]
    data: bytes
    tls: bool  # the mail came over a STARTTLS session
    authenticated: bool

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


@dataclass
class SmtpServer:
    host: str
    port: int
    ca: Path
    user: str = "notifier"
    password: str = "smtp-pw-canary-2718"
    mails: list[ReceivedMail] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)  # (user, accepted)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Any = None

    def reset(self) -> None:
        with self._lock:
            self.mails.clear()
            self.logins.clear()


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        with self.server._lock:
            self.server.mails.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), envelope.content,
                                                  session.ssl is not None, bool(session.authenticated)))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_smtp(folder: Path) -> SmtpServer:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    certs = make_certificates(folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.server_cert, certs.server_key)
    server = SmtpServer("127.0.0.1", 0, certs.ca)

    def authenticator(smtp: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = (isinstance(data, LoginPassword) and data.login.decode() == server.user
              and data.password.decode() == server.password)
        with server._lock:
            server.logins.append((data.login.decode() if isinstance(data, LoginPassword) else "?", ok))
        return AuthResult(success=ok, handled=False)

    for _ in range(5):  # a port taken between choosing and binding it: choose again
        server.port = _free_port()
        controller = Controller(_Handler(server), hostname="127.0.0.1", port=server.port, tls_context=context,
                                require_starttls=True, auth_require_tls=True, authenticator=authenticator,
                                ready_timeout=10)
        try:
            controller.start()
        except OSError:
            continue
        server._controller = controller
        return server
    raise RuntimeError("no free port for the SMTP server")


@pytest.fixture(scope="session")
def smtp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpServer]:
    server = start_smtp(tmp_path_factory.mktemp("smtp"))
    try:
        yield server
    finally:
        server._controller.stop()


@pytest.fixture
def smtp(smtp_server: SmtpServer) -> SmtpServer:
    smtp_server.reset()
    return smtp_server
