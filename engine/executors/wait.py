"""``wait``: pause for ``seconds``, or check ``until`` an expression holds (with ``retry``)."""

from __future__ import annotations

from ..format.durationfield import Duration
from ..format.durations import format_duration
from .base import Executor, Options, Result, StepContext


class WaitOptions(Options):
    seconds: Duration | None = None
    until: str | None = None


class WaitExecutor(Executor):
    name = "wait"
    main_option = "seconds"
    Options = WaitOptions
    expression_options = ("until",)
    stateless = True

    def describe(self, options: WaitOptions, ctx: StepContext) -> str:
        if options.until:
            return f"wait until {options.until.strip()}"
        return f"wait {format_duration(options.seconds or 0)}"

    def execute(self, options: WaitOptions, ctx: StepContext) -> Result:
        if options.seconds:
            remaining = ctx.remaining()
            if remaining is not None and remaining < options.seconds:
                if ctx.cancel.wait(remaining):
                    return Result(False, {}, "interrupted", cancelled=True)
                return Result(False, {}, "timed out", timed_out=True)
            if ctx.cancel.wait(options.seconds):
                return Result(False, {}, "interrupted", cancelled=True)
        if options.until and not ctx.evaluate(options.until):
            return Result(False, {}, f"not yet: {options.until.strip()}")
        return Result(True, {})
