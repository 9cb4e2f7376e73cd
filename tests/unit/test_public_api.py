"""The public API is exactly ``engine.__all__``: every name imports, and docs/api.md documents
those names and no others."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import engine

ROOT = Path(__file__).resolve().parents[2]


def test_every_public_name_imports() -> None:
    for name in engine.__all__:
        assert getattr(engine, name) is not None, name
    assert sorted(dir(engine)) == sorted(engine.__all__)


def test_docs_api_lists_exactly_the_public_names() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    table = text.split("\n\n## ", 1)[0]
    documented = set()
    for cell in re.findall(r"^\| ([^|]+) \|", table, re.M):
        documented.update(re.findall(r"`([A-Za-z_]+)", cell))
    documented.discard("name")
    assert documented == set(engine.__all__)


def test_importing_engine_imports_nothing_heavy() -> None:
    code = "import sys, engine; print(','.join(sorted(m for m in sys.modules if m.startswith(('engine', 'pydantic', 'jinja2', 'yaml')))))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "engine,engine.version"
