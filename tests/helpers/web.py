"""For runproc serve's tests (tests/web): a state made by real ``runproc`` runs, a catalogue
folder, and Starlette's test client against the app."""

from __future__ import annotations

import json
import queue
import re
import signal
import sqlite3
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers.cli import RUNPROC, child_env, runproc, write

# Starlette 1.x warns, once at import, that its test client prefers httpx2 to httpx: imported
# quietly here, first, so the warning does not land in whichever test imports it next
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from engine.web.app import Settings, create_app  # noqa: E402 - after the quiet import above

# a secret's value, given by env and as a secret param: no page, no API answer may hold it
CANARY = "cAnArY-7f3e9d21-sekrit"
CANARY_PARAM = "pArAm-cAnArY-5b8c04"
LOOPBACK = "http://127.0.0.1"

DEMO = """
procedure: demo
description: A demo with a graph, a rollback, an approval and a failure
owner: platform
params:
  version: {type: str, default: "1.4.2", help: the version to deploy}
lock: demo
steps:
  - id: prepare
    name: Prepare the release
    shell: echo preparing {{ params.version }}
    rollback: {shell: echo undoing prepare}
  - id: migrate
    needs: [prepare]
    shell: echo migrating
  - id: check
    needs: [prepare]
    readonly: true
    shell: echo healthy
  - id: approve
    needs: [migrate, check]
    confirm: Switch traffic?
  # after the approval, always: the run fails the same way every time
  - id: rollout
    needs: [approve]
    shell: echo 'image pull failed' >&2; exit 3
"""

ALPHA = """
procedure: alpha
description: Always fine
steps:
  - id: only
    shell: echo fine
"""

# escaping: a description and an output that look like markup
MARKUP = """
procedure: markup
description: "<b>bold</b> & <i>friends</i>"
steps:
  - id: shout
    shell: "echo '<script>alert(1)</script>'"
"""

SECRETS = f"""
procedure: canary
description: Uses secrets in every way a page could show them
params:
  token: {{type: str, secret: true, default: "{CANARY_PARAM}"}}
  region: {{type: str, default: eu-west-1}}
secrets:
  t: {{env: CANARY}}
steps:
  - id: show
    shell: "echo {{{{ secrets.t }}}} {{{{ params.token }}}} {{{{ secrets.t | upper }}}}"
    rollback: {{shell: "echo undo {{{{ secrets.t }}}}"}}
  - id: fail
    needs: [show]
    shell: "echo {{{{ secrets.t }}}} >&2; exit 3"
"""

# a step fanned out over two hosts of an inventory (both this machine: ansible_connection local)
FANOUT = """
procedure: fanout
inventory: ../hosts.yml
steps:
  - id: each
    on: web
    shell: echo on {{ host.name }}
"""

HOSTS = """
all:
  vars:
    ansible_connection: local
  children:
    web:
      hosts:
        web-1: {}
        web-2: {}
"""

BROKEN = """
procedure: broken
steps:
  - id: a
    shell: true
    needs: [nowhere]
"""


@dataclass
class History:
    """A state with real runs in it, and the catalogue folder they came from."""

    root: Path
    procedures: Path
    ids: dict[str, list[str]] = field(default_factory=dict)

    def every(self) -> list[str]:
        """Every run id, whatever its kind."""
        return [i for ids in self.ids.values() for i in ids]

    @property
    def state(self) -> str:
        return f"sqlite:///{self.root}/state.db"

    def sql(self, statement: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        db = sqlite3.connect(self.root / "state.db")
        try:
            with db:
                return db.execute(statement, params).fetchall()
        finally:
            db.close()


def _run(history: History, name: str, *args: str, env: dict[str, str] | None = None, rc: int = 0,
         key: str | None = None) -> str:
    done = runproc(history.root, str(history.procedures / f"{name}.yml"), "--output", "json", *args, env=env)
    assert done.rc == rc, (name, done.rc, done.stderr)
    run_id = str(done.json["run_id"])
    history.ids.setdefault(key or name, []).append(run_id)
    return run_id


def make_history(root: Path) -> History:
    """Eight real runs: alpha ok x3 (one by alice, one in 2021), demo failed and rolled back
    with an approval, markup, canary (secrets; failed), fanout (two hosts) and an alpha dry run
    (``planned``)."""
    procedures = root / "procedures"
    procedures.mkdir()
    for name, text in (("demo", DEMO), ("alpha", ALPHA), ("markup", MARKUP), ("canary", SECRETS),
                       ("broken", BROKEN), ("fanout", FANOUT)):
        write(procedures, text, f"{name}.yml")
    write(root, HOSTS, "hosts.yml")
    h = History(root, procedures)
    _run(h, "alpha")
    _run(h, "demo", "--yes", rc=1)
    _run(h, "alpha")
    _run(h, "markup")
    _run(h, "canary", "-p", f"token={CANARY_PARAM}", env={"CANARY": CANARY}, rc=1)
    _run(h, "fanout")
    _run(h, "alpha", "--dry-run", key="planned")
    _run(h, "alpha")
    # a teammate's run, as a shared state holds them, and an old one
    h.sql('UPDATE runs SET "user" = ? WHERE id = ?', ("alice", h.ids["alpha"][1]))
    h.sql("UPDATE runs SET started_at = ? WHERE id = ?", ("2021-06-01T00:00:00.000Z", h.ids["alpha"][0]))
    return h


def app_client(settings: Settings, base_url: str = LOOPBACK) -> TestClient:
    """A test client of an app made with ``settings`` (use it in a with block)."""
    return TestClient(create_app(settings), base_url=base_url)


# ---------------------------------------------------------------- server-sent events


@dataclass
class Event:
    """One server-sent event: its name, id (a journal entry's seq) and JSON data."""

    name: str
    id: str | None
    data: dict[str, object]


def parse_events(lines: Iterator[str]) -> Iterator[Event]:
    """The events of a text/event-stream, line by line (comments, a ping, skipped)."""
    name, ident, data = "message", None, []
    for line in lines:
        if line == "":
            if data:
                yield Event(name, ident, json.loads("\n".join(data)))
            name, ident, data = "message", None, []
        elif line.startswith(":"):
            continue
        else:
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "event":
                name = value
            elif key == "id":
                ident = value
            elif key == "data":
                data.append(value)


class EventReader:
    """A stream's events read on a thread of their own, so that a test waits for an event with
    a bound on a hang (a server that sends nothing never blocks the test for good)."""

    BOUND = 60.0  # a bound on a hang, never a measure of speed

    def __init__(self, lines: Iterator[str]) -> None:
        self.seen: list[Event] = []
        self._queue: queue.Queue[Event | None] = queue.Queue()
        self._ended = False

        def pump() -> None:
            try:
                for event in parse_events(lines):
                    self._queue.put(event)
            except Exception:  # noqa: BLE001 - the stream was closed under the reader: it ended
                pass
            self._queue.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def until(self, wanted: Callable[[Event], bool], what: str) -> Event:
        """The first event from now on for which ``wanted`` holds; AssertionError when the
        stream ends (or says nothing for BOUND seconds) before it."""
        deadline = time.monotonic() + self.BOUND
        while not self._ended:
            try:
                event = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if event is None:
                self._ended = True
                break
            self.seen.append(event)
            if wanted(event):
                return event
        raise AssertionError(f"no {what} in the stream; it said: {[(e.name, e.data) for e in self.seen][-8:]}")

    def rest(self) -> list[Event]:
        """Every event until the stream ends (it must: a finished run's stream closes)."""
        start = len(self.seen)
        deadline = time.monotonic() + self.BOUND
        while not self._ended:
            try:
                event = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"the stream did not end; it said: {self.seen[start:][-8:]}") from None
            if event is None:
                self._ended = True
            else:
                self.seen.append(event)
        return self.seen[start:]


def journal_event(kind: str, step: str) -> Callable[[Event], bool]:
    return lambda e: e.name == "journal" and e.data.get("event") == kind and e.data.get("step") == step


# a run that waits, at its second step, for the test to let it go (its {go} file): every
# transition observable, from the live tests and from the browser's
GATED = """
procedure: gated
steps:
  - id: first
    shell: echo first
  - id: hold
    needs: [first]
    shell: "while [ ! -e '{go}' ]; do sleep 0.05; done; echo released"
  - id: last
    needs: [hold]
    shell: echo last words
"""

@contextmanager
def serving(history: History, *args: str) -> Iterator[str]:
    """``runproc serve`` on a loopback port it picks (port 0: no other test's server can take the
    port between a probe and the bind); its base URL once it says where it listens."""
    proc = subprocess.Popen([*RUNPROC, "serve", "--bind", "127.0.0.1:0", "--state", history.state,
                             "--procedures", str(history.procedures), *args],
                            cwd=history.root, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(target=lambda: lines.put(proc.stdout.readline() if proc.stdout else ""), daemon=True).start()
    try:
        try:
            first = lines.get(timeout=60)  # a bound on a hung start, not a measure of speed
        except queue.Empty:
            raise AssertionError("runproc serve said nothing in 60 s") from None
        if not first:  # it ended before saying where it listens: its stderr says why
            proc.wait(timeout=30)
            raise AssertionError(f"runproc serve ended (exit {proc.returncode}): {proc.stderr.read() if proc.stderr else ''}")
        match = re.match(r"runproc serve: (http://127\.0\.0\.1:\d+)/ ", first)
        assert match, first
        yield match.group(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
