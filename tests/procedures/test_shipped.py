"""Every procedure the project ships validates: procedures/ and examples/ (any depth)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import ProcedureError, load
from engine.format.yamlsrc import read_file

ROOT = Path(__file__).resolve().parents[2]


def _is_procedure(path: Path) -> bool:
    """A YAML file under examples/ may be a params file or an inventory; a procedure has
    `procedure:` or `steps:`. A file that does not even parse is kept, so it fails loudly."""
    if path.is_relative_to(ROOT / "procedures"):
        return True
    try:
        data = read_file(path).data
    except ProcedureError:
        return True
    return isinstance(data, dict) and ("procedure" in data or "steps" in data)


SHIPPED = sorted(p for p in [*ROOT.glob("procedures/*.yml"), *ROOT.glob("procedures/*.yaml"),
                             *ROOT.glob("examples/**/*.yml"), *ROOT.glob("examples/**/*.yaml")]
                 if _is_procedure(p))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_procedure_validates(path: Path) -> None:
    proc = load(path)
    assert proc.procedure
    assert proc.steps
