"""runproc import shell: the seed's own scripts, each imported into a procedure that validates,
and the rules (headers, set -e, params through env) on small scripts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import engine
from engine.errors import ProcedureError
from engine.importers import import_script

from .helpers import imported, planned

# a copy of the seed (/work/shared/seed/operational-runbooks.md), so the suite runs anywhere
SEED = Path(__file__).parent / "data" / "operational-runbooks.md"
_SCRIPTS = {"blue-green": "Blue-Green deployment script", "migration": "Database migration procedure",
            "backup-verification": "Backup verification script", "pitr": "Point-in-time recovery procedure",
            "security-updates": "Security update procedure"}


def _seed_scripts() -> dict[str, str]:
    """The seed's bash scripts, by the comment on their second line."""
    text = SEED.read_text()
    found = re.findall(r"```bash\n(#!/bin/bash\n.*?)```", text, re.S)
    by_title = {s.splitlines()[1].lstrip("# ").strip(): s for s in found}
    return {name: by_title[title] for name, title in _SCRIPTS.items()}


@pytest.mark.parametrize("name", sorted(_SCRIPTS))
def test_each_seed_script_imports_into_a_valid_procedure(name: str, tmp_path: Path) -> None:
    result, proc = imported("shell", _seed_scripts()[name], name)
    assert len(proc.steps) >= 2
    for step in proc.steps:
        assert step.action.options.cmd.startswith("set -e\n")
        assert step.action.options.shell == "/bin/bash"  # the scripts are bash's ({1..30})
    params = {n: p.model_dump(exclude_none=True) for n, p in proc.params.items()}
    steps = planned(result, tmp_path, {n: "v" for n, p in params.items() if p.get("required")})
    assert all(s["status"] == "planned" for s in steps.values())


def test_blue_green_steps_params_and_env() -> None:
    result, proc = imported("shell", _seed_scripts()["blue-green"], "blue-green")
    assert [s.id for s in proc.steps] == ["deploy_to_green_environment", "health_check_new_environment",
                                          "run_smoke_tests", "switch_traffic", "verify_traffic_switch"]
    assert proc.params["new_version"].required is True  # the usage guard said so
    assert proc.params["current_env"].default == "blue"
    switch = next(s for s in proc.steps if s.id == "switch_traffic")
    # the value reaches the script as an environment variable, never as script text
    assert switch.env == {"NEW_ENV": "{{ params.new_env }}"}
    assert "$NEW_ENV" in switch.action.options.cmd and "{{" not in switch.action.options.cmd
    health = next(s for s in proc.steps if s.id == "health_check_new_environment")
    assert "for i in {1..30}; do" in health.action.options.cmd and health.action.options.cmd.endswith("done")
    assert result.todos == []


def test_migration_defaults_from_positional_arguments() -> None:
    result, proc = imported("shell", _seed_scripts()["migration"], "migration")
    assert proc.params["migration_version"].required is True
    assert proc.params["dry_run"].default == "false"
    run_step = next(s for s in proc.steps if s.id == "run_migration")
    assert "\nfi\n" in run_step.action.options.cmd  # the if/else stays whole, in one step
    # what the script took from its environment is said at the top (the steps read it the same way)
    assert "# Read from the environment, as the script did: DB_HOST, DB_NAME, DB_USER\n" in result.text


def test_a_variable_set_by_one_step_and_read_by_another_is_a_todo(tmp_path: Path) -> None:
    result, proc = imported("shell", _seed_scripts()["backup-verification"], "backup")
    assert len(result.todos) == 1 and "$ROW_COUNT" in result.todos[0]
    later = next(s for s in proc.steps if "ROW_COUNT:?" in s.action.options.cmd)
    assert "# TODO(import): $ROW_COUNT is set by step 'verify_data_integrity'" in result.text
    assert later.id == "cleanup_test_database"


def test_values_never_become_code_and_set_e_stops_a_step(tmp_path: Path) -> None:
    canary = tmp_path / "CANARY"
    result, proc = imported("shell", f"""\
        #!/bin/sh
        # Greets, then fails
        NAME="${{NAME:-world}}"
        OUT={tmp_path}/out

        # Step 1: greet
        echo "hello $NAME" > "$OUT"

        # Step 2: fail early
        false
        echo "not reached" >> "$OUT"
    """, "greet")
    assert any("does not `set -e`" in n for n in result.notes)  # the change is said
    path = tmp_path / "greet.yml"
    path.write_text(result.text)
    evil = f"x; touch {canary} $(touch {canary})"
    run = engine.run(str(path), {"name": evil}, state=f"sqlite:///{tmp_path}/state.db")
    steps = {s["id"]: s for s in run.to_json()["steps"]}
    assert steps["greet"]["status"] == "ok"
    assert (tmp_path / "out").read_text() == f"hello {evil}\n"
    assert not canary.exists()
    assert steps["fail_early"]["status"] == "failed"  # set -e: `false` ends the step


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "made"
    result, _ = imported("shell", f"#!/bin/sh\n# Step 1: make\ntouch {marker}\n", "make")
    path = tmp_path / "make.yml"
    path.write_text(result.text)
    run = engine.plan(str(path), state=f"sqlite:///{tmp_path}/state.db")
    assert run.to_json()["steps"][0]["status"] == "planned"
    assert not marker.exists()


@pytest.mark.parametrize(("text", "message"), [
    ("#!/usr/bin/env python3\nprint(1)\n", "not a shell script: its interpreter"),
    ("# only a comment\n", "not a shell script: it has no command"),
])
def test_not_a_script_is_located(text: str, message: str) -> None:
    with pytest.raises(ProcedureError) as err:
        import_script(text, "x.sh")
    assert str(err.value.problems[0]).startswith("x.sh:1:1: " + message)


def test_blocks_never_end_inside_a_compound_command_or_here_document() -> None:
    result, proc = imported("shell", """\
        #!/bin/bash
        MODE=${MODE:-fast}

        # Pick
        case "$MODE" in
          fast) echo f ;;

          # not a header: inside the case
          slow) echo s ;;
        esac

        # Write
        cat <<-EOF > /tmp/x
        \t# not a header: inside the here-document

        \tEOF

        # Helper
        greet() {
          echo "hi $1"
        }
        greet x
    """, "compound")
    assert [s.id for s in proc.steps] == ["pick", "write", "helper"]
    assert _cmd(proc, "pick").rstrip().endswith("esac")
    assert "# not a header: inside the here-document" in _cmd(proc, "write")
    assert 'echo "hi $1"' in _cmd(proc, "helper")  # a function's own $1 is left alone
    assert result.todos == []


def _cmd(proc, sid: str) -> str:
    return next(s for s in proc.steps if s.id == sid).action.options.cmd


@pytest.mark.parametrize(("text", "where"), [
    ('#!/bin/sh\n# A\necho a\n\n# B\necho "oops\n', "x.sh:6:1: unterminated quote"),
    ("# A\ncat <<EOF\nx\n", "x.sh:2:1: unterminated here-document"),
])
def test_a_script_that_cannot_run_is_located(text: str, where: str) -> None:
    with pytest.raises(ProcedureError) as err:
        import_script(text, "x.sh")
    assert str(err.value.problems[0]).startswith(where)


@pytest.mark.parametrize(("opener", "prefix"), [
    ("set -euo pipefail", "set -eu -o pipefail"),  # the commonest opener: its flags bundled with -o
    ("set -e -o pipefail", "set -e -o pipefail"),
    ("set -o errexit -o nounset", "set -eu"),      # the long names
])
def test_the_usual_set_openers_are_read_as_flags_not_a_step(opener: str, prefix: str) -> None:
    script = f"#!/bin/bash\n{opener}\nVERSION=${{VERSION:-1.0.0}}\n\n# Step 1: build\necho building \"$VERSION\"\n"
    result, proc = imported("shell", script, "opener")
    assert [s.id for s in proc.steps] == ["build"]
    assert proc.params["version"].default == "1.0.0"
    assert proc.steps[0].action.options.cmd.startswith(prefix + "\n")
    assert "does not `set -e`" not in "\n".join(result.notes)


def test_a_cd_that_the_next_step_relied_on_is_a_todo_to_review() -> None:
    script = "#!/bin/sh\nset -e\n\n# Step 1: go there\ncd /srv/app\n\n# Step 2: build\nmake\n"
    result, proc = imported("shell", script, "cd")
    assert result.todos == ["cd.sh:4: step 'go_there': review: cd: the next step starts in the procedure's "
                            "folder again, not here"]
