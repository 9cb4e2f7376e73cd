"""The warm start (engine/cli/warm.py, warmserver.py): a command handed to a server that has the
engine imported runs in its child exactly as it would have run cold, and the server never
outlives its welcome: not after an edit, not past its idle time, never with a command's secrets.

Each test has a runtime folder of its own (XDG_RUNTIME_DIR), so its server is its own; the
fixture kills whatever server is left in it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.cli.warmserver import servers_in, stop_servers_in
from tests.helpers.cli import RUNPROC, child_env, state_args, wait_until, write
from tests.helpers.terminal import Terminal


def _servers(runtime: Path) -> list[int]:
    return servers_in(runtime)




@pytest.fixture
def runtime() -> Iterator[Path]:
    # short: a socket's path holds 108 bytes, and pytest's tmp_path under xdist comes near it
    folder = Path(tempfile.mkdtemp(prefix="rp-warm-"))
    yield folder
    stop_servers_in(folder, signal.SIGKILL)
    shutil.rmtree(folder, ignore_errors=True)


def _env(runtime: Path, **extra: str) -> dict[str, str]:
    # not the suite's shared folder (tests/conftest.py): this test's own, under XDG_RUNTIME_DIR
    return child_env({"RUNPROC_WARM": "1", "RUNPROC_WARM_DIR": "", "XDG_RUNTIME_DIR": str(runtime),
                      "RUNPROC_WARM_IDLE": "120", **extra})


def _start(tmp: Path, runtime: Path, *args: str, env: dict[str, str] | None = None,
           preexec: Callable[[], object] | None = None, process_group: int | None = None) -> subprocess.Popen[str]:
    """runproc ARGS started in ``tmp`` as a user starts it: stdin empty, its output read here."""
    return subprocess.Popen([*RUNPROC, *args], cwd=tmp, env=env or _env(runtime), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec,
                            process_group=process_group)


def _run(tmp: Path, runtime: Path, *args: str, env: dict[str, str] | None = None,
         umask: int | None = None) -> tuple[int, str, str, int]:
    """runproc ARGS as a user runs it: (exit code, stdout, stderr, the command's own pid)."""
    proc = _start(tmp, runtime, *args, env=env, preexec=(lambda: os.umask(umask)) if umask is not None else None)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err, proc.pid


def _warm_up(tmp: Path, runtime: Path, env: dict[str, str] | None = None) -> int:
    """Start the server the way a first command does, and wait until it answers; its pid."""
    proc = write(tmp, "procedure: hello\nsteps:\n  - id: a\n    shell: 'true'\n", "hello.yml")
    rc, _, err, _ = _run(tmp, runtime, str(proc), *state_args(tmp), env=env)
    assert rc == 0, err
    wait_until(lambda: len(_servers(runtime)) == 1 and list((runtime / "runproc").glob("*.sock")))
    return _servers(runtime)[0]


def test_a_command_runs_in_the_servers_child_as_it_would_cold(tmp_path: Path, runtime: Path) -> None:
    server = _warm_up(tmp_path, runtime)
    path = write(tmp_path, """
        procedure: where
        steps:
          - id: here
            shell: echo "parent=$PPID dir=$(pwd) colour=$COLOUR umask=$(umask)"
          - id: broken
            shell: echo out; echo err >&2; exit 3
    """)
    env = _env(runtime, COLOUR="teal")
    rc, out, err, pid = _run(tmp_path, runtime, str(path), "--output", "json", *state_args(tmp_path),
                             env=env, umask=0o027)
    cold_rc, cold_out, _, cold_pid = _run(tmp_path, runtime, str(path), "--output", "json", *state_args(tmp_path),
                                          env={**env, "RUNPROC_WARM": "0"}, umask=0o027)
    assert (rc, cold_rc) == (1, 1), err
    warm, cold = json.loads(out), json.loads(cold_out)
    # the step ran in a child of the server (its runproc is not the command's process) ...
    said = warm["steps"][0]["stdout"].split()
    parent = int(said[0].split("=")[1])
    assert parent != pid and parent != server
    assert Path(f"/proc/{server}").exists()  # ... and the server is still there for the next one
    # ... in the command's folder, with its environment and umask, as the cold command does
    assert said[1:] == [f"dir={tmp_path}", "colour=teal", "umask=0027"]
    assert cold["steps"][0]["stdout"].split()[0] == f"parent={cold_pid}"
    assert cold["steps"][0]["stdout"].split()[1:] == said[1:]
    for report in (warm, cold):
        assert [s["status"] for s in report["steps"]] == ["ok", "failed"]
        assert report["steps"][1]["rc"] == 3 and report["exit_code"] == 1


def test_errors_and_exit_codes_are_the_cold_commands(tmp_path: Path, runtime: Path) -> None:
    _warm_up(tmp_path, runtime)
    bad = write(tmp_path, "procedure: bad\nsteps:\n  - id: a\n    shel: 'true'\n", "bad.yml")
    for args in ([str(bad)], ["validate", str(bad)], ["missing.yml"], ["lsit"]):
        warm = _run(tmp_path, runtime, *args)
        cold = _run(tmp_path, runtime, *args, env=_env(runtime, RUNPROC_WARM="0"))
        assert warm[:3] == cold[:3], args
        assert warm[0] == 2 and "Traceback" not in warm[2]
    assert "bad.yml:4:5: steps[0]: unknown key" in _run(tmp_path, runtime, str(bad))[2]


def test_ctrl_c_and_sigkill_reach_the_run(tmp_path: Path, runtime: Path) -> None:
    _warm_up(tmp_path, runtime)
    path = write(tmp_path, """
        procedure: long
        steps:
          - id: a
            shell: "true"
            rollback: {shell: touch undone}
          - id: b
            shell: echo $PPID > runner; touch running; sleep 60
    """)
    proc = _start(tmp_path, runtime, str(path), "--output", "json", *state_args(tmp_path))
    wait_until(lambda: (tmp_path / "running").exists())
    proc.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C sends to the command
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert json.loads(out)["status"] == "interrupted"
    assert (tmp_path / "undone").exists()

    (tmp_path / "running").unlink()
    proc = _start(tmp_path, runtime, str(path), *state_args(tmp_path))
    wait_until(lambda: (tmp_path / "running").exists())
    runner = int((tmp_path / "runner").read_text())
    assert runner != proc.pid
    proc.kill()  # SIGKILL of the command: its run is killed with it, as a cold command's would be
    assert proc.wait(timeout=10) == -signal.SIGKILL
    wait_until(lambda: not Path(f"/proc/{runner}").exists() or "Z" in _state(runner), timeout=10)


def test_the_run_is_recorded_as_the_commands_process(tmp_path: Path, runtime: Path) -> None:
    """The pid a lock's holder is named by (and checked, and signalled by runproc serve) is the
    command's, the process the operator started, not the server's child."""
    _warm_up(tmp_path, runtime)
    path = write(tmp_path, """
        procedure: locked
        lock: db-primary
        steps:
          - id: hold
            shell: touch holding; sleep 30
    """)
    first = _start(tmp_path, runtime, str(path), *state_args(tmp_path))
    try:
        wait_until(lambda: (tmp_path / "holding").exists())
        rc, out, err, _ = _run(tmp_path, runtime, str(path), *state_args(tmp_path))
        assert rc == 3 and f"(pid {first.pid} on" in out + err, out + err
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=20)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0]
    except OSError:
        return "gone"


def test_a_terminal_is_the_commands_terminal(tmp_path: Path, runtime: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _warm_up(tmp_path, runtime)
    for name, value in _env(runtime).items():
        monkeypatch.setenv(name, value)
    path = write(tmp_path, """
        procedure: ask
        steps:
          - id: approve
            confirm: "Go ahead?"
          - id: go
            shell: "true"
    """)
    term = Terminal(tmp_path, [str(path), *state_args(tmp_path)])
    term.read_until(lambda: term.shows(r"Go ahead\? \[y/N\]"))
    term.type("y\n")  # read by the server's child from the command's terminal
    final = term.wait()
    assert term.code == 0, "\n".join(final)
    assert any("go" in line and "ok" in line for line in final), "\n".join(final)


def test_an_edit_to_what_the_server_imported_retires_it(tmp_path: Path, runtime: Path) -> None:
    # sitecustomize is imported by every interpreter on PYTHONPATH, the server's too: editing it
    # stands for an upgrade or an edit in a checkout
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("FLAVOUR = 1\n")
    env = _env(runtime, PYTHONPATH=str(site))
    old = _warm_up(tmp_path, runtime, env)
    (site / "sitecustomize.py").write_text("FLAVOUR = 22\n")
    proc = write(tmp_path, "procedure: again\nsteps:\n  - id: a\n    shell: echo ran\n")
    rc, out, err, _ = _run(tmp_path, runtime, str(proc), *state_args(tmp_path), env=env)
    assert rc == 0 and "ok" in out, err  # refused by the old server: run cold, not lost
    wait_until(lambda: not Path(f"/proc/{old}").exists() or _state(old) == "Z")
    wait_until(lambda: len(_servers(runtime)) == 1)  # and a fresh server took its place
    assert _servers(runtime)[0] != old


def test_no_server_when_off_or_when_the_folder_is_not_private(tmp_path: Path, runtime: Path) -> None:
    proc = write(tmp_path, "procedure: once\nsteps:\n  - id: a\n    shell: 'true'\n")
    rc, _, err, _ = _run(tmp_path, runtime, str(proc), *state_args(tmp_path), env=_env(runtime, RUNPROC_WARM="0"))
    assert rc == 0, err
    time.sleep(0.5)
    assert _servers(runtime) == [] and not (runtime / "runproc").exists()
    (runtime / "runproc").mkdir(mode=0o755)
    (runtime / "runproc").chmod(0o755)  # readable by others: no socket goes there
    rc, _, err, _ = _run(tmp_path, runtime, str(proc), *state_args(tmp_path))
    assert rc == 0, err
    time.sleep(0.5)
    assert _servers(runtime) == [] and list((runtime / "runproc").iterdir()) == []
    deep = runtime / ("d" * 90)
    deep.mkdir(mode=0o700)
    rc, _, err, _ = _run(tmp_path, runtime, str(proc), *state_args(tmp_path), env=_env(runtime, RUNPROC_WARM_DIR=str(deep)))
    assert rc == 0, err  # a socket path too long for the system: cold, quietly
    time.sleep(0.5)
    assert _servers(runtime) == []


def test_the_server_keeps_no_secret_and_leaves_when_idle(tmp_path: Path, runtime: Path) -> None:
    env = _env(runtime, DB_PASSWORD="hunter2-do-not-keep", RUNPROC_WARM_IDLE="2")
    server = _warm_up(tmp_path, runtime, env)
    environ = Path(f"/proc/{server}/environ").read_bytes()
    assert b"hunter2-do-not-keep" not in environ and b"DB_PASSWORD" not in environ
    wait_until(lambda: not Path(f"/proc/{server}").exists() or _state(server) == "Z", timeout=15)
    assert list((runtime / "runproc").glob("*.sock")) == []



def test_a_killed_server_takes_its_runs_with_it(tmp_path: Path, runtime: Path) -> None:
    """As a cold command's run dies with it: no run goes on unwatched under a lock whose holder
    (the command) has gone, and the next run takes the lock."""
    server = _warm_up(tmp_path, runtime)
    path = write(tmp_path, """
        procedure: locked
        lock: db-primary
        steps:
          - id: hold
            shell: echo $PPID > runner; sleep 30
    """)
    first = _start(tmp_path, runtime, str(path), *state_args(tmp_path))
    wait_until(lambda: (tmp_path / "runner").exists() and (tmp_path / "runner").read_text().strip() != "")
    runner = int((tmp_path / "runner").read_text())
    os.kill(server, signal.SIGKILL)
    _, err = first.communicate(timeout=20)
    assert first.returncode == 70 and "went away" in err, err
    wait_until(lambda: _state(runner) in ("gone", "Z"), timeout=10)
    (tmp_path / "runner").unlink()
    second = write(tmp_path, "procedure: locked\nlock: db-primary\nsteps:\n  - id: quick\n    shell: 'true'\n",
                   "again.yml")
    rc, out, err, _ = _run(tmp_path, runtime, str(second), *state_args(tmp_path))
    assert rc == 0, out + err


def test_limits_and_ignored_signals_are_the_commands(tmp_path: Path, runtime: Path) -> None:
    _warm_up(tmp_path, runtime)
    path = write(tmp_path, """
        procedure: limits
        steps:
          - id: show
            shell: echo "nofile=$(ulimit -n)"; touch started; sleep 1
    """)

    def fewer_files_and_no_quit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))
        signal.signal(signal.SIGQUIT, signal.SIG_IGN)  # as a job runner may leave it

    proc = _start(tmp_path, runtime, str(path), "--output", "json", *state_args(tmp_path),
                  preexec=fewer_files_and_no_quit)
    wait_until(lambda: (tmp_path / "started").exists())
    proc.send_signal(signal.SIGQUIT)  # ignored by the command, so by its run too
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert json.loads(out)["steps"][0]["stdout"].strip() == "nofile=200"
    # the limits are in the server's name: that command had a server of its own
    wait_until(lambda: len(_servers(runtime)) == 2)


def test_ctrl_z_stops_the_run_and_fg_resumes_it(tmp_path: Path, runtime: Path) -> None:
    _warm_up(tmp_path, runtime)
    path = write(tmp_path, """
        procedure: pausable
        steps:
          - id: a
            shell: echo $PPID > runner; sleep 3
          - id: b
            shell: touch b
    """)
    # a process group of its own, with its parent (this test) in another group of the same
    # session, as a shell's job is: in an orphaned group the kernel drops a SIGTSTP's stop
    proc = _start(tmp_path, runtime, str(path), *state_args(tmp_path), process_group=0)
    wait_until(lambda: (tmp_path / "runner").exists() and (tmp_path / "runner").read_text().strip() != "")
    proc.send_signal(signal.SIGTSTP)  # while step a still runs
    runner = int((tmp_path / "runner").read_text())
    wait_until(lambda: _state(runner) == "T", timeout=10)  # the run stopped (the command with it, as a job)
    time.sleep(0.5)  # stopped: the run starts nothing (step a, in its own session as cold, goes on)
    assert not (tmp_path / "b").exists()
    proc.send_signal(signal.SIGCONT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, out + err
    assert (tmp_path / "b").exists()


def test_a_broken_request_neither_stops_the_server_nor_keeps_its_descriptors(tmp_path: Path,
                                                                              runtime: Path) -> None:
    import marshal
    import socket

    server = _warm_up(tmp_path, runtime)
    sock_path = str(next((runtime / "runproc").glob("*.sock")))
    for body in (b"", b"\x00garbage", marshal.dumps(["not", "a", "dict"])):
        read_end, write_end = os.pipe()
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(sock_path)
        assert conn.recv(2) == b"A\n"
        socket.send_fds(conn, [len(body).to_bytes(4, "big") + body], [write_end])
        conn.recv(16)  # the server closes the connection
        conn.close()
        os.close(write_end)
        os.set_blocking(read_end, False)
        wait_until(lambda fd=read_end: _at_end(fd), timeout=10)  # nobody kept the write end open
        os.close(read_end)
    assert _state(server) not in ("gone", "Z")
    rc, _, err, _ = _run(tmp_path, runtime, str(tmp_path / "hello.yml"), *state_args(tmp_path))
    assert rc == 0, err


def _at_end(fd: int) -> bool:
    try:
        return os.read(fd, 1) == b""
    except BlockingIOError:
        return False


def test_tmpdir_and_descriptor_paths_are_the_commands(tmp_path: Path, runtime: Path) -> None:
    _warm_up(tmp_path, runtime)
    mine = tmp_path / "my-tmp"
    mine.mkdir()
    path = write(tmp_path, "procedure: t\nvars:\n  x: '1'\nsteps:\n  - id: a\n    shell: echo {{ vars.x }}\n")
    rc, _, err, _ = _run(tmp_path, runtime, str(path), *state_args(tmp_path), env=_env(runtime, TMPDIR=str(mine)))
    assert rc == 0, err
    assert list(mine.glob("_jinja2-cache-*")), "the template cache went to the server's TMPDIR"
    # a procedure given as one of the command's own descriptors: run cold, and it works
    bash = subprocess.run(["bash", "-c", f"{' '.join(RUNPROC)} <(cat {path}) {' '.join(state_args(tmp_path))}"],
                          cwd=tmp_path, env=_env(runtime), capture_output=True, text=True, timeout=60)
    assert bash.returncode == 0, bash.stdout + bash.stderr
