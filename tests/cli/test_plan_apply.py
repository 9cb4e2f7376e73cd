"""``runproc FILE --dry-run --save-plan PLAN`` and ``runproc apply PLAN``, as an operator uses them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.helpers.cli import Done, runproc, write

PROC = """
procedure: deploy
params:
  version: {type: str, default: "1.0"}
inventory: inv.yml
steps:
  - id: prepare
    shell: echo prepare {{ params.version }} >> log
    rollback: {shell: echo undo-prepare >> log}
  - id: child
    procedure: child.yml
    params: {n: 3}
  - id: fan
    on: all
    shell: echo {{ host.name }} {{ host.vars.role }} >> log
  - id: later
    when: params.version == "9.9"
    shell: echo later >> log
"""

CHILD = """
procedure: child
params:
  n: {type: int, default: 1}
steps:
  - id: inner
    shell: echo child {{ params.n }} >> log
"""

INVENTORY = """
all:
  hosts:
    web1: {ansible_connection: local}
    web2: {ansible_connection: local}
"""


def setup(tmp: Path, proc: str = PROC) -> Path:
    write(tmp, CHILD, "child.yml")
    write(tmp, INVENTORY, "inv.yml")
    (tmp / "group_vars").mkdir()
    (tmp / "group_vars" / "all.yml").write_text("role: web\n")
    return write(tmp, proc)


def save(tmp: Path, *args: str, env: dict[str, str] | None = None, plan: str = "plan.json") -> Done:
    return runproc(tmp, "proc.yml", "--dry-run", "--save-plan", plan, *args, env=env)


def apply(tmp: Path, *args: str, env: dict[str, str] | None = None, plan: str = "plan.json") -> Done:
    return runproc(tmp, "apply", plan, "--output", "json", *args, env=env)


def log(tmp: Path) -> list[str]:
    path = tmp / "log"
    return path.read_text().splitlines() if path.exists() else []


def read_plan(tmp: Path, name: str = "plan.json") -> dict[str, Any]:
    return json.loads((tmp / name).read_text())


# ---------------------------------------------------------------- save, then apply


def test_save_then_apply_runs_the_planned_steps(tmp_path: Path) -> None:
    setup(tmp_path)
    saved = save(tmp_path)
    assert saved.rc == 0, saved.stderr
    assert "plan saved to plan.json" in saved.stderr and "runproc apply plan.json" in saved.stderr
    assert log(tmp_path) == []  # a dry run changed nothing
    plan = read_plan(tmp_path)
    assert plan["format"] == "runproc-plan" and plan["version"] == 1
    assert plan["procedure"]["path"] == str((tmp_path / "proc.yml").resolve())
    assert plan["params"] == {"version": "1.0"}
    whats = {Path(p).name: e["what"] for p, e in plan["files"].items()}
    assert whats == {"proc.yml": "procedure", "child.yml": "child procedure", "inv.yml": "inventory",
                     "all.yml": "inventory"}
    steps = {s["id"]: s for s in plan["steps"]}
    assert steps["prepare"]["action"] == "echo prepare 1.0 >> log"
    assert steps["prepare"]["rollback_action"] == "echo undo-prepare >> log"
    assert steps["child"]["steps"][0] == {"id": "inner", "status": "planned",
                                          "action": "echo child 3 >> log", "fixed": True}
    assert steps["fan"]["hosts"]["web2"]["action"] == "echo web2 web >> log"
    assert steps["later"]["status"] == "skipped" and steps["later"]["fixed"] is True

    done = apply(tmp_path)
    assert done.rc == 0, done.stderr
    assert done.json["status"] == "ok" and done.json["dry_run"] is False
    assert [s["id"] for s in done.json["steps"]] == [s["id"] for s in plan["steps"]]
    assert done.statuses() == {"prepare": "ok", "child": "ok", "fan": "ok", "later": "skipped"}
    assert sorted(log(tmp_path)) == ["child 3", "prepare 1.0", "web1 web", "web2 web"]


def test_apply_keeps_the_plans_params_and_options(tmp_path: Path) -> None:
    setup(tmp_path)
    assert save(tmp_path, "-p", "version=2.5", "--only", "prepare").rc == 0
    plan = read_plan(tmp_path)
    assert plan["params"] == {"version": "2.5"} and plan["options"]["only"] == ["prepare"]
    done = apply(tmp_path)
    assert done.rc == 0, done.stderr
    assert done.statuses()["child"] == "skipped"
    assert log(tmp_path) == ["prepare 2.5"]
    # params are the plan's: changing one means planning again
    other = runproc(tmp_path, "apply", "plan.json", "-p", "version=3.0")
    assert other.rc == 2 and "fixed by the plan" in other.stderr


def test_an_offline_plan_can_be_applied_from_another_directory(tmp_path: Path) -> None:
    setup(tmp_path)
    assert save(tmp_path, "--offline").rc == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # the child procedure's action is shown relative to where the plan was made: apply runs there
    done = runproc(elsewhere, "apply", str(tmp_path / "plan.json"), "--output", "json")
    assert done.rc == 0, done.stderr
    assert "child 3" in log(tmp_path)


def test_a_plan_is_not_saved_from_a_failing_dry_run(tmp_path: Path) -> None:
    write(tmp_path, """
        procedure: broken
        steps:
          - id: probe
            readonly: true
            shell: exit 3
        """)
    done = save(tmp_path)
    assert done.rc == 1
    assert "plan not saved to plan.json: the dry run ended failed (exit 1)" in done.stderr
    assert not (tmp_path / "plan.json").exists()


# ---------------------------------------------------------------- refusals: exit 3, nothing run


def assert_refused(done: Done, *fragments: str) -> None:
    assert done.rc == 3, done.stderr
    assert done.json["status"] == "refused" and done.json["exit_code"] == 3
    assert done.json["steps"] == []  # refused before the first step: nothing was run
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr


def test_apply_refuses_after_the_procedure_changed(tmp_path: Path) -> None:
    path = setup(tmp_path)
    assert save(tmp_path).rc == 0
    old = read_plan(tmp_path)["files"][str(path.resolve())]["sha256"]
    path.write_text(path.read_text().replace("echo prepare", "echo PREPARE"))
    done = apply(tmp_path)
    assert_refused(done, f"procedure {path.resolve()}: changed (sha256 {old[:12]}")
    change = done.json["changes"][0]
    assert change["what"] == "procedure" and change["old_sha256"] == old and change["new_sha256"] != old
    assert log(tmp_path) == []


def test_apply_refuses_after_a_child_procedure_changed(tmp_path: Path) -> None:
    setup(tmp_path)
    assert save(tmp_path).rc == 0
    write(tmp_path, CHILD.replace("child {{", "CHILD {{"), "child.yml")
    assert_refused(apply(tmp_path), f"child procedure {(tmp_path / 'child.yml').resolve()}: changed")
    assert log(tmp_path) == []


def test_apply_refuses_after_the_inventory_changed(tmp_path: Path) -> None:
    setup(tmp_path)
    assert save(tmp_path).rc == 0
    inv = tmp_path / "inv.yml"
    original = inv.read_text()
    inv.write_text(original + "    web3: {ansible_connection: local}\n")
    assert_refused(apply(tmp_path), f"inventory {inv.resolve()}: changed")
    inv.write_text(original)
    (tmp_path / "group_vars" / "all.yml").write_text("role: db\n")
    assert_refused(apply(tmp_path), "group_vars/all.yml: changed")
    (tmp_path / "group_vars" / "all.yml").write_text("role: web\n")
    # a host_vars file the loader would now read counts as a change too
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "web1.yml").write_text("role: db\n")
    assert_refused(apply(tmp_path), "host_vars/web1.yml: read now, not when the plan was saved")
    (tmp_path / "host_vars" / "web1.yml").unlink()
    assert apply(tmp_path).rc == 0
    assert log(tmp_path)


def test_apply_refuses_an_inventory_given_with_i_that_changed(tmp_path: Path) -> None:
    setup(tmp_path, PROC.replace("inventory: inv.yml\n", ""))
    (tmp_path / "inventories").mkdir()
    write(tmp_path / "inventories", INVENTORY, "prod.yml")
    assert save(tmp_path, "-i", "inventories/prod.yml").rc == 0
    assert read_plan(tmp_path)["options"]["inventory"] == str((tmp_path / "inventories/prod.yml").resolve())
    write(tmp_path / "inventories", INVENTORY.replace("web2", "web9"), "prod.yml")
    assert_refused(apply(tmp_path), "inventories/prod.yml: changed")


# ---------------------------------------------------------------- the actions are the plan's


def test_an_action_that_renders_differently_fails_and_rolls_back(tmp_path: Path) -> None:
    write(tmp_path, """
        procedure: envy
        steps:
          - id: first
            shell: echo first >> log
            rollback: {shell: echo undo-first >> log}
          - id: target
            shell: echo deploy to {{ env.TARGET }} >> log
            rollback: {shell: echo undo-target >> log}
          - id: after
            shell: echo after >> log
        """)
    assert save(tmp_path, env={"TARGET": "blue"}).rc == 0
    done = apply(tmp_path, env={"TARGET": "green"})
    assert done.rc == 1, done.stderr
    target = done.step("target")
    assert target["status"] == "failed"
    assert target["error"] == ("differs from the saved plan: planned 'echo deploy to blue >> log' "
                               "now 'echo deploy to green >> log'")
    assert target["action"] == "echo deploy to green >> log"
    assert done.statuses() == {"first": "rolled_back", "target": "failed", "after": "cancelled"}
    assert done.json["rolled_back"] == ["first"]
    assert log(tmp_path) == ["first", "undo-first"]  # the differing action never ran
    # the same environment as the plan's: it runs
    (tmp_path / "log").unlink()
    again = apply(tmp_path, env={"TARGET": "blue"})
    assert again.rc == 0, again.stderr
    assert log(tmp_path) == ["first", "deploy to blue", "after"]


def test_a_step_the_plan_skipped_must_not_run(tmp_path: Path) -> None:
    write(tmp_path, """
        procedure: gated
        steps:
          - id: first
            shell: echo first >> log
            rollback: {shell: echo undo-first >> log}
          - id: gated
            when: env.GO == "yes"
            shell: echo gated >> log
        """)
    assert save(tmp_path, env={"GO": "no"}).rc == 0
    done = apply(tmp_path, env={"GO": "yes"})
    assert done.rc == 1
    assert done.step("gated")["error"].startswith("not in the saved plan: the plan skipped it (when false)")
    assert log(tmp_path) == ["first", "undo-first"]


def test_a_child_procedures_actions_are_held_to_the_plan(tmp_path: Path) -> None:
    write(tmp_path, """
        procedure: kid
        steps:
          - id: inner
            shell: echo inner {{ env.KID }} >> log
        """, "child.yml")
    write(tmp_path, """
        procedure: parent
        steps:
          - id: child
            procedure: child.yml
        """)
    assert save(tmp_path, env={"KID": "a"}).rc == 0
    done = apply(tmp_path, env={"KID": "b"})
    assert done.rc == 1
    inner = done.step("child")["steps"]["inner"]
    assert inner["status"] == "failed" and "differs from the saved plan" in inner["error"]
    assert log(tmp_path) == []


def test_actions_known_only_at_run_time_are_not_compared(tmp_path: Path) -> None:
    write(tmp_path, """
        procedure: stamps
        vars:
          day: "{{ now('%Y%m%d%H%M%S%f') }}"
        steps:
          - id: probe
            readonly: true
            shell: |
              echo '{"n": 1}'
          - id: write
            shell: |
              echo '{"id": 7}'
          - id: uses_write
            shell: echo {{ steps.write.json.id }} >> log
          - id: stamp
            shell: echo {{ vars.day }} {{ run.id }} >> log
        """)
    saved = save(tmp_path)
    assert saved.rc == 0, saved.stderr
    assert "known only at run time (not compared): uses_write, stamp" in saved.stderr
    steps = {s["id"]: s for s in read_plan(tmp_path)["steps"]}
    assert steps["probe"]["fixed"] and steps["write"]["fixed"]
    assert not steps["uses_write"]["fixed"] and not steps["stamp"]["fixed"]
    done = apply(tmp_path)
    assert done.rc == 0, done.stderr
    assert log(tmp_path)[0] == "7"


# ---------------------------------------------------------------- secrets


SECRETIVE = """
procedure: secretive
params:
  db_password: {type: str, secret: true, required: true}
  user: {type: str, default: admin}
secrets:
  token: {env: API_TOKEN}
steps:
  - id: login
    shell: echo {{ params.user }} {{ params.db_password }} {{ secrets.token }} >> log
"""


def test_secrets_never_reach_the_plan(tmp_path: Path) -> None:
    write(tmp_path, SECRETIVE)
    env = {"API_TOKEN": "tok-very-secret-123"}
    saved = save(tmp_path, "-p", "db_password=pw-very-secret-456", env=env)
    assert saved.rc == 0, saved.stderr
    text = (tmp_path / "plan.json").read_text()
    assert "tok-very-secret-123" not in text and "pw-very-secret-456" not in text
    plan = json.loads(text)
    assert plan["params"] == {"user": "admin"}
    assert plan["secret_params"]["db_password"].startswith("pbkdf2-sha256$")
    assert plan["steps"][0]["action"] == "echo admin *** *** >> log"
    assert (tmp_path / "plan.json").stat().st_mode & 0o077 == 0

    # a secret param is given again (the plan has only its hash) and must be the same value
    missing = runproc(tmp_path, "apply", "plan.json", env=env)
    assert missing.rc == 2 and "-p db_password=VALUE" in missing.stderr
    wrong = apply(tmp_path, "-p", "db_password=something-else", env=env)
    assert_refused(wrong, "param db_password: secret: not the value the plan was saved with")
    assert log(tmp_path) == []
    # secrets: entries come from the environment at apply time, as in any run
    unset = runproc(tmp_path, "apply", "plan.json", "-p", "db_password=pw-very-secret-456")
    assert unset.rc == 2 and "API_TOKEN" in unset.stderr
    done = apply(tmp_path, "-p", "db_password=pw-very-secret-456", env=env)
    assert done.rc == 0, done.stderr
    assert log(tmp_path) == ["admin pw-very-secret-456 tok-very-secret-123"]


# ---------------------------------------------------------------- invalid input: exit 2


def test_save_plan_needs_dry_run(tmp_path: Path) -> None:
    setup(tmp_path)
    done = runproc(tmp_path, "proc.yml", "--save-plan", "plan.json")
    assert done.rc == 2
    assert "--save-plan: needs --dry-run" in done.stderr
    assert log(tmp_path) == [] and not (tmp_path / "plan.json").exists()
    nowhere = runproc(tmp_path, "proc.yml", "--dry-run", "--save-plan", "missing/plan.json")
    assert nowhere.rc == 2 and "does not exist" in nowhere.stderr


def test_a_malformed_plan_is_invalid_input(tmp_path: Path) -> None:
    setup(tmp_path)
    assert save(tmp_path).rc == 0
    good = read_plan(tmp_path)
    cases = {
        "garbage.json": ("{not json", "invalid JSON"),
        "other.json": (json.dumps({"hello": 1}), "not a runproc plan"),
        "future.json": (json.dumps({**good, "version": 99}), "plan format version 99 is not supported"),
        "nosteps.json": (json.dumps({**good, "steps": "all"}), "'steps' is missing or not a list"),
        "badstep.json": (json.dumps({**good, "steps": [{"action": 3}]}), "every step needs an 'id'"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        done = runproc(tmp_path, "apply", name)
        assert done.rc == 2, (name, done.stderr)
        assert message in done.stderr, (name, done.stderr)
    missing = runproc(tmp_path, "apply", "nothing-here.json")
    assert missing.rc == 2 and "cannot read the plan" in missing.stderr
    assert log(tmp_path) == []


def test_apply_in_process_returns_to_the_callers_directory(tmp_path: Path, monkeypatch: Any) -> None:
    from engine.cli import main

    setup(tmp_path)
    assert save(tmp_path).rc == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    state = f"sqlite:///{tmp_path}/state.db"
    assert main(["apply", str(tmp_path / "plan.json"), "--output", "json", "--state", state]) == 0
    assert Path.cwd() == elsewhere  # apply ran from the plan's folder, then came back
    assert "child 3" in log(tmp_path)
