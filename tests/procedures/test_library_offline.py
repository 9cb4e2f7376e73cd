"""Every procedure of the library and every example validates, and plans offline as checked in.

The plan of each file (``runproc FILE --dry-run --offline --output json``, reduced to each
step's id, status, action, notes, the rollback that stands ready, and a child procedure's own
steps) is compared with ``golden/<procedure>.json``, so a change to what a procedure would do
shows up as a diff in review. The checkout's path reads ``<repo>`` (plans of the examples show
absolute paths made with ``run.dir``). Regenerate after an intended change:

    UPDATE_GOLDEN=1 python3 -m pytest tests/procedures/test_library_offline.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden"
# every procedure shipped: examples/ also holds other YAML (an inventory, Alertmanager's config,
# serve's triggers), told apart by the procedure: key a procedure starts with
FILES = sorted(f for f in [*ROOT.glob("procedures/*.yml"), *ROOT.glob("examples/**/*.yml")]
               if any(line.startswith("procedure:") for line in f.read_text().splitlines()))
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

# values for the params a file requires (the plan is made with them)
REQUIRED = {
    "procedures/backup-verification.yml": {"backup_file": "/backups/latest.sql.gz"},
    "procedures/blue-green-deploy.yml": {"version": "2.4.0"},
    "procedures/db-migration.yml": {"migration_version": "20240320120000"},
    "procedures/mitigate-restart.yml": {"platform": "kubernetes"},
    "procedures/mitigate-rollback.yml": {"platform": "kubernetes"},
    "procedures/point-in-time-recovery.yml": {"recovery_time": "2024-03-20 14:30:00"},
    "procedures/scale-up.yml": {"platform": "kubernetes"},
    "examples/local/blue-green.yml": {"version": "1.1.0"},
    "examples/local/release.yml": {"version": "1.1.0"},
}

# values that change from run to run or machine to machine
_VOLATILE = [
    (re.compile(r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?Z?)?"), "<date>"),
    (re.compile(r"\b\d{2}:\d{2} UTC\b"), "<time> UTC"),
]
# a child procedure's run id (in a path it renders: app-<id>.db); the JSON does not give it
_CHILD_RUN_ID = re.compile(r"(?<=-)[0-9a-f]{12}\b")


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TMPDIR", "KUBECONFIG")}
    env["NO_COLOR"] = "1"
    return env


def _normalise(text: str, run_id: str) -> str:
    text = text.replace(str(ROOT), "<repo>").replace(run_id, "<run_id>")
    text = _CHILD_RUN_ID.sub("<child_run_id>", text)
    for pattern, replacement in _VOLATILE:
        text = pattern.sub(replacement, text)
    return text


def reduce_plan(doc: dict[str, Any]) -> dict[str, Any]:
    """The plan as a reviewer reads it: no run id, times, durations or attempts."""
    run_id = doc["run_id"]
    steps = []
    for step in doc["steps"]:
        item: dict[str, Any] = {"id": step["id"], "status": step["status"]}
        if step.get("action") is not None:
            item["action"] = _normalise(step["action"], run_id)
        if step.get("notes"):
            item["notes"] = [_normalise(n, run_id) for n in step["notes"]]
        if step.get("rollback_action") is not None:
            item["rollback"] = _normalise(step["rollback_action"], run_id)
        if isinstance(step.get("steps"), dict):  # a child procedure's own plan
            item["steps"] = {cid: {k: _normalise(v, run_id) if isinstance(v, str) else v
                                   for k, v in child.items() if k in ("status", "action") and v is not None}
                             for cid, child in step["steps"].items()}
        steps.append(item)
    return {"procedure": doc["procedure"], "status": doc["status"], "steps": steps}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                          env=_env(), cwd=ROOT, timeout=120)


def test_there_is_something_to_check():
    names = {_rel(f) for f in FILES}
    assert {"procedures/maintenance.yml", "examples/quickstart.yml", "examples/local/blue-green.yml"} <= names
    assert len([n for n in names if n.startswith("procedures/")]) >= 15


def test_every_file_validates():
    out = _cli("validate", "--output", "json", *[_rel(f) for f in FILES])
    assert out.returncode == 0, out.stdout + out.stderr
    assert all(item["ok"] for item in json.loads(out.stdout)["files"])


@pytest.mark.parametrize("path", FILES, ids=_rel)
def test_offline_plan_matches_golden(path: Path):
    args = [_rel(path), "--dry-run", "--offline", "--output", "json"]
    if _rel(path).startswith("procedures/"):
        # the plan a reviewer cares about is production's, chosen explicitly (the defaults are local)
        args += ["-i", "inventory/production.yml"]
        production = ROOT / "procedures" / "params" / "production" / path.name
        if production.exists():
            args += ["--params-file", _rel(production)]
    for name, value in REQUIRED.get(_rel(path), {}).items():
        args += ["-p", f"{name}={value}"]
    out = _cli(*args)
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stderr}\n{out.stdout[-2000:]}"
    doc = json.loads(out.stdout)
    assert doc["status"] == "planned" and doc["dry_run"] is True
    plan = reduce_plan(doc)
    golden = GOLDEN / f"{doc['procedure']}.json"
    text = json.dumps(plan, indent=2, ensure_ascii=False) + "\n"
    if UPDATE or not golden.exists():
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(text)
        if not UPDATE:
            pytest.fail(f"{golden.name} did not exist and was written: review and commit it")
    assert json.loads(golden.read_text()) == plan, (
        f"the offline plan of {_rel(path)} changed; if intended: UPDATE_GOLDEN=1 python3 -m pytest {__file__}")


def test_required_params_are_supplied_here():
    """A new procedure with a required param needs a value in REQUIRED to be planned."""
    import engine

    for path in FILES:
        proc = engine.load(path)
        required = {n for n, p in proc.params.items() if p.required}
        assert required <= set(REQUIRED.get(_rel(path), {})), f"{_rel(path)}: add {required} to REQUIRED"


@pytest.mark.parametrize("path", sorted(ROOT.glob("procedures/*.yml")), ids=_rel)
def test_library_conventions(path: Path):
    """Readable and safe: described, owned, typed params with help, no credentials in the file."""
    import engine

    proc = engine.load(path)
    assert proc.procedure == path.stem
    assert proc.description and proc.owner
    for name, spec in proc.params.items():
        assert spec.help, f"param {name} has no help"
    text = path.read_text()
    assert text.startswith("# Runbook: "), "name the section of the runbook this procedure implements"
    header = text.split("\nprocedure:", 1)[0]
    assert "\n# Needs: " in header, "say in the header what it needs (inventory groups, connections, secrets)"
    assert not re.search(r"(?i)\bseed\b", text), "say 'the runbook' (or name its section), not 'the seed'"
    assert not re.search(r"://[^/\s:@]+:[^/\s@{]+@", text), "a password in a URL"
    without_secrets = re.sub(r"\{\{\s*secrets\.\w+\s*\}\}", "", text)
    assert not re.search(r"(?i)password\s*[:=]\s*['\"]?[A-Za-z0-9]", without_secrets), "a literal password"


def test_the_docs_cover_every_procedure_and_param():
    import engine

    reference = (ROOT / "docs" / "procedures.md").read_text()
    cookbook = (ROOT / "docs" / "cookbook.md").read_text()
    for path in sorted(ROOT.glob("procedures/*.yml")):
        proc = engine.load(path)
        assert f"## `{proc.procedure}`" in reference, f"docs/procedures.md: no section for {proc.procedure}"
        section = reference.split(f"## `{proc.procedure}`", 1)[1].split("\n## ", 1)[0]
        for name in proc.params:
            assert f"| `{name}` |" in section, f"docs/procedures.md: {proc.procedure} lacks param {name}"
        assert f"{path.name}" in cookbook, f"docs/cookbook.md does not mention {path.name}"
