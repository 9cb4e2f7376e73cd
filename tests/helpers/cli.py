"""Helpers for the CLI-level runner tests: write a procedure, run ``runproc`` as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCRIPT = Path(sys.executable).parent / "runproc"
# The real console script next to the interpreter (a pyenv shim on PATH costs ~200 ms a call);
# ``python -m engine.cli`` is the same entry point when the script is not there.
RUNPROC = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "engine.cli"]


@dataclass
class Done:
    rc: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.stdout)

    def step(self, step_id: str) -> dict[str, Any]:
        for s in self.json["steps"]:
            if s["id"] == step_id:
                return s
        raise KeyError(step_id)

    def statuses(self) -> dict[str, str]:
        return {s["id"]: s["status"] for s in self.json["steps"]}


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "RUNPROC_STATE", "FORCE_COLOR")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # let the child cache bytecode: each call is faster
    env.update(extra or {})
    return env


def write(tmp: Path, text: str, name: str = "proc.yml") -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def state_args(tmp: Path) -> list[str]:
    return ["--state", f"sqlite:///{tmp}/state.db"]


def runproc(tmp: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60,
            state: bool = True, stdin: str | None = None) -> Done:
    """Run ``runproc ARGS`` in ``tmp`` with the run state kept in ``tmp``."""
    argv = [*RUNPROC, *args]
    if state and args and args[0] not in ("runs", "show", "validate", "graph", "list", "schema"):
        argv += state_args(tmp)
    proc = subprocess.run(argv, cwd=tmp, env=child_env(env), capture_output=True, text=True,
                          timeout=timeout, input=stdin if stdin is not None else "",
                          errors="replace")
    return Done(proc.returncode, proc.stdout, proc.stderr)


def run_json(tmp: Path, text: str, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Done:
    path = write(tmp, text)
    done = runproc(tmp, str(path), "--output", "json", *args, env=env, timeout=timeout)
    assert done.stdout.strip(), f"no JSON on stdout; stderr:\n{done.stderr}"
    return done


def popen(tmp: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([*RUNPROC, *args, *state_args(tmp)], cwd=tmp, env=child_env(env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, errors="replace")


def wait_until(predicate: Callable[[], object], timeout: float = 20.0) -> None:
    """Poll ``predicate`` every 50 ms until it is true; an AssertionError after ``timeout`` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")
