"""temporalio is an optional extra: imported only when used, and named when it is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers.cli import runproc, write


def _without_temporalio(tmp: Path) -> dict[str, str]:
    """An environment where ``import temporalio`` fails, as on a machine without the extra."""
    fake = tmp / "fake-site" / "temporalio"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named temporalio')\n")
    return {"PYTHONPATH": str(fake.parent)}


def test_a_missing_extra_is_one_line_naming_it(tmp_path: Path) -> None:
    env = _without_temporalio(tmp_path)
    path = write(tmp_path, """
        procedure: tiny
        steps:
          - id: a
            shell: "true"
    """)
    for args in ([str(path), "--engine", "temporal://127.0.0.1:7233"],
                 ["worker", "--temporal", "127.0.0.1:7233", "--queue", "q"],
                 ["runs", "--engine", "temporal://127.0.0.1:7233"]):
        done = runproc(tmp_path, *args, env=env, state=False)
        assert done.rc == 2, (args, done.stderr)
        assert "pip install 'runproc[temporal]'" in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "effects").exists()


def test_a_local_run_never_imports_temporalio(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: tiny
        steps:
          - id: a
            shell: "true"
    """)
    code = ("import sys; from engine.cli import main; "
            f"rc = main([{str(path)!r}, '--state', 'sqlite:///{tmp_path}/s.db']); "
            "print(rc, 'temporalio' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.stdout.split()[-2:] == ["0", "False"], out.stderr
