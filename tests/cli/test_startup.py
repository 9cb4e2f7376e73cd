"""Startup stays light: `--version` and `validate` never import the heavy client libraries.

Each check runs in a fresh interpreter (this test process has imported everything already)
and reads ``sys.modules`` after ``engine.cli.main`` returns.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HEAVY = ("boto3", "botocore", "paramiko", "psycopg", "httpx")

PROBE = """
import json, sys
from engine.cli import main
rc = main({argv!r})
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
print(json.dumps({{"rc": rc, "heavy": heavy, "networkx": "networkx" in sys.modules}}), file=sys.stderr)
"""


def probe(argv: list[str], cwd: Path) -> dict[str, object]:
    code = PROBE.format(argv=argv, heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60)
    return json.loads(done.stderr.strip().splitlines()[-1])


def ten_steps(tmp_path: Path) -> str:
    lines = ["procedure: ten", "params:", "  v: {type: str, default: '1'}", "steps:"]
    for i in range(10):
        lines += [f"  - id: s{i}", f"    shell: echo {{{{ params.v }}}} {i}", "    timeout: 1m"]
    (tmp_path / "ten.yml").write_text("\n".join(lines) + "\n")
    return "ten.yml"


def test_version_imports_nothing_heavy(tmp_path: Path) -> None:
    assert probe(["--version"], tmp_path) == {"rc": 0, "heavy": [], "networkx": False}


def test_validate_imports_nothing_heavy(tmp_path: Path) -> None:
    assert probe(["validate", ten_steps(tmp_path)], tmp_path) == {"rc": 0, "heavy": [], "networkx": False}


def test_mermaid_graph_does_not_import_networkx(tmp_path: Path) -> None:
    assert probe(["graph", ten_steps(tmp_path)], tmp_path) == {"rc": 0, "heavy": [], "networkx": False}


def test_validate_of_every_executor_imports_nothing_heavy(tmp_path: Path) -> None:
    # Validating a step loads its executor's options model, so an executor module must
    # import its client library (psycopg, httpx, boto3, ...) only when it executes.
    steps = {
        "shell": "shell: echo",
        "assert": "assert: 'true'",
        "confirm": "confirm: sure?",
        "wait": "wait: 1s",
        "procedure": "procedure: other.yml",
        "sql": "sql: SELECT 1\n    connection: db",
        "http": "http: https://example.com",
        "kubectl": "kubectl: get pods\n    connection: k8s",
        "s3": "s3: {op: list, bucket: b}",
    }
    present = {k: v for k, v in steps.items() if importlib.util.find_spec(f"engine.executors.{_module(k)}")}
    body = "".join(f"  - id: {k}\n    needs: []\n    {v}\n" for k, v in present.items())
    text = textwrap.dedent("""\
        procedure: all
        connections:
          db: {sqlite: ./x.db}
          k8s: {kubernetes: {context: c}}
        steps:
        """) + body
    (tmp_path / "all.yml").write_text(text)
    result = probe(["validate", "all.yml"], tmp_path)
    assert result["heavy"] == [], f"validating {sorted(present)} imported {result['heavy']}"
    if result["rc"] != 0:
        pytest.fail(subprocess.run([sys.executable, "-m", "engine.cli", "validate", "all.yml"], cwd=tmp_path,
                                   capture_output=True, text=True).stderr)


def _module(executor: str) -> str:
    return {"assert": "assertion"}.get(executor, executor)
