"""A local command starts the same whichever way runproc starts it: ``os.posix_spawn`` (the step's
folder is runproc's own) or Popen (another folder): its own session, default SIGPIPE, no
descriptor but 0-2, the command's own PATH, stdin, and Popen's error for a missing program."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.transports import local


@pytest.fixture(params=["posix_spawn", "popen"])
def how(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """Run each test both ways, and check that the way asked for is the way taken."""
    monkeypatch.chdir(tmp_path)
    spawned: list[Any] = []
    real = local._spawn

    def counting(*args: Any) -> Any:
        proc = real(*args)
        spawned.append(proc)
        return proc

    monkeypatch.setattr(local, "_spawn", counting)
    if request.param == "popen":
        monkeypatch.setattr(local, "_SPAWN", False)
    yield request.param
    took_spawn = any(p is not None for p in spawned)
    assert took_spawn == (request.param == "posix_spawn"), spawned


def _run(argv: list[str], env: dict[str, str] | None = None, **kw: Any) -> local.CommandResult:
    return local.run_local(argv, cwd=Path.cwd(), env=env or {}, deadline=None, cancel=threading.Event(), **kw)


def test_the_command_leads_its_own_session(how: str) -> None:
    res = _run(["/bin/sh", "-c", 'ps -o sid= -p $$; echo $$'])
    sid, pid = res.stdout.text().split()
    assert sid == pid


def test_sigpipe_is_back_to_its_default(how: str) -> None:
    # ignored (as in runproc, a Python process), `yes` would complain of a broken pipe forever
    res = _run(["/bin/sh", "-c", "yes | head -n 1"])
    assert res.rc == 0 and res.stdout.text() == "y\n" and res.stderr.text() == ""


def test_no_descriptor_but_the_three_streams(how: str) -> None:
    r, w = os.pipe()
    os.set_inheritable(r, True)  # one an embedder made inheritable: a command still does not get it
    try:
        res = _run(["/bin/sh", "-c", "ls /proc/$$/fd"])
    finally:
        os.close(r)
        os.close(w)
    assert sorted(int(fd) for fd in res.stdout.text().split()) == [0, 1, 2], (r, res.stdout.text())


def test_a_program_is_found_on_the_commands_own_path(how: str, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "only-here"
    program.write_text("#!/bin/sh\necho found me\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    res = _run(["only-here"], env={"PATH": str(bin_dir)})
    assert res.rc == 0 and res.stdout.text() == "found me\n"


def test_a_missing_program_fails_as_popen_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """posix_spawn leaves a program it cannot find to Popen, whose error shell.py catches to
    let the shell say "not found" (rc 127) in its own words."""
    monkeypatch.chdir(tmp_path)
    assert local._spawn(["no-such-program-anywhere"], tmp_path, {b"PATH": b"/usr/bin:/bin"}, False) is None
    with pytest.raises(FileNotFoundError):
        _run(["no-such-program-anywhere"])


def test_stdin_reaches_the_command(how: str) -> None:
    res = _run(["/bin/cat"], stdin=b"fed\n")
    assert res.rc == 0 and res.stdout.text() == "fed\n"


def test_the_environment_is_runprocs_plus_the_steps(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RP_FROM_RUNPROC", "inherited")
    res = _run(["/bin/sh", "-c", 'printf "%s %s %s" "$RP_FROM_RUNPROC" "$RP_STEP" "${RUNPROC_STEP_TOKEN:+token}"'],
               env={"RP_STEP": "given"})
    assert res.stdout.text() == "inherited given token"


def test_exit_status_and_signals_read_as_popen_reads_them(how: str) -> None:
    assert _run(["/bin/sh", "-c", "exit 7"]).rc == 7
    assert _run(["/bin/sh", "-c", "kill -TERM $$"]).rc == -15


def test_another_folder_is_left_to_popen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    assert local._spawn(["/bin/true"], other, {}, False) is None
    res = local.run_local(["/bin/pwd"], cwd=other, env={}, deadline=None, cancel=threading.Event())
    assert res.stdout.text().strip() == str(other)


def test_a_c_library_without_setsid_for_posix_spawn_falls_back_to_popen(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(local, "_SPAWN", True)

    def unsupported(*args: Any, **kwargs: Any) -> int:
        raise NotImplementedError("setsid is not supported")

    monkeypatch.setattr(local.os, "posix_spawn", unsupported)
    before = len(os.listdir("/proc/self/fd"))
    res = _run(["/bin/sh", "-c", "echo $$"])
    assert res.rc == 0 and res.stdout.text().strip().isdigit()
    assert local._SPAWN is False  # asked once, not at every command
    assert len(os.listdir("/proc/self/fd")) == before  # the spawn's pipes were closed


def test_stdin_is_fed_whole_when_a_signal_interrupts_the_feeder(how: str) -> None:
    """The feeder thread blocks on a full pipe while the command sleeps; a signal runproc
    handles (SIGINT, SIGTERM, SIGHUP in a run) interrupts its write. The rest is still sent."""
    import signal
    import time

    data = b"x" * (1 << 20)
    previous = signal.signal(signal.SIGUSR1, lambda *_: None)
    done: dict[str, Any] = {}
    try:
        runner = threading.Thread(target=lambda: done.setdefault("res", _run(
            ["/bin/sh", "-c", "sleep 0.5; wc -c"], stdin=data)))
        runner.start()
        feeder = None
        for _ in range(200):
            # listed as soon as it is created; its ident once it runs
            feeder = next((t for t in threading.enumerate() if "_feed" in t.name and t.ident is not None), None)
            if feeder is not None:
                break
            time.sleep(0.005)
        assert feeder is not None and feeder.ident is not None
        time.sleep(0.1)  # it has filled the pipe and waits in write()
        signal.pthread_kill(feeder.ident, signal.SIGUSR1)
        runner.join(timeout=30)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert done["res"].stdout.text().strip() == str(len(data))


def test_whole_lines_reach_on_output_from_each_stream_that_prints(how: str) -> None:
    heard: list[tuple[str, str]] = []
    res = _run(["/bin/sh", "-c", "printf 'a\\nb'; printf 'e\\n' >&2"], on_output=lambda s, t: heard.append((s, t)))
    assert res.rc == 0
    assert sorted(heard) == [("stderr", "e\n"), ("stdout", "a\n"), ("stdout", "b")]
    heard.clear()
    _run(["/bin/true"], on_output=lambda s, t: heard.append((s, t)))
    assert heard == []


def test_the_leftover_check_reads_proc_only_when_runproc_has_a_child(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without any child process there can be no leftover (it would be re-parented to runproc):
    one waitid answers, /proc is not read. With a child, the scan runs as before."""
    import subprocess

    scans: list[int] = []
    real = local._children_of_runproc

    def scanning() -> set[int]:
        scans.append(1)
        return real()

    monkeypatch.setattr(local, "_children_of_runproc", scanning)
    if not local._has_children():  # another test's child may still be about
        assert local.kill_leftovers("no-such-token") == []
        assert scans == []
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert local._has_children()
        assert local.kill_leftovers("no-such-token") == []  # not carrying the token: not ours
        assert scans == [1]
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()
