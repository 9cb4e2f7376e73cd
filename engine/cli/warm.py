"""Warm start: a fork server that has already imported the engine (docs/performance.md#warm-start).

Most of a short command's time is imports: pydantic, Jinja2, YAML, the checks and the executors
cost ~200 ms before the first step, where a dry run of ten steps itself takes ~20 ms. So the
first command of a session starts, beside itself, a server that imports all that once and then
waits on a Unix socket; every later command connects, hands over its argv, environment, umask,
working directory and its stdin, stdout and stderr (the descriptors themselves), and the server
forks a child that runs the command exactly as the cold command would, on those descriptors.
The command that connected waits, passes its signals on to the child (Ctrl-Z included) and
exits with its exit status; killed with SIGKILL, its child is killed too, and a killed server
takes its children with it. The same engine runs either way: this module only moves where the
imports are paid.

The run in the child stands for the command (engine/process.py): the pid recorded for it, its
lock and its schedule is the command's, which lives exactly as long as the run.

The server is per user: its socket lives in a folder only the user can open
(``$RUNPROC_WARM_DIR``, else ``$XDG_RUNTIME_DIR/runproc``, else ``/tmp/runproc-UID``; checked
for owner and mode), and its name is a hash of the installation and of all a process inherits
rather than sets (cgroup, namespaces, ids, limits: see socket_path). Before each fork the
server checks that none of the files it imported changed (an upgrade, an edit in a
checkout): if one did, it refuses (the command then runs cold and starts a fresh server) and
leaves once its running children are done. It leaves by itself after ``RUNPROC_WARM_IDLE``
seconds without a command (default 600). ``RUNPROC_WARM=0`` turns all of this off; the servers
(``serve``, ``worker``, ``scheduler``), the few commands that are cheap anyway (``--version``,
``--help``, ``completion``) and a procedure given as a descriptor always run cold.

This module is the client, imported by every command before anything else; the server is
engine/cli/warmserver.py.
"""

from __future__ import annotations

import _signal
import _socket
import marshal
import os
import sys
import time
import zlib

# The client half stays on C modules (_socket, _signal, marshal: no enum or JSON machinery to
# import), a few milliseconds that are a tenth of what a warm command costs in all.
PROTOCOL = 1
# commands that never go through the server: long-lived servers of their own (a run's pid and
# process tree should be theirs), the shell's completion protocol, and what costs nothing anyway
COLD_COMMANDS = frozenset({"serve", "worker", "scheduler", "completion", "schema", "init",
                           "--version", "-V", "--help", "-h"})
OFF = ("0", "off", "no", "false")
# what the command passes on to its child; SIGWINCH: a terminal resized (the live table redraws)
FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGUSR1, _signal.SIGUSR2,
             _signal.SIGWINCH)
_SIZE = 4  # a request is its length (4 bytes, big-endian), then marshal's bytes of a dict


# ---------------------------------------------------------------- where the server listens


def socket_folder() -> str | None:
    """The user's private folder for the socket, created 0700; None when it is not safely ours
    (another owner, group- or world-accessible, a symlink): the command then runs cold."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    uid = os.getuid()
    folder = (os.environ.get("RUNPROC_WARM_DIR")
              or (os.path.join(runtime, "runproc") if runtime else os.path.join("/tmp", f"runproc-{uid}")))
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(folder)
    except OSError:
        return None
    import stat

    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o077:
        return None
    return folder


def socket_path(folder: str) -> str:
    """The socket of the server for this command. A run is forked by the server, so what a
    process inherits rather than sets (its cgroup, namespaces, user and groups, resource
    limits, nice value, CPU affinity, no-new-privileges, seccomp and capabilities, the
    interpreter's flags) is the server's: all of it is in the name, so a command under
    `ulimit -n 256`, `nice`, `unshare`, a systemd unit or a container gets a server of its own,
    started by it with what it has. A pid it records means the same process to both."""
    import resource

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    inherited: list[object] = [PROTOCOL, sys.executable, sys.version, sys.path, here, tuple(sys.flags),
                               sys.warnoptions, os.getuid(), os.geteuid(), os.getgid(), os.getegid(),
                               sorted(os.getgroups()), os.getpriority(os.PRIO_PROCESS, 0),
                               [resource.getrlimit(getattr(resource, n)) for n in sorted(dir(resource))
                                if n.startswith("RLIMIT_")]]
    try:
        inherited.append(sorted(os.sched_getaffinity(0)))
        with open("/proc/self/cgroup", "rb") as f:
            inherited.append(f.read())
        with open("/proc/self/status", "rb") as f:
            inherited += [line for line in f.read().splitlines()
                          if line.startswith((b"NoNewPrivs", b"Seccomp:", b"CapInh", b"CapPrm", b"CapEff",
                                              b"CapBnd", b"CapAmb"))]
        inherited += [os.readlink(f"/proc/self/ns/{ns}") for ns in sorted(os.listdir("/proc/self/ns"))]
    except (OSError, AttributeError):  # not Linux: nothing more to tell apart
        pass
    key = zlib.crc32(repr(inherited).encode())
    return os.path.join(folder, f"warm-{key:08x}.sock")


def enabled(argv: list[str]) -> bool:
    """Whether this command goes through the warm server."""
    if os.environ.get("RUNPROC_WARM", "1").strip().lower() in OFF:
        return False
    if not argv or argv[0] in COLD_COMMANDS or os.name != "posix":
        return False
    # a file that is one of this process's descriptors (`runproc <(generate)`): only 0-2 are
    # handed over, so such a command runs here
    if any(a == "-" or a.startswith(("/dev/fd/", "/proc/self/", "/dev/stdin")) for a in argv):
        return False
    # -X importtime, -I, -E and friends: a command run under interpreter flags runs as asked
    flags = sys.flags
    return not (sys._xoptions or flags.isolated or flags.ignore_environment or flags.dev_mode
                or flags.no_site or flags.inspect or flags.verbose)


# ---------------------------------------------------------------- the client: every command


def run_warm(argv: list[str]) -> int | None:
    """Run ``argv`` in a child of the warm server and return its exit code; None when there is
    no server to use (the caller runs the command itself; a server is started for next time).

    None is returned only when the command surely did not start in a child: no server, one
    that did not take the connection within seconds (the request is sent only after it
    did), or one that refused it. Once it said it forked, this waits for the child."""
    if not enabled(argv):
        return None
    try:
        folder = socket_folder()
        path = socket_path(folder) if folder is not None else None
        if path is None or len(path.encode()) > 100:  # sun_path holds 108 bytes
            return None
        for fd in (0, 1, 2):
            os.fstat(fd)  # a closed stdin cannot be handed over: run cold
        conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    except Exception:  # noqa: BLE001 - whatever keeps the warm start from starting: run cold
        return None
    signals = _Signals()
    try:
        code = _converse(conn, argv, path, signals)
    finally:
        conn.close()
    if code is None:
        signals.restore()  # and a Ctrl-C that came meanwhile reaches the cold command
    return code


def _converse(conn: _socket.socket, argv: list[str], path: str, signals: _Signals) -> int | None:
    try:
        conn.settimeout(5.0)  # a server that does not take the connection: nothing was sent
        conn.connect(path)
        lines = _Lines(conn)
        if lines.next() != b"A":  # never taken (the server is leaving, or stopped): nothing ran
            start_server(path)
            return None
        conn.settimeout(None)
        _hand_over(conn, argv, signals.ignored)
    except Exception:  # noqa: BLE001 - not handed over: nothing ran
        start_server(path)
        return None
    first = lines.next()
    if first == b"R":  # an upgrade or an edit since the server started: run cold, start anew
        start_server(path)
        return None
    if not first.startswith(b"P"):
        print("runproc: the warm server went away as it took the command, which may or may not "
              "have started (runproc runs shows it); RUNPROC_WARM=0 runs commands without it", file=sys.stderr)
        return 70
    signals.forward_to(int(first[1:]))  # the child runs the command: a signal here is for it
    last = lines.next()
    if not last.startswith(b"S"):  # the server was killed; its children die with it
        print("runproc: the warm server went away while the command ran, and the run with it "
              "(runproc resume picks it up; RUNPROC_WARM=0 runs commands without a server)", file=sys.stderr)
        return 70
    status = int(last[1:])
    if status < 0:  # killed by a signal: end the same way, as a shell expects
        signals.restore(pending=False)
        try:  # noqa: SIM105 - SIGKILL's cannot be set (nor needs to be)
            _signal.signal(-status, _signal.SIG_DFL)
        except (OSError, ValueError):
            pass
        os.kill(os.getpid(), -status)
        return 128 - status
    return status


class _Signals:
    """The signals of a command handed over. Until the child's pid is known they are kept
    (a Ctrl-C during the hand-over is neither lost nor a traceback); then each goes to the
    child. A signal this process ignores (``nohup``, a job runner) is not taken: the child
    ignores it too. Ctrl-Z stops the child, then this process; SIGCONT wakes both."""

    def __init__(self) -> None:
        self.child: int | None = None
        self.pending: list[int] = []
        self.previous: dict[int, object] = {}
        self.ignored = [sig for sig in (*FORWARDED, _signal.SIGTSTP) if _signal.getsignal(sig) == _signal.SIG_IGN]
        for sig in FORWARDED:
            if sig not in self.ignored:
                self.previous[sig] = _signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.child is None:
            self.pending.append(signum)
        else:
            _forward(self.child, signum)

    def forward_to(self, child: int) -> None:
        self.child = child
        if _signal.SIGTSTP not in self.ignored:
            self.previous[_signal.SIGTSTP] = _signal.signal(_signal.SIGTSTP, self._on_stop)
            self.previous[_signal.SIGCONT] = _signal.signal(_signal.SIGCONT, self._on_continue)
        for signum in self.pending:
            _forward(child, signum)
        self.pending.clear()

    def _on_stop(self, _signum: int, _frame: object) -> None:
        if self.child is not None:
            _forward(self.child, _signal.SIGSTOP)
        _signal.signal(_signal.SIGTSTP, _signal.SIG_DFL)
        os.kill(os.getpid(), _signal.SIGTSTP)  # stops here until SIGCONT

    def _on_continue(self, _signum: int, _frame: object) -> None:
        if self.child is not None:
            _forward(self.child, _signal.SIGCONT)
        _signal.signal(_signal.SIGTSTP, self._on_stop)

    def restore(self, pending: bool = True) -> None:
        """The handlers as they were; with ``pending``, the signals kept meanwhile re-sent here."""
        for sig, handler in self.previous.items():
            _signal.signal(sig, handler)
        if pending:
            for signum in self.pending:
                os.kill(os.getpid(), signum)
        self.pending.clear()


def _hand_over(conn: _socket.socket, argv: list[str], ignored: list[int]) -> None:
    """Send the command: argv, environment, umask, stream encodings, the signals it ignores;
    stdin, stdout, stderr and the working folder as descriptors."""
    mask = os.umask(0)
    os.umask(mask)
    streams = [(s.encoding, s.errors) if s is not None else None for s in (sys.stdin, sys.stdout, sys.stderr)]
    # pid: the run stands for this process (engine/process.py), which waits for it to the end
    request = marshal.dumps({"protocol": PROTOCOL, "argv": argv, "argv0": sys.argv[0], "env": dict(os.environ),
                             "umask": mask, "streams": streams, "pid": os.getpid(), "started": time.monotonic(),
                             "ignored": ignored})
    cwd = os.open(".", os.O_RDONLY)
    try:
        fds = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in (0, 1, 2, cwd))
        data = len(request).to_bytes(_SIZE, "big") + request
        sent = conn.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        if sent < len(data):
            conn.sendall(data[sent:])
    finally:
        os.close(cwd)


class _Lines:
    """The server's answers, a line each (``P<pid>``, then ``S<status>``), off a raw socket."""

    def __init__(self, conn: _socket.socket) -> None:
        self.conn = conn
        self.buffer = b""

    def next(self) -> bytes:
        while b"\n" not in self.buffer:
            try:
                more = self.conn.recv(64)
            except OSError:
                more = b""
            if not more:
                return b""
            self.buffer += more
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line


def _forward(child: int, signum: int) -> None:
    try:  # noqa: SIM105 - contextlib is one more import for every command
        os.kill(child, signum)
    except ProcessLookupError:
        pass


_SERVER = ("import sys; sys.path[:] = sys.argv[2].split('\\n'); "
           "from engine.cli.warmserver import main; sys.exit(main(sys.argv[1:2]))")


def start_server(path: str) -> None:
    """Start a warm server for ``path`` in the background, detached; it is not waited for."""
    import subprocess

    # the server's own environment matters only while it imports (a child takes its command's):
    # no secrets of this command's environment are left in a long-lived process
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONPATH", "PYTHONHOME",
            "XDG_RUNTIME_DIR", "XDG_STATE_HOME", "XDG_CACHE_HOME", "RUNPROC_WARM_IDLE", "RUNPROC_WARM_DIR",
            "VIRTUAL_ENV")
    # PYTHON*: the interpreter's flags (the socket's name holds them) must be the command's
    env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("PYTHON")}
    try:  # noqa: SIM105 - contextlib is one more import for every command
        # sys.path as this command has it (the socket's name is a hash of it), not python -m's
        subprocess.Popen([sys.executable, "-c", _SERVER, path, "\n".join(sys.path)], env=env, cwd="/",
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True, close_fds=True)
    except OSError:  # no server this time: the command runs cold all the same
        pass
