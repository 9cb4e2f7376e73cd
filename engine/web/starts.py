"""Starting a run from ``runproc serve`` (the start form, ``POST /api/v1/procedures/{name}/runs``).

The params are checked here first, with the command line's own checks and words
(``resolve_params``: an unknown param with a did-you-mean, a value of the wrong type, a pattern
or a choice not met, a required one missing), so a bad form is answered at once. The run itself
is an ordinary ``runproc FILE --state URL`` process, in a session of its own: it is recorded,
journaled, locked and rolled back as any run from a shell, and it goes on if the server stops.

What the process is given, and why:

- the params as JSON on its stdin (``--params-file /dev/stdin``), never on its command line,
  where any user of the machine could read a secret in ``ps``;
- ``--state`` without a password; a PostgreSQL password goes in ``PGPASSWORD``, for the same
  reason;
- ``LOGNAME``/``USER`` set to the token's name, so the run is recorded as started by the person
  who pressed the button (a confirm step's ``four_eyes`` then keeps them from approving it);
- ``RUNPROC_APPROVAL_WAIT`` (default 1h, unless the server's environment sets it): nobody is at
  a terminal, so a confirm step without a timeout waits that long for an answer from the page
  or ``runproc approve`` instead of being refused at once.

The run's id is found in the state by the process's pid once the run is recorded (a real run
as it starts, a dry run when it ends).
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import FailedError, ProcedureError

APPROVAL_WAIT = "1h"
# how long a start waits for its run to be recorded (a dry run: for it to end) before answering
# that it was started without an id to show yet; a bound on a hang, not the run's duration
FIND_SECONDS = 30.0


class StartFailed(FailedError):
    """The process ended without recording a run: its last words say why (a 502)."""


@dataclass
class Started:
    run_id: str | None  # None: still not recorded after FIND_SECONDS
    pid: int
    dry_run: bool


def check_params(file: str, given: dict[str, Any], *, from_text: bool) -> dict[str, Any]:
    """The params as the run will take them, typed; ProcedureError with the CLI's problems.
    ``from_text``: the values are text from a form (read as ``-p NAME=VALUE`` reads them)."""
    from ..api import load
    from ..format.params import resolve_params

    proc = load(file)
    if from_text:
        return resolve_params(proc, cli={k: str(v) for k, v in given.items()})
    return resolve_params(proc, values=given)


def problems_text(exc: ProcedureError) -> list[str]:
    problems = list(getattr(exc, "problems", []) or [])
    return [" ".join(str(p).split()) for p in problems] or [" ".join(str(exc).split())]


def _runproc() -> list[str]:
    script = Path(sys.executable).parent / "runproc"
    return [str(script)] if script.exists() else [sys.executable, "-m", "engine.cli"]


def _state_for_child(url: str) -> tuple[str, dict[str, str]]:
    """The state URL for a command line (no password) and the environment carrying it."""
    if "://" not in url or url.startswith("sqlite"):
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            url = f"sqlite:///{Path(url[len('sqlite:///'):]).resolve()}"  # the child's cwd is elsewhere
        return url, {}
    parts = urlsplit(url)
    if parts.password is None:
        return url, {}
    from ..state.opening import shown_url

    return shown_url(url), {"PGPASSWORD": unquote(parts.password)}


@dataclass
class Child:
    """A ``runproc`` process this server started: its stderr's last lines are kept (and the pipe
    drained, so a full pipe cannot stall it) and its end is waited for, so no zombie stays."""

    proc: subprocess.Popen[str]
    since: str  # when it was started (UTC, ISO): its run is recorded at or after this
    last: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=5))
    done: threading.Event = field(default_factory=threading.Event)

    def _reap(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if line.strip():
                self.last.append(line.strip())
        self.proc.wait()
        self.done.set()


def spawn(argv_tail: list[str], *, state_url: str, user: str, params: dict[str, Any], cwd: str,
          name: str) -> Child:
    """Start ``runproc ARGV --state URL --params-file /dev/stdin`` as ``user``, in a session of its
    own (a Ctrl-C of the server does not stop it), the params on its stdin (secrets included:
    never on a command line). StartFailed when it cannot be started at all."""
    url, env_extra = _state_for_child(state_url)
    argv = [*_runproc(), *argv_tail, "--state", url, "--params-file", "/dev/stdin"]
    env = {**os.environ, **env_extra, "LOGNAME": user, "USER": user}
    env.setdefault("RUNPROC_APPROVAL_WAIT", APPROVAL_WAIT)
    env.pop("RUNPROC_STATE", None)
    since = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    try:
        proc = subprocess.Popen(argv, cwd=cwd if Path(cwd).is_dir() else "/", env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    except OSError as exc:
        raise StartFailed(f"cannot start runproc: {exc.strerror or exc}") from None
    assert proc.stdin is not None
    try:
        proc.stdin.write(json.dumps(params, default=str))
        proc.stdin.close()
    except OSError:
        pass  # it ended already: its stderr says why
    child = Child(proc, since)
    threading.Thread(target=child._reap, name=f"{name}-{proc.pid}", daemon=True).start()
    return child


def start(file: str, params: dict[str, Any], *, state_url: str, user: str, dry_run: bool,
          store: Any) -> Started:
    """Start ``runproc FILE`` with ``params`` (already checked) in the background; the run's id
    once it is recorded. StartFailed when the process ends without one."""
    child = spawn([file, *(["--dry-run"] if dry_run else [])], state_url=state_url, user=user, params=params,
                  cwd=str(Path(file).parent), name="run")
    proc, done = child.proc, child.done
    deadline = time.monotonic() + FIND_SECONDS
    while True:
        if not dry_run or done.is_set():  # a dry run is recorded as it ends
            run_id = store.run_of_process(proc.pid, child.since)
            if run_id is not None:
                return Started(run_id, proc.pid, dry_run)
            if done.is_set():
                said = child.last[-1] if child.last else f"exit {proc.returncode}"
                raise StartFailed(f"the run did not start: {said.removeprefix('runproc: ')}")
        if time.monotonic() >= deadline:
            return Started(None, proc.pid, dry_run)
        done.wait(0.05)


def form_values(form: dict[str, str]) -> dict[str, str]:
    """The params a form gives, as text: its non-empty ``param.NAME`` fields (an empty field is
    not given, so the declared default holds; a name nobody declared is resolve_params' to
    refuse, with a did-you-mean)."""
    return {key[len("param."):]: value for key, value in form.items()
            if key.startswith("param.") and value.strip() != ""}
