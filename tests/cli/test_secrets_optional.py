"""Optional secrets and the hint for a comma in an unquoted flow mapping."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from engine.cli import main


def test_optional_secret_may_be_unset(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("RUNPROC_TEST_PGPASS", raising=False)
    path = tmp_path / "p.yml"
    path.write_text(textwrap.dedent("""\
        procedure: opt
        secrets:
          pw: {env: RUNPROC_TEST_PGPASS, optional: true}
          required_pw: {env: RUNPROC_TEST_REQUIRED}
        steps:
          - id: show
            shell: echo "[{{ secrets.pw }}]"
        """))
    monkeypatch.setenv("RUNPROC_TEST_REQUIRED", "present-value")
    code = main([str(path), "--output", "json", "--state", f"sqlite:///{tmp_path}/s.db"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert doc["steps"][0]["stdout"] == "[]\n"
    monkeypatch.delenv("RUNPROC_TEST_REQUIRED")
    assert main([str(path), "--state", f"sqlite:///{tmp_path}/s.db"]) == 2
    assert "secret 'required_pw': environment variable RUNPROC_TEST_REQUIRED is not set" in capsys.readouterr().err


def test_comma_in_flow_mapping_gets_a_hint(tmp_path: Path, capsys) -> None:
    path = tmp_path / "p.yml"
    path.write_text("procedure: hint\nparams:\n  n: {type: int, help: how many, at most 5}\nsteps:\n  - id: a\n    shell: 'true'\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'at most 5'" in err and "a comma inside {...} starts a new key" in err
