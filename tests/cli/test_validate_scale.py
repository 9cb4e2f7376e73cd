"""Hostile and huge inputs: alias bombs, 10,000-step chains, long cycles. Refused or accepted fast."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.validate import cli, run

BOMB = """\
procedure: bomb
vars:
  a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
  d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
  e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
  f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
  g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
  h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
  i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
steps:
  - id: a
    shell: echo {{ vars.i }}
"""


def chain(n: int, *, reference_first: bool = False, close_cycle: bool = False) -> str:
    """``n`` steps, each needing the one before it (the default), optionally all reading s0."""
    lines = ["procedure: chain", "params:", "  env: {type: str, default: prod}", "steps:"]
    for i in range(n):
        lines.append(f"  - id: s{i}")
        if i == 0 and close_cycle:
            lines.append(f"    needs: [s{n - 1}]")
        if reference_first and i:
            lines.append(f"    shell: echo {i} {{{{ params.env }}}} {{{{ steps.s0.rc }}}}")
        else:
            lines.append(f"    shell: echo {i} {{{{ params.env }}}}")
        lines.append("    timeout: 5m")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    (tmp_path / "bomb.yml").write_text(BOMB)
    done = run("validate", "bomb.yml", cwd=tmp_path)
    assert done.rc == 2
    assert done.lines == ["bomb.yml:8:38: YAML expands to more than 500,000 nodes (hint: too many aliases "
                          "(an 'alias bomb'?); write the values out or use fewer anchors)"]


def test_aliases_within_bounds_are_fine(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    small = BOMB.split("  e: &e")[0] + "steps:\n  - id: a\n    shell: echo {{ vars.d }}\n"
    (tmp_path / "ok.yml").write_text(small)
    assert cli(capsys, "validate", "ok.yml").rc == 0


def test_recursive_alias_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.yml").write_text("procedure: r\nvars:\n  a: &a [1, *a]\nsteps: [{id: a, shell: echo}]\n")
    done = cli(capsys, "validate", "r.yml")
    assert (done.rc, done.lines) == (2, ["r.yml:3:13: recursive YAML alias *a"])


def test_ten_thousand_step_chain_validates(tmp_path: Path) -> None:
    (tmp_path / "chain.yml").write_text(chain(10_000))
    done = run("validate", "chain.yml", cwd=tmp_path, timeout=120)  # the time: bench/startup.py
    assert (done.rc, done.err) == (0, "")
    assert done.out == "chain.yml: ok (chain)\n"


def test_ten_thousand_steps_reading_the_first_one(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # every step checks that s0 is upstream: linear, not one walk down the chain per step
    monkeypatch.chdir(tmp_path)
    (tmp_path / "far.yml").write_text(chain(10_000, reference_first=True))
    done = cli(capsys, "validate", "far.yml")
    assert (done.rc, done.err) == (0, "")


def test_ten_thousand_step_cycle_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cycle.yml").write_text(chain(10_000, close_cycle=True))
    done = cli(capsys, "validate", "cycle.yml")
    assert done.rc == 2
    assert len(done.lines) == 1, done.lines  # (what else was printed, if a flake recurs)
    line = done.lines[0]
    assert line.startswith("cycle.yml:6:12: steps: dependency cycle: s0 -> s9999 -> s9998 -> s9997 -> s9996 -> "
                           "... (9,991 more) -> s4 -> s3 -> s2 -> s1 -> s0")
