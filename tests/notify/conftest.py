"""Fixtures of the notification tests: the SMTP server (tests/servers/smtp.py) beside the
HTTP server every test has, and a helper that runs a procedure written for the test."""

from __future__ import annotations

import socket
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.servers.smtp import smtp, smtp_server  # noqa: F401 - fixtures used by the tests here

RunIt = Callable[..., Any]


@pytest.fixture
def run_procedure(tmp_path: Path) -> RunIt:
    """``run_procedure(yaml_text, **options)``: the RunResult of the procedure, run in-process
    without a state store (nothing here is about history), events collected in ``.events``."""
    import engine

    def run(text: str, *, name: str = "notified.yml", **options: Any) -> Any:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        events: list[Any] = []
        options.setdefault("journal", False)
        result = engine.run(path, on_event=events.append, **options)
        result.events = events
        return result

    return run


def warnings(result: Any) -> list[str]:
    from engine import events

    return [e.text for e in result.events if isinstance(e, events.Note) and e.level == "warning"]


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: a receiver that is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
