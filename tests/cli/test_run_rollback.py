"""Failure handling: rollback order, rollback failures, finally/on_failure, refusals."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.cli import run_json, runproc, write

SAGA = """
procedure: saga
params:
  fail_rollback_of: {type: str, default: none}
steps:
  - id: a
    shell: echo a >> done
    rollback: {shell: echo a >> undone}
  - id: b
    shell: echo b >> done
    rollback:
      shell: test {{ params.fail_rollback_of }} != b && echo b >> undone
  - id: c
    shell: echo c >> done
    rollback: {shell: echo c >> undone}
  - id: d
    shell: echo d-broke >&2; exit 5
    rollback: {shell: echo d >> undone}
  - id: e
    shell: echo e >> done
    rollback: {shell: echo e >> undone}
finally:
  - id: tidy
    shell: echo tidy >> finally
on_failure:
  - id: alert
    shell: echo "alert {{ run.error }}" >> alerts
"""


def test_rollback_in_reverse_completion_order(tmp_path: Path) -> None:
    done = run_json(tmp_path, SAGA)
    assert done.rc == 1, done.stderr
    assert done.json["status"] == "failed"
    assert (tmp_path / "done").read_text().split() == ["a", "b", "c"]
    assert (tmp_path / "undone").read_text().split() == ["c", "b", "a"]  # d never completed
    assert done.statuses() == {"a": "rolled_back", "b": "rolled_back", "c": "rolled_back", "d": "failed",
                               "e": "cancelled", "tidy": "ok", "alert": "ok"}
    assert (tmp_path / "finally").read_text() == "tidy\n"
    assert "d" in (tmp_path / "alerts").read_text() and "exited with 5" in (tmp_path / "alerts").read_text()
    assert done.json["root_cause"] == "d"
    assert done.json["rolled_back"] == ["c", "b", "a"]  # in the order they were undone
    assert not (tmp_path / "e").exists()


def test_rollback_order_follows_completion_not_file_order(tmp_path: Path) -> None:
    done = run_json(tmp_path, """
        procedure: completion
        steps:
          - id: slow
            needs: []
            shell: sleep 0.4
            rollback: {shell: echo slow >> undone}
          - id: quick
            needs: []
            shell: "true"
            rollback: {shell: echo quick >> undone}
          - id: boom
            needs: [slow, quick]
            shell: exit 1
    """)
    assert done.rc == 1
    assert (tmp_path / "undone").read_text().split() == ["slow", "quick"]


def test_rollback_failure_exit_4_and_other_undos_still_run(tmp_path: Path) -> None:
    path = write(tmp_path, SAGA)
    done = runproc(tmp_path, str(path), "-p", "fail_rollback_of=b", "--output", "json")
    assert done.rc == 4, done.stderr
    assert done.json["status"] == "rollback_incomplete"
    assert (tmp_path / "undone").read_text().split() == ["c", "a"]
    assert done.step("b")["status"] == "rollback_failed"
    assert done.step("b")["rollback"]["status"] == "failed"
    assert done.json["not_undone"] == ["b"]
    assert (tmp_path / "finally").exists()
    # the text output says what was not undone
    (tmp_path / "undone").unlink()
    text = runproc(tmp_path, str(path), "-p", "fail_rollback_of=b")
    assert text.rc == 4
    assert "NOT UNDONE" in text.stdout and "b" in text.stdout.split("NOT UNDONE")[1]


def test_no_rollback(tmp_path: Path) -> None:
    done = run_json(tmp_path, SAGA, "--no-rollback")
    assert done.rc == 1
    assert not (tmp_path / "undone").exists()
    assert done.step("c")["status"] == "ok"
    assert (tmp_path / "finally").exists() and (tmp_path / "alerts").exists()


def test_success_runs_finally_not_on_failure(tmp_path: Path) -> None:
    done = run_json(tmp_path, """
        procedure: fine
        steps:
          - id: a
            shell: "true"
            rollback: {shell: touch undone}
        finally:
          - id: tidy
            shell: touch tidied
        on_failure:
          - id: alert
            shell: touch alerted
    """)
    assert done.rc == 0
    assert done.statuses() == {"a": "ok", "tidy": "ok", "alert": "skipped"}
    assert (tmp_path / "tidied").exists()
    assert not (tmp_path / "alerted").exists() and not (tmp_path / "undone").exists()
    ids = [s["id"] for s in done.json["steps"]]
    assert ids == ["a", "tidy", "alert"]


def test_failing_finally_fails_the_run(tmp_path: Path) -> None:
    done = run_json(tmp_path, """
        procedure: fin
        steps:
          - id: a
            shell: "true"
        finally:
          - id: tidy
            shell: exit 2
          - id: tidy2
            shell: touch tidy2
    """)
    assert done.rc == 1
    assert done.json["status"] == "failed"
    assert done.statuses() == {"a": "ok", "tidy": "failed", "tidy2": "ok"}


def test_procedure_precondition_refuses_with_no_side_effect(tmp_path: Path) -> None:
    done = run_json(tmp_path, """
        procedure: pre
        preconditions:
          - name: the flag file exists
            shell: test -f flag
        steps:
          - id: a
            shell: touch changed
        finally:
          - id: tidy
            shell: touch tidied
    """)
    assert done.rc == 3, done.stderr
    assert done.json["status"] == "refused"
    assert "the flag file exists" in done.json["error"]
    assert not (tmp_path / "changed").exists() and not (tmp_path / "tidied").exists()
    assert done.step("a")["status"] == "cancelled"


def test_precondition_expect_over_result(tmp_path: Path) -> None:
    text = """
        procedure: pre
        preconditions:
          - shell: echo 5
            expect: result.stdout | int > 3
        steps:
          - id: a
            shell: touch changed
    """
    done = run_json(tmp_path, text)
    assert done.rc == 0, done.stderr
    assert (tmp_path / "changed").exists()


def test_confirm_without_terminal_is_refused(tmp_path: Path) -> None:
    text = """
        procedure: approve
        steps:
          - id: before
            shell: touch before
            rollback: {shell: touch before-undone}
          - id: ok_to_go
            confirm: Deploy to production?
          - id: after
            shell: touch after
    """
    done = run_json(tmp_path, text)
    assert done.rc == 3, done.stderr
    assert done.json["status"] == "refused"
    assert done.step("ok_to_go")["status"] == "failed"
    assert "--yes" in done.step("ok_to_go")["error"]
    assert done.step("after")["status"] == "cancelled"
    assert not (tmp_path / "after").exists()
    assert (tmp_path / "before-undone").exists()  # what ran before the refusal is undone


def test_confirm_with_yes_is_approved(tmp_path: Path) -> None:
    done = run_json(tmp_path, """
        procedure: approve
        steps:
          - id: ok_to_go
            confirm: Deploy to production?
          - id: after
            shell: touch after
    """, "--yes")
    assert done.rc == 0, done.stderr
    assert done.step("ok_to_go")["approved"] is True and done.step("ok_to_go")["by"] == "--yes"
    assert (tmp_path / "after").exists()


def test_confirm_on_a_terminal_asks(tmp_path: Path) -> None:
    import os
    import pty
    import select
    import time

    from tests.helpers.cli import RUNPROC, child_env, state_args

    path = write(tmp_path, """
        procedure: approve
        steps:
          - id: ok_to_go
            confirm: Deploy to production?
          - id: after
            shell: touch after
    """)
    for answer, rc, created in ((b"y\n", 0, True), (b"n\n", 3, False)):
        (tmp_path / "after").unlink(missing_ok=True)
        pid, fd = pty.fork()
        if pid == 0:
            os.chdir(tmp_path)
            os.execvpe(RUNPROC[0], [*RUNPROC, str(path), *state_args(tmp_path)], child_env({"NO_COLOR": "1"}))
        seen = b""
        end = time.monotonic() + 30
        while b"[y/N]" not in seen and time.monotonic() < end:
            if select.select([fd], [], [], 0.2)[0]:
                seen += os.read(fd, 4096)
        assert b"Deploy to production? [y/N]" in seen
        os.write(fd, answer)
        while time.monotonic() < end:
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        assert os.waitstatus_to_exitcode(status) == rc, seen.decode(errors="replace")
        assert (tmp_path / "after").exists() is created


def test_child_procedure_under_the_parents_lock(tmp_path: Path) -> None:
    (tmp_path / "child.yml").write_text("procedure: child\nlock: db\nsteps:\n  - id: c\n    shell: touch child-ran\n")
    done = run_json(tmp_path, """
        procedure: parent
        lock: db
        steps:
          - id: sub
            procedure: child.yml
    """)
    assert done.rc == 0, done.stdout
    assert (tmp_path / "child-ran").exists()
