"""``confirm``: a human approval. ``--yes`` approves; no terminal and no ``--yes`` refuses."""

from __future__ import annotations

from .base import Executor, Options, Result, StepContext


class ConfirmOptions(Options):
    message: str


class Refusal(Result):
    """A denied approval: the runner ends the run as 'refused'."""


class ConfirmExecutor(Executor):
    name = "confirm"
    main_option = "message"
    Options = ConfirmOptions
    result_fields = ("approved", "by", "how")
    stateless = True

    def describe(self, options: ConfirmOptions, ctx: StepContext) -> str:
        return f"ask: {ctx.render(options.message)}"

    def execute(self, options: ConfirmOptions, ctx: StepContext) -> Result:
        message = ctx.render(options.message)
        if ctx.yes:
            # "by" stays "--yes" (the field's meaning since 0.1); who passed it is journaled
            return Result(True, {"approved": True, "by": "--yes", "how": "--yes"})
        ask = getattr(ctx, "ask", None)
        if not ctx.interactive or ask is None:
            return Refusal(False, {"approved": False, "by": None, "how": None},
                           f"approval needed ({message}) but there is no terminal to ask; pass --yes")
        approved = bool(ask(message))
        by = _user()
        if not approved:
            return Refusal(False, {"approved": False, "by": by, "how": "terminal"}, f"not approved by {by}: {message}")
        return Result(True, {"approved": True, "by": by, "how": "terminal"})


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "unknown"
