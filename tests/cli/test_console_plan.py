"""What the README promises, the console shows: a plan names the undo that stands ready for each
planned step, a planned fan-out step reads "N hosts planned", and a plan prints no timings."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers.cli import runproc, state_args, write
from tests.helpers.terminal import Terminal

PROC = """
    procedure: deploy
    inventory: inv.ini
    steps:
      - id: backup
        shell: echo backup
        rollback: {shell: echo restore the backup}
      - id: restart
        on: web
        shell: echo restart
        rollback: {shell: echo start the old release}
      - id: probe
        shell: echo probing
        readonly: true
"""


def _setup(tmp: Path) -> Path:
    # hosts that are this machine (no SSH): a planned write on them is reachable by definition
    (tmp / "inv.ini").write_text("[web]\nweb-1\nweb-2\nweb-3\n\n[all:vars]\nansible_connection=local\n")
    return write(tmp, PROC)


def test_a_plain_plan_shows_undo_hosts_planned_and_no_timings(tmp_path: Path) -> None:
    _setup(tmp_path)
    done = runproc(tmp_path, "proc.yml", "--dry-run")
    assert done.rc == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    backup = next(i for i, ln in enumerate(lines) if "backup would run" in ln)
    assert lines[backup] == "  ○ planned         backup would run: echo backup"
    assert lines[backup + 1] == "      undo ready: echo restore the backup"
    restart = next(ln for ln in lines if " restart " in ln)
    assert restart == "  ○ planned         restart 3 hosts planned would run: echo restart"
    assert lines[lines.index(restart) + 1] == "      undo ready: echo start the old release"
    assert not any(re.search(r"\(\d+(\.\d+)?m?s\)", ln) for ln in lines[1:-1])  # no per-step timings


def test_a_terminal_plan_shows_undo_hosts_planned_and_no_timings(tmp_path: Path) -> None:
    path = _setup(tmp_path)
    term = Terminal(tmp_path, [str(path), "--dry-run", *state_args(tmp_path)])
    screen = term.wait()
    assert term.code == 0, "\n".join(screen)
    restart = next(ln for ln in screen if re.search(r"restart\s+planned", ln))
    assert "3 planned" in restart
    assert not re.search(r"\d+ms", restart)
    assert any(ln.strip() == "undo ready: echo restore the backup" for ln in screen)
    assert any(ln.strip() == "undo ready: echo start the old release" for ln in screen)
