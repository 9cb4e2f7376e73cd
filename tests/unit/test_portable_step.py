"""The step is portable: one step run from plain inputs (through pickle and JSON, no live
objects) gives the same StepResult as the same step run by the scheduler."""

from __future__ import annotations

import json
import pickle
import textwrap
from pathlib import Path

import engine
from engine.execution.portable import StepInputs, run_step

PROC = """
procedure: portable
params:
  name: {type: str, default: world}
steps:
  - id: greet
    shell: "echo '{\\"greeting\\": \\"hello\\"}'"
  - id: use
    needs: [greet]
    shell: "echo {{ steps.greet.json.greeting }} {{ params.name }}; echo to-stderr >&2"
    verify:
      - expect: "result.stdout | trim == 'hello world'"
"""


def _comparable(sr: engine.StepResult) -> dict[str, object]:
    out = sr.to_json()
    for volatile in ("started_at", "duration"):
        out.pop(volatile, None)
    return out


def test_a_step_from_plain_inputs_equals_the_scheduler_s(tmp_path: Path) -> None:
    path = tmp_path / "proc.yml"
    path.write_text(textwrap.dedent(PROC).lstrip())
    result = engine.run(path, journal=False, state=f"sqlite:///{tmp_path}/state.db")
    assert result.ok, result.error
    through_scheduler = result.steps["use"]

    raw = {"id": "use", "needs": ["greet"],
           "shell": "echo {{ steps.greet.json.greeting }} {{ params.name }}; echo to-stderr >&2",
           "verify": [{"expect": "result.stdout | trim == 'hello world'"}]}
    inputs = StepInputs(step=raw, values={"params": {"name": "world"},
                                          "steps": {"greet": result.steps["greet"].as_fields()}},
                        params={"name": {"type": "str", "default": "world"}}, workdir=str(tmp_path))
    # no live objects: the inputs survive both pickle and JSON, as a worker receives them
    carried = StepInputs.from_json(json.loads(json.dumps(pickle.loads(pickle.dumps(inputs)).to_json())))
    portable = run_step(carried)

    assert portable.status == "ok"
    assert portable.fields["stdout"] == "hello world\n" and portable.fields["stderr"] == "to-stderr\n"
    assert _comparable(portable) == _comparable(through_scheduler)


def test_a_failing_portable_step_fails_as_in_the_scheduler(tmp_path: Path) -> None:
    inputs = StepInputs(step={"id": "bad", "shell": "echo 5", "verify": [{"expect": "result.stdout | trim == '6'"}]},
                        workdir=str(tmp_path))
    sr = run_step(StepInputs.from_json(json.loads(json.dumps(inputs.to_json()))))
    assert sr.status == "failed"
    assert sr.error == "verify failed: expected result.stdout | trim == '6'"
