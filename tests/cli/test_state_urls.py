"""A state URL that cannot be used is invalid input for every command: one line, exit 2, nothing run.
And the last resort: an unexpected exception is one line, a crash file and exit 70."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cli import RUNPROC, child_env, write

PROC = """
    procedure: touches
    steps:
      - id: touch
        shell: touch touched
"""

BAD_URLS = {
    "postgres-unsupported": "postgresql://nobody@127.0.0.1:1/x",
    "unknown-scheme": "bogus://x",
    "two-slashes": "sqlite://relative.db",
    "corrupt-file": "sqlite:///{tmp}/corrupt.db",
    "a-directory": "sqlite:///{tmp}/adir",
    "under-a-file": "sqlite:///{tmp}/afile/state.db",
}

COMMANDS = {
    "run": ["proc.yml"],
    "runs": ["runs"],
    "show": ["show", "0123456789ab"],
    "resume": ["resume", "0123456789ab"],
    "rollback": ["rollback", "0123456789ab"],
    "apply": ["apply", "plan.json"],
}


def _setup(tmp: Path) -> None:
    write(tmp, PROC)
    (tmp / "corrupt.db").write_bytes(b"this is not a database, " * 100)
    (tmp / "adir").mkdir()
    (tmp / "afile").write_text("a file, not a folder")
    # a plan saved against a good state: apply must then refuse the bad one
    saved = subprocess.run([*RUNPROC, "proc.yml", "--dry-run", "--save-plan", "plan.json",
                            "--state", f"sqlite:///{tmp}/good.db"], cwd=tmp, env=child_env(),
                           capture_output=True, text=True, timeout=60)
    assert saved.returncode == 0, saved.stderr


# apply takes the state its plan names, or --state: RUNPROC_STATE is the others' default
CASES = [(c, u, how) for c in COMMANDS for u in BAD_URLS for how in ("flag", "env")
         if not (how == "env" and c == "apply")]


@pytest.mark.parametrize(("command", "url_name", "how"), CASES)
def test_a_bad_state_is_one_line_and_exit_2(tmp_path: Path, command: str, url_name: str, how: str) -> None:
    _setup(tmp_path)
    url = BAD_URLS[url_name].format(tmp=tmp_path)
    argv = [*RUNPROC, *COMMANDS[command]]
    env = child_env()
    if how == "flag":
        argv += ["--state", url]
    else:
        env["RUNPROC_STATE"] = url
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("--state: state "), output
    assert not (tmp_path / "touched").exists()  # nothing ran


def test_an_internal_error_is_one_line_a_crash_file_and_exit_70(tmp_path: Path) -> None:
    write(tmp_path, PROC)
    # a bug stands in for the run path: the console script's last resort must catch it
    code = ("import sys, engine.cli.app as app\n"
            "def broken(ns):\n    raise RuntimeError('a bug in runproc')\n"
             "app._run = broken\nsys.argv = ['runproc', 'proc.yml']\napp.main_entry()\n")
    env = child_env({"XDG_STATE_HOME": str(tmp_path / "xdg")})
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 70
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("runproc: internal error: RuntimeError: a bug in runproc")
    crashes = list((tmp_path / "xdg" / "runproc" / "crashes").glob("runproc-crash-*.txt"))
    assert len(crashes) == 1 and str(crashes[0]) in lines[0]
    text = crashes[0].read_text()
    assert "Traceback" in text and "RuntimeError: a bug in runproc" in text
    assert os.access(crashes[0], os.R_OK)


def test_a_dry_run_plans_with_a_state_it_cannot_open(tmp_path: Path) -> None:
    """A plan may be made where the state cannot be opened (a corrupt file, a read-only home):
    its steps still spool their output, and their hosts ask for the log folder at once."""
    (tmp_path / "corrupt.db").write_bytes(b"this is not a database, " * 100)
    (tmp_path / "inv.ini").write_text("[web]\nweb-1\nweb-2\nweb-3\n\n[all:vars]\nansible_connection=local\n")
    write(tmp_path, """
        procedure: look
        inventory: inv.ini
        steps:
          - id: probe
            on: web
            shell: echo looking
            readonly: true
    """)
    done = subprocess.run([*RUNPROC, "proc.yml", "--dry-run", "--output", "json", "--state",
                           f"sqlite:///{tmp_path}/corrupt.db"], cwd=tmp_path, env=child_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"status": "planned"' in done.stdout
