"""A plugin executor's bug fails its step with a message; it never takes the run down."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import engine
from engine.executors import register_executor
from engine.executors.base import Executor, Options, Result, StepContext


class BrokenOptions(Options):
    what: str


class BrokenDescribe(Executor):
    name = "broken_describe"
    main_option = "what"
    Options = BrokenOptions

    def describe(self, options: Any, ctx: StepContext) -> str:
        raise RuntimeError("describe exploded")

    def execute(self, options: Any, ctx: StepContext) -> Result:
        return Result(True, {"done": options.what})


class BrokenEffect(BrokenDescribe):
    name = "broken_effect"

    def describe(self, options: Any, ctx: StepContext) -> str:
        return "fine"

    def effect(self, options: Any) -> Any:
        raise RuntimeError("effect exploded")


def test_broken_describe_and_effect(tmp_path: Path) -> None:
    register_executor(BrokenDescribe)
    register_executor(BrokenEffect)
    path = tmp_path / "p.yml"
    path.write_text("procedure: plugins\nsteps:\n  - id: a\n    broken_describe: x\n"
                    "  - id: b\n    broken_effect: y\n")
    result = engine.run(path, state=f"sqlite:///{tmp_path}/s.db")
    a, b = result.steps["a"], result.steps["b"]
    assert a.status == "ok" and a.fields["done"] == "x"
    assert a.description == "<cannot describe: RuntimeError: describe exploded>"
    assert b.status == "failed" and "effect exploded" in (b.error or "")
    assert result.exit_code == 1


def test_redacting_a_file_in_chunks_misses_no_secret_at_a_boundary(tmp_path: Path) -> None:
    from engine.format.redaction import Redactor

    redactor = Redactor(["tok-spool-1234"])
    path = tmp_path / "out.log"
    for n in range(30):
        path.write_text("x" * n + "tok-spool-1234" + "y" * 7 + "tok-spool-1234")
        redactor.file(str(path), chunk=8)
        assert path.read_text() == "x" * n + "***" + "y" * 7 + "***"
