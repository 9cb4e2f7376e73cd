"""Helpers for the validation tests: write a procedure, validate it as a user would."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.cli import main

_SCRIPT = Path(sys.executable).parent / "runproc"
# The real console script next to the interpreter (the pyenv shim on PATH adds ~200 ms a
# call); ``python -m engine.cli`` is the same entry point when the script is not there.
RUNPROC = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "engine.cli"]


@dataclass
class Outcome:
    rc: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        """stderr lines: one problem each."""
        return self.err.splitlines()


def write(folder: Path, text: str, name: str = "procedures/x.yml") -> str:
    """Write a dedented procedure under ``folder``; return its path relative to it."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return name


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Outcome:
    """``runproc ARGV`` in this process (fast), with what it printed."""
    capsys.readouterr()
    rc = main(list(argv))
    captured = capsys.readouterr()
    return Outcome(rc, captured.out, captured.err)


def run(*argv: str, cwd: Path, timeout: float = 60, env: dict[str, str] | None = None) -> Outcome:
    """``runproc ARGV`` in a child process, exactly as typed in a shell."""
    done = subprocess.run([*RUNPROC, *argv], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    return Outcome(done.returncode, done.stdout, done.stderr)
