"""The warm server (engine/cli/warm.py says what it is for and how a command reaches it).

Under a lock beside its socket it imports the engine and builds the format's validators once
(``_preload``), notes every file it imported, and only then listens on the socket the command
that started it named. It forks a child per command: the child takes
the command's descriptors, folder, umask and environment and runs it through app.run_command,
as the command would have run it itself. The server sends the child's pid, then its exit
status; it kills a child whose command went away (SIGKILL), refuses commands once any file it
imported changed (and leaves when its children are done), and leaves after its idle time.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import signal
import socket
import struct
import sys
from typing import Any

from .warm import _SIZE, PROTOCOL

IDLE_DEFAULT = 600.0  # seconds without a command before the server leaves (RUNPROC_WARM_IDLE)


def _preload() -> None:
    """Import what commands use and build the format's validators, on a procedure of every
    common kind of step: the children start where this leaves off. Nothing here opens a file
    a child would share, starts a thread or touches the state."""
    # what a run imports as it goes: the local transport's prctl, the user's name, the
    # console's terminal checks; paramiko's import alone is ~170 ms of a fan-out over SSH
    import ctypes  # noqa: F401
    import encodings.unicode_escape  # noqa: F401 - Jinja2's lexer decodes a string literal with it
    import getpass  # noqa: F401
    import pwd  # noqa: F401 - getpass.getuser's when no LOGNAME, USER, LNAME or USERNAME says
    import tempfile
    import termios  # noqa: F401

    import paramiko  # noqa: F401

    from .. import api, inventory, observe  # noqa: F401
    from ..execution import fanout, scheduler  # noqa: F401
    from ..executors import assertion, secretstores, shell, wait  # noqa: F401
    from ..state import fingerprints, plans, replay, retention, spool, sqlite, sqlstore  # noqa: F401
    from ..transports import local, output, ssh  # noqa: F401
    from ..ui import console, logs, report  # noqa: F401 - report: --output json's
    from . import app, common, history, inspect  # noqa: F401
    from . import replay as replay_commands  # noqa: F401

    sample = ("procedure: warm-up\nparams:\n  n: {type: int, default: 1, min: 0}\n"
              "vars:\n  dir: /tmp/{{ params.n }}\nsteps:\n"
              "  - id: a\n    shell: echo {{ vars.dir }}\n    retry: {attempts: 2, delay: 1s}\n"
              "    verify:\n      - shell: 'true'\n    rollback:\n      shell: 'true'\n"
              "  - id: b\n    needs: [a]\n    when: params.n > 0\n    assert: params.n >= 0\n"
              "  - id: c\n    wait: 1s\nfinally:\n  - id: d\n    shell: 'true'\n")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "warm-up.yml")
        with open(path, "w") as f:
            f.write(sample)
        api.validate(path)
    from ..format import expressions

    for mode in ("text", "shell", "sql"):  # Jinja2's environments, one per quoting
        expressions.environment(mode)


def _fingerprint() -> list[tuple[str, int, int]]:
    """Every file the server imported, with its mtime and size: any change means stale."""
    out = []
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path:
            try:
                st = os.stat(path)
            except OSError:
                continue
            out.append((path, st.st_mtime_ns, st.st_size))
    return out


def _stale(files: list[tuple[str, int, int]]) -> bool:
    for path, mtime, size in files:
        try:
            st = os.stat(path)
        except OSError:
            return True
        if st.st_mtime_ns != mtime or st.st_size != size:
            return True
    return False


class Server:
    """One listening socket, a child per command, each child's status sent to its command."""

    def __init__(self, path: str, idle: float) -> None:
        import selectors

        self.path = path
        self.idle = idle
        self.children: dict[int, socket.socket] = {}  # pid -> the command's connection
        self.selector = selectors.DefaultSelector()
        self.listener: socket.socket | None = None
        self.inode = 0
        self.lock = -1
        self.pid = os.getpid()

    def take_lock(self) -> bool:
        """The lock beside the socket, held for the server's life; False when another has it."""
        import fcntl

        self.lock = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def bind(self) -> None:
        """Listen (under the lock): from now on commands come here."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # a server that died without cleaning up; we hold the lock
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        listener.listen(64)
        self.inode = os.stat(self.path).st_ino
        self.listener = listener

    def serve(self, files: list[tuple[str, int, int]]) -> None:
        import selectors
        import time

        assert self.listener is not None
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the selector through the pipe
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop_listening())
        self.wake = (wake_r, wake_w)
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(wake_r, selectors.EVENT_READ, "wake")
        last = time.monotonic()
        while self.listener is not None or self.children:
            timeout = None if self.children else max(0.0, last + self.idle - time.monotonic())
            if self.listener is not None and timeout is not None and timeout <= 0:
                self.stop_listening()
                continue
            for key, _ in self.selector.select(timeout if self.listener is not None else 1.0):
                if key.data == "accept" and self.listener is not None:
                    last = time.monotonic()
                    self.accept(files)
                elif key.data == "wake":
                    os.read(wake_r, 512)
                else:  # a command's connection readable: it went away (killed): so does its child
                    self.abandoned(key.data)
            self.reap()

    def stop_listening(self) -> None:
        if self.listener is None:
            return
        self.selector.unregister(self.listener)
        self.listener.close()
        self.listener = None
        try:
            if os.stat(self.path).st_ino == self.inode:
                os.unlink(self.path)
        except OSError:
            pass
        # a fresh server may start now, while this one waits for its running children
        if self.lock >= 0:
            os.close(self.lock)
            self.lock = -1

    def accept(self, files: list[tuple[str, int, int]]) -> None:
        import selectors

        assert self.listener is not None
        conn, _ = self.listener.accept()
        try:
            conn.sendall(b"A\n")  # taken: the command sends itself only after this
            request, fds = _receive(conn)
        except Exception:  # noqa: BLE001 - a malformed or abandoned request: nothing to run
            conn.close()
            return
        if request.get("protocol") != PROTOCOL or len(fds) != 4 or _stale(files):
            for fd in fds:
                os.close(fd)
            conn.sendall(b"R\n")
            conn.close()
            self.stop_listening()  # an edit or an upgrade: the next command starts a fresh server
            return
        pid = os.fork()
        if pid == 0:  # the child: never returns
            _child(request, fds, conn, self)
        for fd in fds:  # else the command's pipes would never see their end
            os.close(fd)
        with contextlib.suppress(OSError):
            conn.sendall(b"P%d\n" % pid)
        self.children[pid] = conn
        self.selector.register(conn, selectors.EVENT_READ, pid)

    def abandoned(self, pid: int) -> None:
        conn = self.children.get(pid)
        if conn is None:
            return
        try:
            data = conn.recv(1)
        except OSError:
            data = b""
        if not data:  # the command is gone (SIGKILL): as for a cold command, its run ends with it
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self.selector.unregister(conn)

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(conn)
            with contextlib.suppress(OSError):
                conn.sendall(b"S%d\n" % code)
            conn.close()


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """The request and its descriptors; on any failure the descriptors received are closed."""
    conn.settimeout(5.0)  # a connection that never says anything does not hold the server
    data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 16, 8)
    try:
        return _parse(conn, data), list(fds)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _parse(conn: socket.socket, data: bytes) -> dict[str, Any]:
    # only this user can reach the folder; a peer of another uid (root aside) is refused anyway
    uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[1]
    if uid != os.getuid():
        raise ValueError("another user")
    if len(data) < _SIZE:
        raise ValueError("short request")
    size = int.from_bytes(data[:_SIZE], "big")
    body = data[_SIZE:]
    while len(body) < size:
        more = conn.recv(size - len(body))
        if not more:
            raise ValueError("short request")
        body += more
    conn.settimeout(None)
    request = marshal.loads(body)
    if not isinstance(request, dict):
        raise ValueError("not a request")
    return request


def _child(request: dict[str, Any], fds: list[int], conn: socket.socket, server: Server) -> None:
    """In the forked child: become the command (its descriptors, folder, environment) and run it."""
    code = 70
    try:
        # the server killed (kill -9, the OOM killer): its runs die with it, as a cold command's
        # run dies with it, rather than go on unwatched under a lock whose holder looks gone
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != server.pid:  # it died before that took effect
            os._exit(70)
        os.setpgid(0, 0)  # its own process group: a signal to the server's group is not for runs
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
                    signal.SIGWINCH):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for sig in request.get("ignored") or ():  # what the command ignores (nohup), so does its run
            signal.signal(sig, signal.SIG_IGN)
        server.selector.close()
        if server.listener is not None:
            server.listener.close()
        for other in server.children.values():
            other.close()
        for fd in (*server.wake, server.lock):
            if fd >= 0:
                os.close(fd)
        conn.close()
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        os.fchdir(fds[3])
        for fd in fds:
            os.close(fd)
        os.umask(int(request["umask"]))
        os.environ.clear()
        os.environ.update(request["env"])
        import time

        time.tzset()
        import tempfile

        tempfile.tempdir = None  # the command's TMPDIR, not the one the server read while loading
        import locale

        with contextlib.suppress(locale.Error):
            locale.setlocale(locale.LC_CTYPE, "")  # as Python's start-up does, from this environment
        from .. import executors

        executors.reset_plugins()  # entry points are read once per process: a plugin installed since
        from .. import process

        process.stand_for(int(request["pid"]), float(request["started"]))
        _stdio(request.get("streams") or [None, None, None])
        sys.argv = [request.get("argv0") or "runproc", *request["argv"]]
        from .app import run_command

        code = run_command(list(request["argv"]))
    except BaseException as exc:  # noqa: BLE001 - a child never returns into the server's loop
        with contextlib.suppress(OSError):
            os.write(2, f"runproc: the warm start failed ({type(exc).__name__}: {exc}); "
                        "RUNPROC_WARM=0 runs commands without it\n".encode())
    os._exit(code)


def _stdio(streams: list[Any]) -> None:
    """sys.stdin, stdout and stderr on the command's descriptors, with its encodings."""
    import io

    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    for fd, name, spec in ((0, "stdin", streams[0]), (1, "stdout", streams[1]), (2, "stderr", streams[2])):
        encoding, errors = spec if spec else ("utf-8", "strict")
        tty = os.isatty(fd)
        raw = io.FileIO(fd, "rb" if fd == 0 else "wb", closefd=False)
        if fd == 0:
            stream = io.TextIOWrapper(io.BufferedReader(raw), encoding=encoding, errors=errors)
        else:
            stream = io.TextIOWrapper(io.BufferedWriter(raw), encoding=encoding, errors=errors,
                                      line_buffering=tty or fd == 2, write_through=unbuffered)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def main(argv: list[str]) -> int:
    """The server on socket ``argv[0]`` (started by start_server, not by hand)."""
    if len(argv) != 1:
        print("usage: the warm server is started by runproc itself (engine/cli/warm.py)", file=sys.stderr)
        return 2
    try:
        idle = float(os.environ.get("RUNPROC_WARM_IDLE") or IDLE_DEFAULT)
    except ValueError:
        idle = IDLE_DEFAULT
    server = Server(argv[0], idle)
    if not server.take_lock():
        return 0  # another server got there first
    _preload()
    import gc

    # what is loaded now stays: the collector never walks it again, so a child does not copy
    # (by touching them) the pages of the whole loaded engine
    gc.freeze()
    # what it imported, as it is now, and only then the socket: an edit made once a command
    # can reach this server is one the next command sees (commands meanwhile run cold)
    files = _fingerprint()
    server.bind()
    server.serve(files)
    return 0


def servers_in(folder: str | os.PathLike[str]) -> list[int]:
    """The pids of warm servers whose socket is in ``folder`` (their command line names it): what
    the test suite and the bench stop when they are done with the servers they started."""
    from .warm import _SERVER

    folder = os.path.join(os.path.abspath(folder), "")
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        # python -c _SERVER SOCKET SYS_PATH, as start_server runs it
        if len(args) > 3 and args[1] == b"-c" and args[2] == _SERVER.encode() and args[3].startswith(
                os.fsencode(folder)):
            found.append(int(entry))
    # a server's children (running commands) carry its command line too: not servers
    return [pid for pid in found if _parent(pid) not in found]


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def stop_servers_in(folder: str | os.PathLike[str], sig: int = signal.SIGTERM) -> None:
    """Signal every warm server of ``folder`` (SIGTERM: it leaves once its children are done)."""
    for pid in servers_in(folder):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
