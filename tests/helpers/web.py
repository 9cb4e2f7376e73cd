"""For runproc serve's tests (tests/web): a state made by real ``runproc`` runs, a catalogue
folder, and Starlette's test client against the app."""

from __future__ import annotations

import sqlite3
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers.cli import runproc, write

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
