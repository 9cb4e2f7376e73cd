"""runproc init, the pre-commit hook and runproc schema --install vscode (issue 18, must-have 3).

The commands run in-process (main() in tmp_path as the working folder); the starter is then
validated, planned offline and run for real, as a user would right after init.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

from engine.cli import main
from engine.format.schema import json_schema
from engine.format.yamlsrc import read_file

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNPROC_STATE", f"sqlite:///{tmp_path}/state.db")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the starter's scratch folders
    return tmp_path


def test_the_starter_validates_plans_offline_and_runs(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["wrote procedure.yml", "wrote inventory.yml"]
    assert "runproc validate procedure.yml" in err and "runproc-validate" in err
    text = (here / "procedure.yml").read_text()
    assert "procedure: procedure " in text and text.count("#") > 20  # annotated

    assert main(["validate", "procedure.yml"]) == 0
    assert capsys.readouterr().out == "procedure.yml: ok (procedure)\n"
    assert main(["procedure.yml", "--dry-run", "--offline", "--output", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    status = {s["id"]: s["status"] for s in plan["steps"]}
    assert status == {"prepare": "planned", "hosts_up": "planned", "release": "planned", "go_ahead": "planned",
                      "smoke_test": "planned", "injected_failure": "skipped", "cleanup": "planned"}
    hosts_up = next(s for s in plan["steps"] if s["id"] == "hosts_up")
    assert sorted(hosts_up["hosts"]) == ["app-1", "app-2"]
    assert not list(here.glob("runproc-procedure-*"))  # the plan made no folder

    assert main(["procedure.yml", "--yes", "-p", "version=2.0.0", "--output", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "ok"
    assert main(["procedure.yml", "--yes", "-p", "fail=true", "--output", "json"]) == 1
    failed = json.loads(capsys.readouterr().out)
    assert {s["id"]: s["status"] for s in failed["steps"]}["release"] == "rolled_back"


def test_a_name_or_a_path(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (here / "ops").mkdir()
    assert main(["init", "deploy-api"]) == 0
    assert main(["init", "ops/restart.procedure.yml"]) == 0
    assert re.search(r"^procedure: deploy-api ", (here / "deploy-api.yml").read_text(), re.MULTILINE)
    assert re.search(r"^procedure: restart ", (here / "ops" / "restart.procedure.yml").read_text(), re.MULTILINE)
    assert (here / "ops" / "inventory.yml").is_file()
    assert main(["validate", "deploy-api.yml", "ops/restart.procedure.yml"]) == 0


def test_init_never_overwrites(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (here / "procedure.yml").write_text("mine\n")
    (here / "inventory.yml").write_text("all: {hosts: {web-1: {}}}\n")
    assert main(["init"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["runproc init: procedure.yml already exists; not overwritten (give another name: runproc init NAME)"]
    assert (here / "procedure.yml").read_text() == "mine\n"

    assert main(["init", "other"]) == 0  # a new procedure beside a kept inventory
    out, err = capsys.readouterr()
    assert out.splitlines() == ["wrote other.yml"]
    assert "kept inventory.yml" in err
    assert (here / "inventory.yml").read_text() == "all: {hosts: {web-1: {}}}\n"


@pytest.mark.parametrize("name", ["Deploy", "my_proc", "x.y.yml", "a b"])
def test_a_name_that_is_not_one(here: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", name]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lowercase letters, digits and dashes" in err[0]
    assert list(here.iterdir()) == []


def test_init_dry_run_writes_nothing(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines() == ["would write procedure.yml", "would write inventory.yml"]
    assert list(here.iterdir()) == []


def test_the_pre_commit_hook_validates_procedure_files(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    (hook,) = hooks
    assert {k: hook[k] for k in ("id", "entry", "language")} == {"id": "runproc-validate",
                                                                 "entry": "runproc validate",
                                                                 "language": "python"}
    files, exclude = re.compile(hook["files"]), re.compile(hook["exclude"])

    def selected(path: str) -> bool:
        return bool(files.search(path)) and not exclude.search(path)

    assert all(selected(p) for p in ("procedures/deploy.yml", "ops/procedures/db/migrate.yaml",
                                     "procedure.yml", "restart.procedure.yml"))
    assert not any(selected(p) for p in (".github/workflows/ci.yml", "inventory.yml", "docker-compose.yaml",
                                         "procedures/params/production/deploy.yml"))
    # as pre-commit runs it: the entry, then the staged files it selected
    assert main(["init"]) == 0
    (here / "broken.procedure.yml").write_text("procedure: broken\nsteps:\n  - id: a\n    shel: echo\n")
    entry = shlex.split(hook["entry"])
    assert entry[0] == "runproc"
    capsys.readouterr()
    assert main([*entry[1:], "procedure.yml"]) == 0
    assert main([*entry[1:], "procedure.yml", "broken.procedure.yml"]) == 2
    assert re.search(r"^broken\.procedure\.yml:4:5: ", capsys.readouterr().err, re.MULTILINE)


# ---------------------------------------------------------------- schema --install vscode


def test_install_vscode_writes_the_schema_and_maps_procedures(here: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init"]) == 0
    assert main(["schema", "--install", "vscode"]) == 0
    schema = json.loads((here / ".vscode" / "runproc.schema.json").read_text())
    assert schema == json_schema()
    settings = json.loads((here / ".vscode" / "settings.json").read_text())
    globs = settings["yaml.schemas"]["./.vscode/runproc.schema.json"]
    assert "procedure.yml" in globs and "procedures/**/*.yml" in globs
    # what the editor then checks the starter against: it fits
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(read_file(here / "procedure.yml").data))
    assert not errors, [e.message for e in errors]


def test_install_vscode_merges_existing_settings(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vscode = here / ".vscode"
    vscode.mkdir()
    before = {"editor.tabSize": 2, "yaml.schemas": {"./k8s.json": ["k8s/*.yml"],
                                                    "./.vscode/runproc.schema.json": "ops/*.yml"}}
    (vscode / "settings.json").write_text(json.dumps(before, indent=2) + "\n")
    assert main(["schema", "--install", "vscode", "--glob", "runbooks/*.yml"]) == 0
    text = (vscode / "settings.json").read_text()
    after = json.loads(text)
    assert after["editor.tabSize"] == 2
    assert after["yaml.schemas"] == {"./k8s.json": ["k8s/*.yml"],
                                     "./.vscode/runproc.schema.json": ["ops/*.yml", "runbooks/*.yml"]}
    assert text.startswith('{\n  "editor.tabSize"')  # the file's own indentation kept
    assert main(["schema", "--install", "vscode", "--glob", "runbooks/*.yml"]) == 0  # again: no change
    assert (vscode / "settings.json").read_text() == text
    assert "already maps" in capsys.readouterr().out


def test_install_vscode_refuses_settings_with_comments(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vscode = here / ".vscode"
    vscode.mkdir()
    jsonc = '{\n    // my font\n    "editor.fontSize": 14, "url": "http://x//y",\n}\n'
    (vscode / "settings.json").write_text(jsonc)
    assert main(["schema", "--install", "vscode"]) == 3
    err = capsys.readouterr().err
    assert "has comments or trailing commas" in err and '"./.vscode/runproc.schema.json"' in err
    assert (vscode / "settings.json").read_text() == jsonc
    assert sorted(p.name for p in vscode.iterdir()) == ["settings.json"]  # nothing written


def test_install_vscode_reports_settings_that_are_not_json(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vscode = here / ".vscode"
    vscode.mkdir()
    (vscode / "settings.json").write_text('{\n  "a": [1,\n}\n')
    assert main(["schema", "--install", "vscode"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(".vscode/settings.json:3:1: not JSON")


def test_install_vscode_dry_run_writes_nothing(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--install", "vscode", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would write .vscode/runproc.schema.json" in out and "would write .vscode/settings.json" in out
    assert list(here.iterdir()) == []
    assert main(["schema", "--dry-run"]) == 2  # only with --install
