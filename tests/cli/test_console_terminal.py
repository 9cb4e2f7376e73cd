"""The live view on a terminal, read back as a person sees it.

runproc runs on a pseudo-terminal; what it writes is replayed on a small screen emulator
(cursor moves, line erases: the few sequences rich's live display uses), so a test can say
"the table is still on the screen above the question" rather than grep escape codes.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers.cli import state_args, write
from tests.helpers.terminal import Terminal

_CSI = re.compile(r"\x1b\[([0-9;?]*)([@-~])")
_OSC = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


def _index(lines: list[str], pattern: str) -> int:
    found = [i for i, line in enumerate(lines) if re.search(pattern, line)]
    assert len(found) == 1, f"{pattern!r} on {len(found)} lines:\n" + "\n".join(lines)
    return found[0]


def test_confirm_keeps_the_table_above_the_question(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: switch-traffic
        steps:
          - id: health
            shell: echo healthy
          - id: smoke
            shell: echo smoke passed
          - id: approve
            confirm: "Switch traffic to green?"
          - id: switch
            shell: "true"
    """)
    term = Terminal(tmp_path, [str(path), *state_args(tmp_path)])
    term.read_until(lambda: term.shows(r"\[y/N\]"))
    asking = term.screen.text()
    # the operator answers looking at the checks: their rows are on the screen, above the question
    prompt = _index(asking, r"Switch traffic to green\? \[y/N\]")
    assert _index(asking, r"health\s+ok") < prompt and _index(asking, r"smoke\s+ok") < prompt
    term.type("y\n")
    final = term.wait()
    assert term.code == 0, "\n".join(final)
    # nothing above was redrawn over: title, rows, the question and its answer, then the rest
    order = [_index(final, r"switch-traffic\s+run "), _index(final, r"health\s+ok"), _index(final, r"smoke\s+ok"),
             _index(final, r"Switch traffic to green\? \[y/N\] y"), _index(final, r"approve\s+ok"),
             _index(final, r"switch\s+ok"), _index(final, r"ok \(exit 0\)")]
    assert order == sorted(order), "\n".join(final)


def test_a_running_step_shows_its_time_and_last_output_line(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: slow
        steps:
          - id: build
            shell: echo compiling module one; sleep 4
    """)
    term = Terminal(tmp_path, [str(path), *state_args(tmp_path)])
    # the row is redrawn as time passes, not only when an event comes (there is none here)
    term.read_until(lambda: term.shows(r"build\s+running\s+[1-3]\.\ds"), timeout=15)
    assert term.shows(r"build\s+running\s+[1-3]\.\ds\s+compiling module one"), "\n".join(term.screen.text())
    final = term.wait()
    assert term.code == 0 and term.shows(r"build\s+ok\s+4\.\ds"), "\n".join(final)


NARROW = """
    procedure: narrow
    steps:
      - id: prepare
        shell: echo prepared
      - id: flaky
        shell: |
          n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count
          [ $n -ge 3 ] || { echo "not yet $n" >&2; exit 1; }
        retry: {attempts: 3, delay: 0.1s}
        rollback:
          shell: echo undo
      - id: broken
        shell: echo "injected failure" >&2; exit 1
"""


def test_narrow_terminal_table_after_a_retry_and_a_rollback(tmp_path: Path) -> None:
    path = write(tmp_path, NARROW)
    term = Terminal(tmp_path, [str(path), *state_args(tmp_path)], cols=80)
    final = term.wait()
    assert term.code == 1, "\n".join(final)
    header = _index(final, r"^\s+step\s+status\s+time")
    # no hosts column (no step fans out); tries, since one step retried
    assert "hosts" not in final[header] and "tries" in final[header]
    flaky = final[_index(final, r"flaky\s+rolled_back")]
    assert re.search(r"rolled_back\s+\S+\s+3\b", flaky) and "retrying" not in flaky  # the note went with the run
    # the row gives the error's summary; the output is in the panel, under its own heading
    broken = final[_index(final, r"broken\s+failed")]
    assert "command exited with 1" in broken and "injected" not in broken
    panel = final[_index(final, "root cause"):]
    error = _index(panel, r"error: command exited with 1\s*│")
    assert re.search(r"last output \(stderr\):", panel[error + 1]) and "injected failure" in panel[error + 2]
    # a kept change is said once, in the summary, not in the detail cell
    assert not any("no rollback defined" in line for line in final)
    assert final[-1].startswith("kept (no rollback ran): prepare")
    # the rollback shows in its row, not as lines above the table
    assert not any("rolling back" in line for line in final[:header])


def test_rollback_of_a_printed_row_comes_after_it(tmp_path: Path) -> None:
    # a notice (here a warning) prints the finished rows for good; the undo of one of them
    # is then told below them, in order, not above the table
    path = write(tmp_path, """
        procedure: ordered
        steps:
          - id: create
            shell: "true"
            rollback:
              shell: "true"
          - id: fail
            shell: echo failing soon; sleep 0.5; exit 3
    """)
    term = Terminal(tmp_path, [str(path), *state_args(tmp_path), "-v"])
    final = term.wait()
    assert term.code == 1, "\n".join(final)
    assert _index(final, r"create\s+ok") < _index(final, r"rolling back create") < _index(final, "root cause")


def test_child_procedure_steps_are_rows_under_their_parent(tmp_path: Path) -> None:
    write(tmp_path, """
        procedure: db-migrate
        steps:
          - id: backup
            shell: echo backup
          - id: apply
            shell: echo apply
    """, "child.yml")
    path = write(tmp_path, """
        procedure: release
        steps:
          - id: migrate
            procedure: child.yml
          - id: deploy
            shell: "true"
    """)
    term = Terminal(tmp_path, [str(path), *state_args(tmp_path), "--dry-run"])
    final = term.wait()
    assert term.code == 0, "\n".join(final)
    # a plan has no timings: the detail follows the status
    rows = [_index(final, r"○\s+migrate\s+planned"), _index(final, r"○\s+└ backup\s+planned\s+echo backup"),
            _index(final, r"○\s+└ apply\s+planned\s+echo apply"), _index(final, r"○\s+deploy\s+planned")]
    assert rows == list(range(rows[0], rows[0] + 4)), "\n".join(final)


def test_list_on_a_terminal_has_a_file_column(tmp_path: Path) -> None:
    (tmp_path / "procs").mkdir()
    write(tmp_path, "procedure: local-blue-green\nsteps:\n  - id: a\n    shell: 'true'\n", "procs/blue-green.yml")
    term = Terminal(tmp_path, ["list", "procs"], cols=120)
    final = term.wait()
    assert term.code == 0
    assert _index(final, r"┃ file\s+┃ procedure\s+┃ description")
    assert _index(final, r"│ procs/blue-green\.yml\s+│ local-blue-green\s+│")
