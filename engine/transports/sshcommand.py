"""One remote command's protocol: the wrapper that reports its PID, the kill, reading its channel.

Killing remote commands
-----------------------
Closing an SSH channel does not stop the remote command (sshd only closes its pipes), so
every command is started through a small wrapper that prints its PID first and then
``exec``s the command. sshd starts each non-pty session in a new session (``setsid``), so
that PID is also the process group: on timeout or cancel a second channel sends SIGTERM,
then SIGKILL, to the group and to every descendant of the PID (which also catches
children that ``sudo`` moved to a new session).
"""

from __future__ import annotations

import re
import select
import shlex
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from .local import KILL_GRACE
from .output import LineStream, OutputBuffer
from .sshconfig import Become

PID_MARKER = re.compile(rb"\x1erunproc-pid (\d+)\n")
MAX_PREAMBLE = 64 * 1024  # output a login shell may print before our PID marker


def script(cmd: str, env: Mapping[str, str] | None, cwd: str | None) -> str:
    """The command with its environment and directory, for ``/bin/sh -c``.

    The environment goes in as ``export`` lines because sshd's AcceptEnv refuses most names.
    """
    lines = [f"export {k}={shlex.quote(str(v))}" for k, v in (env or {}).items()]
    if cwd:
        lines.append(f"cd {shlex.quote(cwd)} || exit 1")
    return "\n".join([*lines, cmd])


def wrapped(cmd: str, env: Mapping[str, str] | None, cwd: str | None, become: Become | None,
            shell: str = "/bin/sh") -> str:
    """What the remote login shell is given: report our PID (= process group), then exec the command."""
    inner = script(cmd, env, cwd)
    argv = become.argv(inner, shell) if become else [shell, "-c", inner]
    reporter = "printf '\\036runproc-pid %s\\n' \"$$\"; exec \"$@\""
    return shlex.join(["exec", "/bin/sh", "-c", reporter, "runproc", *argv])


def kill_script(pid: int, grace: float = KILL_GRACE) -> str:
    """SIGTERM the process group and every descendant of ``pid``; SIGKILL what is left after ``grace``."""
    tree = ("ps -e -o pid= -o ppid= 2>/dev/null | awk -v root=$p '{kids[$2] = kids[$2] \" \" $1} "
            "END {q = root; out = \"\"; while (q != \"\") {n = split(q, a, \" \"); q = \"\"; "
            "for (i = 1; i <= n; i++) {m = split(kids[a[i]], c, \" \"); "
            "for (j = 1; j <= m; j++) {out = out \" \" c[j]; q = q \" \" c[j]}}} print out}'")
    steps = int(grace / 0.1)
    # dash's kill takes no "--" but reads "-SIG -PGID" as a group; procps' /bin/kill wants "--".
    group = "{{ kill -{sig} -$p 2>/dev/null || /bin/kill -{sig} -- -$p 2>/dev/null; }}"
    # "anything left?": ps, so that zombies waiting for a reaper do not count; without ps,
    # kill -0 one pid at a time (on several it fails as soon as one is gone)
    alive = ("alive() { if [ -n \"$t$(ps -o pid= -p $$ 2>/dev/null)\" ]; then "
             "ps -e -o pgid= -o pid= -o stat= 2>/dev/null | awk -v p=$p -v t=\" $p $t \" "
             "'$3 !~ /^Z/ && ($1 == p || index(t, \" \" $2 \" \")) {f = 1} END {exit !f}'; return; fi; "
             "kill -0 -$p 2>/dev/null && return 0; "
             "for x in $p $t; do kill -0 $x 2>/dev/null && return 0; done; return 1; }")
    return (f"p={pid}; t=$({tree}); {alive}; {group.format(sig='TERM')}; kill -TERM $p $t 2>/dev/null; "
            f"i=0; while [ $i -lt {steps} ] && alive; do sleep 0.1; i=$((i+1)); done; "
            f"{group.format(sig='KILL')}; kill -KILL $p $t 2>/dev/null; exit 0")


def feed_stdin(chan: Any, data: bytes) -> None:
    """Send ``data`` then EOF; run in a thread, so a command that reads slowly never blocks the pump."""
    try:
        chan.sendall(data)
        chan.shutdown_write()
    except Exception:  # noqa: BLE001 - the command exited before reading all of it
        pass


class RemoteCommand:
    """Reads one running channel into bounded buffers, separating our PID marker from its output."""

    def __init__(self, chan: Any, out: OutputBuffer, err: OutputBuffer,
                 on_output: Callable[[str, str], None] | None) -> None:
        self.chan = chan
        self.out = out
        self.err = err
        # whole lines only: a secret cut across two reads would escape redaction (output.py)
        self.lines = ({name: LineStream(name, on_output) for name in ("stdout", "stderr")}
                      if on_output is not None else {})
        self.pid: int | None = None
        self.preamble = bytearray()
        self.searching = True

    def pump(self, deadline: float | None, cancel: threading.Event) -> str | None:
        """Read until the command ends; 'timed_out' or 'cancelled' when stopped early."""
        chan = self.chan
        exited_at: float | None = None
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return "timed_out"
            if cancel.is_set():
                return "cancelled"
            wait = 0.25 if deadline is None else min(0.25, max(0.0, deadline - now))
            select.select([chan], [], [], wait)
            self.drain()
            if chan.eof_received and not chan.recv_ready() and not chan.recv_stderr_ready():
                # output is complete; the exit status is normally already here or right behind
                chan.status_event.wait(5.0 if deadline is None else max(0.0, min(5.0, deadline - now)))
                return None
            if chan.closed:
                return None
            if chan.exit_status_ready():
                exited_at = exited_at or now
                if now - exited_at > 1.0:
                    return None  # a background child still holds the output open; not ours to wait for

    def drain(self) -> None:
        chan = self.chan
        while chan.recv_ready():
            self._stdout(chan.recv(65536))
        while chan.recv_stderr_ready():
            data = chan.recv_stderr(65536)
            self.err.write(data)
            self._emit("stderr", data)

    def wait_pid(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while self.pid is None and self.searching and time.monotonic() < end and not self.chan.closed:
            select.select([self.chan], [], [], 0.05)
            self.drain()

    def drain_until_closed(self, seconds: float) -> None:
        """After a kill: collect the last output and the exit status, for a bounded time."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (self.chan.eof_received and self.chan.status_event.is_set()):
            select.select([self.chan], [], [], 0.05)
            self.drain()
            if self.chan.closed:
                break

    def _stdout(self, data: bytes) -> None:
        if not self.searching:
            self.out.write(data)
            self._emit("stdout", data)
            return
        self.preamble += data
        m = PID_MARKER.search(self.preamble)
        if m is not None:
            self.pid = int(m.group(1))
            rest = bytes(self.preamble[: m.start()] + self.preamble[m.end():])
        elif len(self.preamble) > MAX_PREAMBLE:
            rest = bytes(self.preamble)  # no marker: a strange login shell; keep its output as output
        else:
            return
        self.searching = False
        self.preamble.clear()
        self._stdout(rest)

    def flush(self) -> None:
        if self.searching and self.preamble:
            self.searching = False
            self._stdout(bytes(self.preamble))

    def _emit(self, stream: str, data: bytes) -> None:
        if data and stream in self.lines:
            self.lines[stream].feed(data)

    def close_lines(self) -> None:
        for line in self.lines.values():
            line.close()
