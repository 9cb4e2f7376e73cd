"""Import, validate, and plan offline (in-process: the API, not subprocesses)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import engine
from engine.format.loader import from_source
from engine.format.yamlsrc import parse_text
from engine.importers import Imported, import_playbook, import_script

INVENTORY = """\
all:
  children:
    webservers:
      hosts:
        web1: {ansible_connection: local}
        web2: {ansible_connection: local}
"""


def imported(kind: str, text: str, name: str = "source") -> tuple[Imported, Any]:
    """The import of ``text`` and the procedure it validates into (the loader raises otherwise)."""
    run = import_playbook if kind == "ansible" else import_script
    result = run(textwrap.dedent(text), f"{name}.{'yml' if kind == 'ansible' else 'sh'}")
    assert result.problems == []
    proc = from_source(parse_text(result.text, "imported.yml"))
    return result, proc


def planned(result: Imported, tmp_path: Path, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """``runproc FILE --dry-run --offline`` through the API: {step id: its result as JSON}."""
    path = tmp_path / "imported.yml"
    path.write_text(result.text)
    (tmp_path / "inventory.yml").write_text(INVENTORY)
    run = engine.plan(str(path), params or {}, offline=True, inventory=str(tmp_path / "inventory.yml"),
                      state=f"sqlite:///{tmp_path}/state.db")
    return {s["id"]: s for s in run.to_json()["steps"]}
