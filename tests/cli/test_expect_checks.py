"""A verification with ``expect:`` and no executor judges the step's own result, not a second run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jsonschema
import yaml

from tests.helpers.cli import RUNPROC, child_env, run_json, runproc, write

COUNTED = """
    procedure: counted
    steps:
      - id: count
        shell: echo run >> runs; wc -l < runs
        verify:
          - expect: "result.stdout | trim | int == {n}"
        rollback: {{shell: echo undone > undone}}
"""


def test_an_expect_only_check_judges_the_step_output_once(tmp_path: Path) -> None:
    done = run_json(tmp_path, COUNTED.format(n=1))
    assert done.rc == 0, done.stderr
    assert done.statuses() == {"count": "ok"}
    assert (tmp_path / "runs").read_text() == "run\n"  # the step ran once: the check did not run it again


def test_a_failing_expect_only_check_fails_the_step_and_rolls_it_back(tmp_path: Path) -> None:
    done = run_json(tmp_path, COUNTED.format(n=7))
    assert done.rc == 1
    assert done.step("count")["error"] == "verify failed: expected result.stdout | trim | int == 7"
    assert (tmp_path / "undone").read_text() == "undone\n"


def test_a_named_expect_only_check_is_named_in_the_error(tmp_path: Path) -> None:
    done = run_json(tmp_path, """
        procedure: named
        steps:
          - id: probe
            shell: "echo '{\\"healthy\\": false}'"
            readonly: true
            verify:
              - name: service healthy
                expect: result.json.healthy
    """)
    assert done.rc == 1
    assert done.step("probe")["error"] == "verify failed: service healthy: expected result.json.healthy"


def test_in_a_dry_run_a_planned_step_is_not_judged_and_a_readonly_one_is(tmp_path: Path) -> None:
    done = run_json(tmp_path, """
        procedure: plan
        steps:
          - id: write
            shell: echo 1 > written
            verify:
              - expect: result.rc == 0
          - id: read
            needs: []
            shell: echo 5
            readonly: true
            verify:
              - expect: "result.stdout | trim | int == 6"
    """, "--dry-run")
    assert done.rc == 1
    assert done.statuses() == {"write": "planned", "read": "failed"}
    assert done.step("read")["error"] == "verify failed: expected result.stdout | trim | int == 6"
    assert not (tmp_path / "written").exists()


def test_a_precondition_without_an_executor_is_a_located_error(tmp_path: Path) -> None:
    write(tmp_path, """
        procedure: early
        steps:
          - id: a
            shell: echo 1
            preconditions:
              - expect: result.rc == 0
            verify:
              - expect: result.rc == 0
                retry: {attempts: 3}
    """)
    done = runproc(tmp_path, "validate", "proc.yml")
    assert done.rc == 2
    lines = done.stderr.splitlines()
    assert lines[0].startswith("proc.yml:6:9: steps[0].preconditions[0]: a precondition without an executor "
                               "has no result to judge (hint: ")
    assert lines[1].startswith("proc.yml:9:9: steps[0].verify[0]: 'retry' means nothing on a check without "
                               "an executor")


def test_the_schema_allows_it_under_verify_only(tmp_path: Path) -> None:
    schema = json.loads(subprocess.run([*RUNPROC, "schema"], capture_output=True, text=True, env=child_env(),
                                       check=True).stdout)
    doc = yaml.safe_load("procedure: p\nsteps:\n  - id: a\n    shell: echo 6\n    verify:\n"
                         "      - expect: result.stdout | trim | int == 6\n")
    jsonschema.validate(doc, schema)
    doc["steps"][0]["preconditions"] = [{"expect": "true"}]
    try:
        jsonschema.validate(doc, schema)
    except jsonschema.ValidationError:
        return
    raise AssertionError("the schema accepted an expect-only precondition")
