"""``shell``: a command through ``/bin/sh -c``, locally or on an inventory host.

Every ``{{ }}`` value is shell-quoted (``| raw`` opts out). The executor does not know where
the command runs: ``ctx.host`` carries a transport when the step fans out over SSH.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .base import Executor, Options, Result, StepContext


class ShellOptions(Options):
    cmd: str
    cwd: str | None = None
    stdin: str | None = None
    shell: str = "/bin/sh"


def parse_json(text: str) -> Any:
    stripped = text.strip()
    if stripped[:1] in ("{", "[") and stripped[-1:] in ("}", "]"):
        try:
            return json.loads(stripped)
        except ValueError:
            return None
    return None


def output_fields(rc: int | None, stdout: str, stderr: str, redact: Any) -> dict[str, Any]:
    stdout, stderr = redact(stdout), redact(stderr)
    return {"rc": rc, "stdout": stdout, "stderr": stderr, "json": parse_json(stdout)}


def failure_text(what: str, rc: int | None, stdout: str, stderr: str) -> str:
    """As invoke's UnexpectedExit: the command, its exit code and the last lines it printed."""
    tail = (stderr.strip() or stdout.strip()).splitlines()[-5:]
    shown = ("\n" + "\n".join(tail)) if tail else ""
    return f"{what} exited with {rc}{shown}"


class ShellExecutor(Executor):
    name = "shell"
    main_option = "cmd"
    Options = ShellOptions
    result_fields = ("rc", "stdout", "stderr", "json")

    def describe(self, options: ShellOptions, ctx: StepContext) -> str:
        return ctx.render_shell(options.cmd)

    def execute(self, options: ShellOptions, ctx: StepContext) -> Result:
        cmd = ctx.render_shell(options.cmd)
        env = {k: str(ctx.render(v)) for k, v in ctx.env.items()}
        stdin = ctx.render(options.stdin).encode() if options.stdin is not None else None
        transport = getattr(ctx.host, "transport", None)
        if transport is not None:
            res = transport.run(cmd, env=env, cwd=ctx.render(options.cwd) if options.cwd else None,
                                deadline=ctx.deadline, cancel=ctx.cancel, stdin=stdin,
                                on_output=ctx.on_output, spool_dir=ctx.log_dir)
        else:
            from ..transports.local import run_local

            cwd = ctx.workdir / ctx.render(options.cwd) if options.cwd else ctx.workdir
            res = run_local([options.shell, "-c", cmd], cwd=Path(cwd), env=env, deadline=ctx.deadline,
                            cancel=ctx.cancel, stdin=stdin, spool_dir=ctx.log_dir,
                            on_output=ctx.on_output)
        stdout, stderr = res.stdout.text(), res.stderr.text()
        fields = output_fields(res.rc, stdout, stderr, ctx.redact)
        if res.stdout.spool_path:
            fields["stdout_log"] = res.stdout.spool_path
        if res.stderr.spool_path:
            fields["stderr_log"] = res.stderr.spool_path
        if res.timed_out:
            return Result(False, fields, "timed out; the command's process group was killed", timed_out=True)
        if res.cancelled:
            return Result(False, fields, "interrupted; the command's process group was killed", cancelled=True)
        if res.rc != 0:
            return Result(False, fields, ctx.redact(failure_text("command", res.rc, fields["stdout"],
                                                                 fields["stderr"])))
        return Result(True, fields)
