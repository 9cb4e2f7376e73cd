"""Helpers for the tests that run the library's procedures for real (tests/procedures/test_real_*.py).

A procedure runs as a user runs it: ``python -m engine.cli FILE -p ... --output json`` in a
temporary folder with a state of its own, and the test reads what a user can see: the exit
code, the JSON report's steps, and the systems the procedure acted on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROCEDURES = ROOT / "procedures"


def runproc(file: str, *args: str, env: dict[str, str] | None = None, tmp: Path,
            timeout: float = 180) -> tuple[int, dict[str, Any], str]:
    """Run procedures/FILE through the CLI; (exit code, the JSON report, stderr)."""
    full_env = {**os.environ, "RUNPROC_STATE": f"sqlite:///{tmp}/runproc-state.db", **(env or {})}
    out = subprocess.run([sys.executable, "-m", "engine.cli", str(PROCEDURES / file), *args, "--output", "json"],
                         capture_output=True, text=True, env=full_env, timeout=timeout, cwd=tmp,
                         stdin=subprocess.DEVNULL)
    try:
        doc = json.loads(out.stdout) if out.stdout.strip() else {}
    except json.JSONDecodeError:
        pytest.fail(f"not JSON (exit {out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out.returncode, doc, out.stderr


def steps(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in doc.get("steps", [])}


def statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {s["id"]: s["status"] for s in doc.get("steps", [])}


def params(**values: Any) -> list[str]:
    """``-p name=value`` for each; booleans as true/false, lists as JSON."""
    out: list[str] = []
    for k, v in values.items():
        if isinstance(v, bool):
            v = str(v).lower()
        elif isinstance(v, list | dict):
            v = json.dumps(v)
        out += ["-p", f"{k}={v}"]
    return out

