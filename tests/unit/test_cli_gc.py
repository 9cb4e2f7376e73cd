"""The command's process freezes what it loaded out of the garbage collector's passes before
a run (issue 14: a long run's full collections walked the loaded procedure every time); an
embedding process calling main() is left as it was."""

from __future__ import annotations

import gc
import io
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from engine.cli import app


@pytest.fixture
def procedure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("RUNPROC_STATE", f"sqlite:///{tmp_path}/state.db")
    monkeypatch.setattr(app, "_ENDS_WITH_COMMAND", False)  # restored after: other tests embed main()
    path = tmp_path / "p.yml"
    path.write_text("procedure: p\nsteps:\n  - id: a\n    shell: 'true'\n")
    gc.unfreeze()
    try:
        yield path
    finally:
        gc.unfreeze()


def test_the_command_freezes_what_it_loaded_before_the_run(procedure: Path) -> None:
    with redirect_stdout(io.StringIO()):
        assert app.run_command([str(procedure)]) == 0
    assert gc.get_freeze_count() > 0


def test_main_embedded_in_another_process_freezes_nothing(procedure: Path) -> None:
    with redirect_stdout(io.StringIO()):
        assert app.main([str(procedure)]) == 0
    assert gc.get_freeze_count() == 0
