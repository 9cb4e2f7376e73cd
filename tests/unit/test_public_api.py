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


def test_a_bad_option_is_refused_before_anything_runs(tmp_path: Path) -> None:
    import pytest

    path = tmp_path / "p.yml"
    path.write_text("procedure: p\nsteps:\n  - id: a\n    shell: touch ran\n")
    proc = engine.load(path)
    with pytest.raises(engine.ProcedureError) as refused:
        engine.run(proc, forks=0, limit="[[", state=f"sqlite:///{tmp_path}/s.db")
    assert [str(p) for p in refused.value.problems][0] == "--forks: must be at least 1, got 0"
    assert len(refused.value.problems) == 2  # the --limit pattern too, in the same error
    assert not (tmp_path / "ran").exists()
    with pytest.raises(TypeError, match="unknown run option"):
        engine.run(proc, dryrun=True)
    options = engine.RunOptions(dry_run=True, state=f"sqlite:///{tmp_path}/s.db")
    assert engine.run(proc, options=options).status == "planned" and not (tmp_path / "ran").exists()
