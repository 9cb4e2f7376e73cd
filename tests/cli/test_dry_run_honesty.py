"""What a dry run claims must be true: it neither writes through a check, nor reports a plan
as broken because a readonly step looked at state an earlier planned write has not made yet."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.cli import run_json, write


def test_readonly_step_after_a_planned_write_is_not_a_failure(tmp_path: Path) -> None:
    done = run_json(tmp_path, """
        procedure: scratch
        steps:
          - id: create
            shell: mkdir scratch && echo 3 > scratch/rows
          - id: count
            readonly: true
            shell: cat scratch/rows
          - id: probe
            needs: []
            readonly: true
            shell: echo fine
    """, "--dry-run")
    assert done.rc == 0, done.stderr
    assert done.step("create")["status"] == "planned"
    count = done.step("count")
    assert count["status"] == "planned"
    assert any("failed against the current state" in n and "create" in n for n in count["notes"])
    assert done.step("probe")["status"] == "ok"  # not downstream of a write: no note
    assert "notes" not in done.step("probe")
    assert not (tmp_path / "scratch").exists()


def test_readonly_step_after_a_planned_write_that_passes_says_so(tmp_path: Path) -> None:
    done = run_json(tmp_path, """
        procedure: noted
        steps:
          - id: write
            shell: touch written
          - id: look
            readonly: true
            shell: ls
    """, "--dry-run")
    assert done.rc == 0
    assert done.step("look")["status"] == "ok"
    assert any("upstream write was only planned" in n for n in done.step("look")["notes"])


def test_a_check_that_would_post_is_not_sent_in_a_dry_run(tmp_path: Path, http) -> None:
    done = run_json(tmp_path, f"""
        procedure: checks
        preconditions:
          - name: register
            http: {{method: POST, url: "{http.url}/register"}}
          - name: health
            http: "{http.url}/health"
        steps:
          - id: a
            shell: echo hi
    """, "--dry-run")
    assert done.rc == 0, done.stderr
    assert [r.method for r in http.requests] == ["GET"]
    assert "not run in a dry run: it would write" in done.stderr


def test_offline_plan_shows_the_child_procedure_plan(tmp_path: Path) -> None:
    write(tmp_path, """
        procedure: child
        params:
          keep: {type: bool, default: false}
        steps:
          - id: inner
            shell: touch inner
    """, name="child.yml")
    done = run_json(tmp_path, """
        procedure: parent
        steps:
          - id: call
            procedure: {file: child.yml, params: {keep: true}}
    """, "--dry-run", "--offline")
    assert done.rc == 0, done.stderr
    call = done.step("call")
    assert call["status"] == "planned"
    assert call["action"] == "runproc child.yml -p keep=true"
    assert call["steps"]["inner"]["status"] == "planned"
    assert not (tmp_path / "inner").exists()


def test_unknown_values_read_cleanly_in_plans(tmp_path: Path) -> None:
    done = run_json(tmp_path, """
        procedure: unknowns
        steps:
          - id: clock
            shell: date +%s
          - id: use
            shell: echo {{ steps.clock.stdout.strip() }}
    """, "--dry-run")
    use = done.step("use")
    assert use["status"] == "planned"
    assert "<unknown: steps.clock.stdout.strip()>" in use["action"]
    assert not any("unsafe_callable" in n for n in use.get("notes", []))


def test_run_dir_is_the_procedure_folder(tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    path = write(sub, """
        procedure: where
        steps:
          - id: a
            shell: echo {{ run.dir }}
    """)
    from tests.helpers.cli import runproc

    done = runproc(tmp_path, str(path), "--output", "json")
    assert done.json["steps"][0]["stdout"].strip() == str(sub.resolve())


def test_offline_plan_of_a_fanned_out_step_renders_its_undo_for_a_host(tmp_path: Path) -> None:
    # the plan shows the action as on the first host; its undo read "<cannot render: 'host' is
    # undefined>" (nothing is contacted: --offline, and the addresses are never dialled)
    (tmp_path / "inv.ini").write_text("[web]\nweb1 ansible_host=127.0.0.2\nweb2 ansible_host=127.0.0.3\n")
    done = run_json(tmp_path, """
        procedure: undo-per-host
        steps:
          - id: deploy
            on: web
            shell: echo deploy {{ host.name }}
            rollback:
              shell: echo undo {{ host.name }}
    """, "--dry-run", "--offline", "-i", "inv.ini")
    assert done.rc == 0, done.stderr
    step = done.step("deploy")
    assert step["status"] == "planned" and "echo deploy web1" in step["action"]
    assert step["rollback_action"] == "echo undo web1", step
