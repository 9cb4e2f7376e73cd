"""``confirm``: a human approval. ``--yes`` approves; a person answers on the terminal, with
``runproc approve RUN STEP`` or on ``runproc serve``'s run page (the first answer stands);
``approvers`` and ``four_eyes`` say who may approve. docs/executors/confirm.md.

The waiting is the run core's (engine/execution/approvals.py): a journaled run hands this step
a gate in ``ctx.ask`` with a ``decide`` method. A run that journals nothing (a child procedure,
a library caller without a state) has the terminal alone, or nothing: then it is refused at once.
"""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from .base import Executor, Options, Result, StepContext


class ConfirmOptions(Options):
    message: str
    # who may approve: user names (the OS user for runproc approve, the token's name on the web
    # page) or runproc serve roles (approver, operator); anyone who may answer may reject
    approvers: list[str] | None = None
    # the user who started the run may not approve it (--yes included): another person must
    four_eyes: bool = False

    @field_validator("approvers")
    @classmethod
    def _named(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("approvers: name at least one user or role (or leave it out: anyone may)")
            if any(not v.strip() for v in value):
                raise ValueError("approvers: an empty name")
        return value


class Refusal(Result):
    """A denied approval: the runner ends the run as 'refused'."""


class ConfirmExecutor(Executor):
    name = "confirm"
    main_option = "message"
    Options = ConfirmOptions
    result_fields = ("approved", "by", "how", "comment")
    stateless = True

    def describe(self, options: ConfirmOptions, ctx: StepContext) -> str:
        rules = []
        if options.four_eyes:
            rules.append("four eyes")
        if options.approvers:
            rules.append(f"approvers: {', '.join(options.approvers)}")
        return f"ask: {ctx.render(options.message)}" + (f" ({'; '.join(rules)})" if rules else "")

    def execute(self, options: ConfirmOptions, ctx: StepContext) -> Result:
        message = ctx.render(options.message)
        decide = getattr(ctx.ask, "decide", None)
        if decide is not None:
            answer: dict[str, Any] = decide(message, approvers=list(options.approvers or []),
                                            four_eyes=options.four_eyes, yes=ctx.yes, deadline=ctx.deadline,
                                            say=ctx.progress)
            return _result(answer, message)
        ruled = options.four_eyes or bool(options.approvers)
        if ctx.yes and not ruled:
            # "by" stays "--yes" (the field's meaning since 0.1); who passed it is journaled
            return Result(True, {"approved": True, "by": "--yes", "how": "--yes"})
        ask = ctx.ask
        if not ctx.interactive or ask is None or ruled:
            why = ("its approvers or four_eyes need an answer from elsewhere, and this run has no state to wait "
                   "on" if ruled else "there is no terminal to ask; pass --yes")
            return Refusal(False, {"approved": False, "by": None, "how": None}, f"approval needed ({message}) but {why}")
        approved = bool(ask(message))
        by = _user()
        if not approved:
            return Refusal(False, {"approved": False, "by": by, "how": "terminal"}, f"not approved by {by}: {message}")
        return Result(True, {"approved": True, "by": by, "how": "terminal"})


def _result(answer: dict[str, Any], message: str) -> Result:
    """A gate's answer as the step's result."""
    if "approved" not in answer:  # nobody answered: refused for want of a way to ask, timed out, interrupted
        error = str(answer.get("error") or "no answer")
        if answer.get("refused"):
            return Refusal(False, {"approved": False, "by": None, "how": None}, error)
        return Result(False, {}, error, timed_out=bool(answer.get("timed_out")),
                      cancelled=bool(answer.get("cancelled")))
    fields = {k: answer.get(k) for k in ("approved", "by", "how", "comment")}
    if answer.get("role"):
        fields["role"] = answer["role"]
    if not answer.get("approved"):
        said = f" ({answer['comment']})" if answer.get("comment") else ""
        return Refusal(False, fields, f"not approved by {answer.get('by')} ({answer.get('how')}): {message}{said}")
    return Result(True, fields)


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "unknown"
