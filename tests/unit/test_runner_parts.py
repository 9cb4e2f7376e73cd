"""Unit tests of the runner's parts: bounded output, the local transport, locks, latency."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from engine.state.sqlite import SqliteStore
from engine.transports.local import run_local
from engine.transports.output import OutputBuffer


def test_output_buffer_keeps_head_and_tail_and_spools(tmp_path: Path) -> None:
    buf = OutputBuffer("stdout", cap=100, spool_dir=tmp_path)
    data = bytes(range(256)) * 10
    for i in range(0, len(data), 7):
        buf.write(data[i:i + 7])
    buf.close()
    assert buf.total == len(data)
    assert bytes(buf.head) == data[:50] and bytes(buf.tail) == data[-50:]
    assert buf.spool_path is not None and Path(buf.spool_path).read_bytes() == data
    assert "bytes not shown" in buf.text()


def test_output_buffer_under_the_cap_is_whole(tmp_path: Path) -> None:
    buf = OutputBuffer("stdout", cap=100, spool_dir=tmp_path)
    buf.write(b"a" * 100)
    buf.close()
    assert buf.text() == "a" * 100 and buf.spool_path is None
    buf = OutputBuffer("stdout", cap=100, spool_dir=tmp_path, label="step1")
    buf.write(b"a" * 60)
    buf.write(b"b" * 60)
    buf.close()
    assert Path(buf.spool_path or "").read_bytes() == b"a" * 60 + b"b" * 60
    assert Path(buf.spool_path or "").name.startswith("step1-stdout-")
    assert buf.text().startswith("a" * 50) and buf.text().endswith("b" * 50) and "20 bytes not shown" in buf.text()


def test_output_split_inside_a_utf8_character_streams_whole_characters() -> None:
    seen: list[str] = []
    cancel = threading.Event()
    res = run_local(["/bin/sh", "-c", "printf '\\303'; sleep 0.2; printf '\\251\\n'"], cwd=None, env={},
                    deadline=None, cancel=cancel, on_output=lambda s, t: seen.append(t))
    assert res.rc == 0
    assert "".join(seen) == "é\n"
    assert res.stdout.text() == "é\n"


def test_cancel_kills_promptly() -> None:
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    t0 = time.monotonic()
    res = run_local(["/bin/sh", "-c", "sleep 30"], cwd=None, env={}, deadline=None, cancel=cancel)
    assert res.cancelled and time.monotonic() - t0 < 1.0


def test_background_child_holding_the_pipe_does_not_hang() -> None:
    t0 = time.monotonic()
    res = run_local(["/bin/sh", "-c", "sleep 5 & echo started"], cwd=None, env={}, deadline=None,
                    cancel=threading.Event())
    assert res.rc == 0 and res.stdout.text() == "started\n"
    assert time.monotonic() - t0 < 2.5


def test_lock_in_the_same_process_is_exclusive(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    a, b = SqliteStore(url), SqliteStore(url)
    try:
        assert a.acquire("x", "run-a", "p", "me", "now") is None
        holder = b.acquire("x", "run-b", "p", "me", "now")
        assert holder is not None and holder.run_id == "run-a" and holder.pid == os.getpid()
        a.release("x", "run-a")
        assert b.acquire("x", "run-b", "p", "me", "now") is None
    finally:
        b.release("x", "run-b")
        a.close()
        b.close()


def test_state_url_forms(tmp_path: Path) -> None:
    from engine.errors import ProcedureError
    from engine.state.opening import state_path

    assert state_path(f"sqlite:///{tmp_path}/s.db") == tmp_path / "s.db"
    assert state_path("sqlite:///rel/s.db") == Path("rel/s.db")
    with pytest.raises(ProcedureError):
        state_path("postgres://x/y")
