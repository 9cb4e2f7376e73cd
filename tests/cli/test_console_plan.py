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


def test_a_child_procedure_appears_once_in_a_plan(tmp_path: Path) -> None:
    write(tmp_path, """
        procedure: child
        steps:
          - id: inner_write
            shell: echo inner
            rollback: {shell: echo undo inner}
    """, "child.yml")
    write(tmp_path, """
        procedure: parent
        steps:
          - id: sub
            procedure: child.yml
    """)
    done = runproc(tmp_path, "proc.yml", "--dry-run")
    assert done.rc == 0, done.stdout + done.stderr
    assert [ln for ln in done.stdout.splitlines() if "inner_write" in ln] == [
        "    └ ○ planned         child/inner_write would run: echo inner"]
    assert done.stdout.count("undo ready: echo undo inner") == 1


def test_a_recorded_plan_reads_as_the_plan_did(tmp_path: Path) -> None:
    write(tmp_path, """
        procedure: recorded
        steps:
          - id: write
            shell: echo w > w
            rollback: {shell: rm w}
          - id: probe
            readonly: true
            shell: test -f w
    """)
    plan = runproc(tmp_path, "proc.yml", "--dry-run", "--output", "json")
    assert plan.rc == 0, plan.stderr
    shown = runproc(tmp_path, "show", plan.json["run_id"], "--output", "text", *state_args(tmp_path))
    assert shown.rc == 0, shown.stderr
    lines = shown.stdout.splitlines()
    write_row = lines.index("  ○ planned         write would run: echo w > w")
    assert lines[write_row + 1] == "      undo ready: rm w"
    steps = lines[lines.index("steps:") + 1:-1]
    assert not any(re.search(r"\(\d+(\.\d+)?m?s\)", ln) for ln in steps)  # no per-step timings
    assert lines[-1].endswith(": 2 planned, 1 check could not be judged against today's state")
