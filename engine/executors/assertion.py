"""``assert``: one expression or a list of them; all must be true."""

from __future__ import annotations

from ..format.expressions import to_text
from .base import Effect, Executor, Options, Result, StepContext


class AssertOptions(Options):
    that: str | list[str]
    message: str | None = None


class AssertExecutor(Executor):
    name = "assert"
    main_option = "that"
    Options = AssertOptions
    expression_options = ("that",)
    result_fields = ("value",)

    def effect(self, options: AssertOptions) -> Effect:
        return Effect.READ

    def describe(self, options: AssertOptions, ctx: StepContext) -> str:
        exprs = [options.that] if isinstance(options.that, str) else options.that
        return "assert " + " and ".join(f"({e.strip()})" for e in exprs)

    def execute(self, options: AssertOptions, ctx: StepContext) -> Result:
        exprs = [options.that] if isinstance(options.that, str) else options.that
        values = []
        for expr in exprs:
            value = ctx.evaluate(expr)
            values.append(value)
            if not value:
                # the author's message explains; the expression says which check it was
                failed = f"assertion failed: {expr.strip()}"
                message = f"{to_text(ctx.render(options.message))} ({failed})" if options.message else failed
                return Result(False, {"value": value}, message)
        return Result(True, {"value": values[0] if len(values) == 1 else values})
