"""Run a command on this machine in its own session, so a timeout can kill its whole tree.

A step's processes do not outlive it. The command runs in its own session (one process group
to signal), and on Linux runproc is a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``):
a descendant that left the group (``setsid``, a double fork) is re-parented to runproc instead
of init when its parent dies. Every process of a step carries the step's token in its
environment (``RUNPROC_STEP_TOKEN``); when the command ends, times out or is cancelled, the
runproc children left over that carry the token are killed with their descendants, then
reaped. A process that must outlive its step (a service a step starts on purpose) is started
without the token (``env -u RUNPROC_STEP_TOKEN ...``, ``systemd-run``). Elsewhere than Linux
only the process group is killed.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .output import LineStream, OutputBuffer

KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL
POLL = 0.1  # how often a quiet command is checked for cancellation and its deadline
PIPE_GRACE = 1.0  # how long a background child may hold the pipes after the command exited
READ_SIZE = 256 * 1024


@dataclass
class CommandResult:
    rc: int | None
    stdout: OutputBuffer
    stderr: OutputBuffer
    timed_out: bool = False
    cancelled: bool = False


TOKEN_VAR = "RUNPROC_STEP_TOKEN"
TOKEN_BYTES = TOKEN_VAR.encode()
_tokens = itertools.count(1)
_live_roots: set[int] = set()  # the command processes running now (parallel steps): not leftovers
_roots_lock = threading.Lock()
_subreaper: bool | None = None
_subreaper_lock = threading.Lock()


def become_subreaper() -> bool:
    """Make runproc the reaper of its orphaned descendants (Linux >= 3.4); once per process.

    Under a lock: the first commands of a run may start together (parallel steps), and one
    that went on before the other had made runproc the reaper would neither be answered
    truly nor have its orphans come back to runproc."""
    global _subreaper
    if _subreaper is not None:
        return _subreaper
    with _subreaper_lock:
        if _subreaper is None:
            reaper = False
            if sys.platform.startswith("linux"):
                try:
                    import ctypes

                    libc = ctypes.CDLL(None, use_errno=True)
                    reaper = libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
                except (OSError, AttributeError):
                    reaper = False
            _subreaper = reaper
    return _subreaper


_environ_copy: dict[bytes, bytes] = {}  # os.environ as the last command inherited it
_environ_lock = threading.Lock()


def _inherited() -> dict[bytes, bytes]:
    """runproc's environment as bytes, copied again only when it changed.

    Building a command's environment from ``os.environ`` decodes every variable and Popen
    encodes it back: about 50 us of each local command (W1, docs/performance.md). The bytes
    behind ``os.environ`` compare in C in under a microsecond, so a change made by an
    embedder (or a test) between two commands is still seen by the second.
    """
    global _environ_copy
    current = getattr(os.environ, "_data", None)  # CPython's bytes (POSIX) behind os.environ
    if not isinstance(current, dict):
        return {os.fsencode(k): os.fsencode(v) for k, v in os.environ.items()}
    with _environ_lock:
        if current != _environ_copy:
            _environ_copy = dict(current)
        return _environ_copy


def _after_fork_in_child() -> None:
    """A forked runproc (the warm start's child) starts afresh: PR_SET_CHILD_SUBREAPER is not
    inherited, its parent's running commands are not its own, and a lock another thread of
    the parent held at the fork would never be released."""
    global _subreaper, _subreaper_lock, _roots_lock, _environ_lock, _live_roots
    _subreaper = None
    _subreaper_lock, _roots_lock, _environ_lock = threading.Lock(), threading.Lock(), threading.Lock()
    _live_roots = set()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def run_local(argv: list[str], *, cwd: Path | None, env: dict[str, str], deadline: float | None,
              cancel: threading.Event, stdin: bytes | None = None, spool_dir: Path | None = None,
              on_output: Callable[[str, str], None] | None = None, label: str | None = None,
              replace_env: bool = False) -> CommandResult:
    """Run argv, capturing both streams boundedly; kill the process group on deadline/cancel.

    ``env`` is added to runproc's environment (``replace_env``: it is the whole environment).
    ``on_output`` receives whole decoded lines as they arrive.
    """
    out = OutputBuffer("stdout", spool_dir=spool_dir, label=label)
    err = OutputBuffer("stderr", spool_dir=spool_dir, label=label)
    reaping = become_subreaper()
    token = f"{os.getpid()}.{next(_tokens)}"
    added = {os.fsencode(k): os.fsencode(v) for k, v in env.items()}
    env_bytes = {**({} if replace_env else _inherited()), **added, TOKEN_BYTES: os.fsencode(token)}
    # start_new_session: the command and everything it starts share a process group we can
    # kill as one, and a Ctrl-C on the terminal reaches runproc alone, which decides
    with _roots_lock:  # registered before any of its children can be orphaned to us
        proc = _spawn(argv, cwd, env_bytes, stdin is not None)
        if proc is None:
            proc = subprocess.Popen(argv, cwd=cwd, env=env_bytes, start_new_session=True,
                                    stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _live_roots.add(proc.pid)
    if stdin is not None and proc.stdin is not None:
        threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True).start()
    assert proc.stdout is not None and proc.stderr is not None
    fds = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    # made for a stream when it first prints: most commands print nothing on one of the two
    lines: dict[int, LineStream] = {}
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    # a pidfd turns "the command exited" into a poll event: no timed waits between a
    # command's end and its step's end (Linux >= 5.3; elsewhere the exit is polled for)
    pidfd = _pidfd_open(proc.pid)
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    timed_out = cancelled = False
    exited_at: float | None = None
    rc: int | None = None
    try:
        while fds or exited_at is None:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                timed_out = True
                break
            if cancel.is_set():
                cancelled = True
                break
            wait = POLL if deadline is None else min(POLL, max(0.0, deadline - now))
            if not fds and pidfd is None:
                # the pipes are closed, but a command may close them and go on running
                try:
                    rc = proc.wait(wait)
                    exited_at = now
                except subprocess.TimeoutExpired:
                    pass
                continue
            events = poller.poll(wait * 1000)
            if not events:
                if exited_at is None and pidfd is None and proc.poll() is not None:
                    exited_at = time.monotonic()
                if exited_at is not None and time.monotonic() - exited_at > PIPE_GRACE:
                    break  # a background child still holds the pipes; it is not ours to wait for
                continue
            for fd, _ in events:
                if fd == pidfd:
                    poller.unregister(fd)
                    exited_at = time.monotonic()
                    continue
                chunk = os.read(fd, READ_SIZE)
                if not chunk:
                    poller.unregister(fd)
                    fds.pop(fd)
                    continue
                fds[fd].write(chunk)
                if on_output is not None:
                    stream = lines.get(fd)
                    if stream is None:
                        stream = lines[fd] = LineStream(fds[fd].name, on_output)
                    stream.feed(chunk)
        if timed_out or cancelled:
            kill_group(proc)
        rc = proc.wait()
    finally:
        with _roots_lock:
            _live_roots.discard(proc.pid)
        if reaping:
            kill_leftovers(token)
        if pidfd is not None:
            os.close(pidfd)
        for stream in lines.values():
            stream.close()
        for pipe in (proc.stdout, proc.stderr):
            pipe.close()
        out.close()
        err.close()
    return CommandResult(rc, out, err, timed_out, cancelled)


class _Spawned:
    """A command started by ``os.posix_spawn``: what run_local and kill_group use of a Popen."""

    def __init__(self, pid: int, stdin: BinaryIO | None, stdout: io.FileIO, stderr: io.FileIO) -> None:
        self.pid = pid
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.returncode: int | None = None

    def _reaped(self, flags: int) -> int | None:
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:  # reaped elsewhere (SIGCHLD ignored): as Popen, say 0
            self.returncode = 0
            return 0
        if pid:
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def poll(self) -> int | None:
        return self.returncode if self.returncode is not None else self._reaped(os.WNOHANG)

    def wait(self, timeout: float | None = None) -> int:
        if timeout is None:
            while self.returncode is None:
                self._reaped(0)
            return self.returncode
        end = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() >= end:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.005)
        assert self.returncode is not None
        return self.returncode


def _spawn(argv: list[str], cwd: Path | None, env: dict[bytes, bytes], with_stdin: bool) -> _Spawned | None:
    """Start ``argv`` as Popen would here (its own session, pipes for its streams, SIGPIPE and
    SIGXFSZ back to their defaults, no descriptor but 0-2), by ``os.posix_spawn``: about 60 us
    less of runproc's CPU a command than Popen, whose environment is encoded in Python
    (docs/performance.md). None when posix_spawn cannot do it as Popen would, and Popen runs
    the command: a folder to change to (os.posix_spawn has no chdir action), a
    program not found on the command's PATH (Popen says so in its words), a platform without
    posix_spawn, or runproc's own 0-2 closed."""
    global _SPAWN
    if not _SPAWN:
        return None
    if cwd is not None and os.fspath(cwd) != _cwd():
        return None
    program = _program(argv[0], env) if argv else None
    if program is None:
        return None
    inheritable = _inheritable_fds()
    if inheritable is None:
        return None
    pipes = [os.pipe(), os.pipe()] + ([os.pipe()] if with_stdin else [])
    if min(fd for pair in pipes for fd in pair) <= 2:  # runproc's own 0-2 closed: Popen copes
        for pair in pipes:
            for fd in pair:
                os.close(fd)
        return None
    (out_r, out_w), (err_r, err_w) = pipes[0], pipes[1]
    in_r, in_w = pipes[2] if with_stdin else (-1, -1)
    actions: list[tuple[Any, ...]] = [
        (os.POSIX_SPAWN_DUP2, in_r, 0) if with_stdin else (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2),
        *((os.POSIX_SPAWN_CLOSE, fd) for fd in inheritable)]
    try:
        pid = os.posix_spawn(program, argv, env, file_actions=actions, setsid=True,
                             setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
    except BaseException as exc:
        for fd in (out_r, err_r, in_w):
            if fd >= 0:
                os.close(fd)
        if isinstance(exc, NotImplementedError):  # a C library without POSIX_SPAWN_SETSID
            _SPAWN = False
            return None
        raise
    finally:
        for fd in (out_w, err_w, in_r):
            if fd >= 0:
                os.close(fd)
    # stdin buffered, as Popen's: its write() goes on until all is sent (a raw one may stop
    # short when a signal interrupts it, and _feed would close the pipe on a truncated input)
    return _Spawned(pid, open(in_w, "wb") if with_stdin else None, io.FileIO(out_r, "rb"), io.FileIO(err_r, "rb"))


_SPAWN = sys.platform.startswith("linux") and hasattr(os, "posix_spawn") and hasattr(os, "POSIX_SPAWN_DUP2")


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # removed under runproc
        return None


def _program(name: str, env: dict[bytes, bytes]) -> str | None:
    """The file ``name`` runs, found as Popen finds it (the command's PATH, not runproc's)."""
    if "/" in name:
        return name
    path = env.get(b"PATH")
    folders = os.fsdecode(path).split(os.pathsep) if path is not None else os.defpath.split(os.pathsep)
    for folder in folders:
        candidate = os.path.join(folder or ".", name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


def _inheritable_fds() -> list[int] | None:
    """Descriptors above 2 a spawned command would keep (Popen closes them all); None when
    /proc cannot say."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return None
    kept = []
    for name in names:
        fd = int(name)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    kept.append(fd)
            except OSError:
                continue  # listdir's own descriptor, closed since
    return kept


def _pidfd_open(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)  # type: ignore[attr-defined, no-any-return]
    except (AttributeError, OSError):
        return None


def _feed(pipe: object, data: bytes) -> None:
    try:
        pipe.write(data)  # type: ignore[attr-defined]
        pipe.close()  # type: ignore[attr-defined]
    except OSError:
        pass


def kill_group(proc: subprocess.Popen[bytes] | _Spawned) -> None:
    """SIGTERM the whole process group, then SIGKILL whatever is left after a grace period."""
    pgid = proc.pid  # start_new_session made the child the leader of its own group
    _signal_group(pgid, signal.SIGTERM)
    end = time.monotonic() + KILL_GRACE
    while time.monotonic() < end:
        if proc.poll() is not None and not _group_alive(pgid):
            return
        time.sleep(0.02)
    _signal_group(pgid, signal.SIGKILL)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _live_members(pgid) != 0


def _live_members(pgid: int) -> int:
    """Members of the group that are not zombies (-1: cannot tell without /proc).

    An orphaned grandchild that died is a zombie until init reaps it, and some container
    inits never do: ``killpg(pgid, 0)`` still succeeds for it, which must not cost the grace.
    """
    try:
        stats = list(_proc_stats())
    except OSError:
        return -1
    live = 0
    for _, fields in stats:
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
            live += 1
    return live


# ---------------------------------------------------------------- what left the group


def _children_of_runproc() -> set[int]:
    """runproc's child processes: with the subreaper, every orphaned descendant is one.

    An orphan goes to the subreaper's first thread that is not exiting, its main thread
    (Linux >= 3.19, ``find_alive_thread``), whichever thread started its parent: while the
    main thread lives, its list is the only one to read (one file, not one per thread: this
    runs after every local command). The direct children of other threads are the commands
    running now, which are not leftovers.
    """
    if _ORPHANS_TO_MAIN and threading.main_thread().is_alive():
        tasks = [str(os.getpid())]
    else:
        try:
            tasks = os.listdir("/proc/self/task")
        except OSError:
            return set()
    pids: set[int] = set()
    for task in tasks:
        pids.update(_task_children(task))
    return pids


def _task_children(task: str) -> list[int]:
    # os.open/os.read, not open(): a buffered text file costs ~10 us more each time
    try:
        fd = os.open(f"/proc/self/task/{task}/children", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        listing = b""
        while chunk := os.read(fd, 65536):
            listing += chunk
        return [int(p) for p in listing.split()]
    except (OSError, ValueError):
        return []
    finally:
        os.close(fd)


def _kernel_at_least(major: int, minor: int) -> bool:
    try:
        parts = os.uname().release.split(".")
        return (int(parts[0]), int(parts[1].split("-")[0])) >= (major, minor)
    except (AttributeError, ValueError, IndexError):
        return False


_ORPHANS_TO_MAIN = sys.platform.startswith("linux") and _kernel_at_least(3, 19)


def _carries(pid: int, token: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f"{TOKEN_VAR}={token}".encode() in f.read().split(b"\0")
    except OSError:
        return False


def _descendants(roots: set[int]) -> list[int]:
    """``roots`` and every process below them, from the parent links in /proc."""
    children: dict[int, list[int]] = {}
    for pid, fields in _proc_stats():
        children.setdefault(int(fields[1]), []).append(pid)
    out: list[int] = []
    stack = list(roots)
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, ()))
    return out


def kill_leftovers(token: str) -> list[int]:
    """Kill what a finished command left running (re-parented to runproc, carrying ``token``),
    with everything below it; reap them. Returns the pids that were signalled."""
    if not _has_children():
        return []
    with _roots_lock:
        candidates = _children_of_runproc() - _live_roots
    mine = {pid for pid in candidates if _carries(pid, token)}
    if not mine:
        return []
    victims = _descendants(mine)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        end = time.monotonic() + (KILL_GRACE if sig == signal.SIGTERM else 0.5)
        while time.monotonic() < end and any(_alive_not_zombie(pid) for pid in victims):
            _reap(mine)
            time.sleep(0.02)
        _reap(mine)
        if not any(_alive_not_zombie(pid) for pid in victims):
            break
    _reap(mine)
    return victims


def _has_children() -> bool:
    """Whether runproc has any child process (running or exited), one system call: a
    leftover is re-parented to runproc, so with no child at all there is none to look for.
    After a sequential step's command is reaped this is the usual answer, and it spares
    reading /proc after every command (W1, docs/performance.md). Linux's wait sees the
    children of every thread of the process; WNOWAIT leaves an exited one to its waiter."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    except (AttributeError, OSError):  # no waitid here: look in /proc
        return True
    return True


def _reap(pids: set[int]) -> None:
    """Collect the exit status of orphans re-parented to runproc (only these: a Popen's own
    child is waited for by its Popen)."""
    for pid in list(pids):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pids.discard(pid)
            continue
        if done:
            pids.discard(pid)


def _alive_not_zombie(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != b"Z"


def _stat_fields(pid: int | str) -> list[bytes] | None:
    """/proc/PID/stat after the command name (state, ppid, pgrp, ...); None when it is gone.
    The name may hold spaces and parentheses: the fields start after its last ')'."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2:].split()


def _proc_stats() -> Iterator[tuple[int, list[bytes]]]:
    """Every process's pid and stat fields (OSError when there is no /proc)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(entry)
            if fields is not None:
                yield int(entry), fields
