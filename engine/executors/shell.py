"""``shell``: a command through ``/bin/sh -c``, locally or on an inventory host.

Values never become code: when the command runs, every ``{{ }}`` value reaches the shell as
an environment variable (``"${RUNPROC_V_1}"`` in the command text), so no quoting decision
can be wrong in a way that executes the value. ``| raw`` opts out, visibly. Plans show the
values themselves, quoted for reading. The executor does not know where the command runs:
``ctx.host`` carries a transport when the step fans out over SSH.

A simple command (words of plain characters, no quoting, expansion, redirection or shell
keyword) is executed directly rather than through ``/bin/sh -c``, as GNU make does: the
result is the same and the step costs one process instead of two. Anything else, and any
command that cannot be found or executed, goes through the shell (which then reports it).
"""

from __future__ import annotations

import contextvars
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from .base import ENVIRONMENT, Executor, Options, Result, StepContext


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


def redact_file(path: str, redact: Any) -> None:
    """Secrets never reach logs: a spooled output file is masked too (in bounded memory)."""
    masker = getattr(redact, "file", None)  # the run's Redactor; a plain function has no secrets
    if masker is not None:
        masker(path)


def command_result(res: Any, ctx: StepContext, what: str, killed: str) -> Result:
    """A finished process (a CommandResult) as a step result: fields, then why it failed."""
    stdout, stderr = res.stdout.text(), res.stderr.text()
    fields = output_fields(res.rc, stdout, stderr, ctx.redact)
    for buffer, field in ((res.stdout, "stdout_log"), (res.stderr, "stderr_log")):
        if buffer.spool_path:
            redact_file(buffer.spool_path, ctx.redact)
            fields[field] = buffer.spool_path
    if res.timed_out:
        return Result(False, fields, f"timed out; {killed} was killed", timed_out=True)
    if res.cancelled:
        return Result(False, fields, f"interrupted; {killed} was killed", cancelled=True)
    if res.rc != 0:
        # 126/127: the shell could not execute or find the program: a real run fails the same way
        kind = ENVIRONMENT if res.rc in (126, 127) else None
        return Result(False, fields, ctx.redact(failure_text(what, res.rc, fields["stdout"], fields["stderr"])),
                      error_kind=kind)
    return Result(True, fields)


# characters that mean nothing to a POSIX shell in an unquoted word
_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./-]+(?:[ \t]+[A-Za-z0-9_@%+=:,./-]+)*")
# POSIX special built-ins, regular built-ins and reserved words: their meaning is the shell's
_SHELL_WORDS = frozenset([".", ":", "break", "continue", "eval", "exec", "exit", "export", "readonly", "return", "set", "shift", "times", "trap", "unset", "alias", "bg", "cd", "command", "false", "fc", "fg", "getopts", "hash", "jobs", "kill", "newgrp", "pwd", "read", "true", "type", "ulimit", "umask", "unalias", "wait", "echo", "printf", "test", "local", "!", "{", "}", "case", "do", "done", "elif", "else", "esac", "fi", "for", "if", "in", "then", "until", "while"])


_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


def simple_argv(cmd: str) -> list[str] | None:
    """The argv of a command the shell would run as is, or None when it needs the shell."""
    words = _simple_words(cmd)
    return list(words) if words is not None else None


@lru_cache(maxsize=1024)  # asked at every run of a step: a procedure repeats its commands
def _simple_words(cmd: str) -> tuple[str, ...] | None:
    text = cmd.strip()
    if not text or not _PLAIN.fullmatch(text):
        return None
    words = text.split()
    first = words[0]
    if first in _SHELL_WORDS or _ASSIGNMENT.match(first):
        return None  # a built-in, or an assignment (NAME=value cmd)
    return tuple(words)


class ShellExecutor(Executor):
    name = "shell"
    main_option = "cmd"
    Options = ShellOptions
    result_fields = ("rc", "stdout", "stderr", "json")

    def describe(self, options: ShellOptions, ctx: StepContext) -> str:
        return ctx.render_shell(options.cmd)

    def execute(self, options: ShellOptions, ctx: StepContext) -> Result:
        cmd, values = ctx.render_shell_exec(options.cmd)
        env = {**{k: str(ctx.render(v)) for k, v in ctx.env.items()}, **values}
        stdin = ctx.render(options.stdin).encode() if options.stdin is not None else None
        transport = getattr(ctx.host, "transport", None)
        if transport is not None:
            res = transport.run(cmd, env=env, cwd=ctx.render(options.cwd) if options.cwd else None,
                                deadline=ctx.deadline, cancel=ctx.cancel, stdin=stdin,
                                on_output=ctx.on_output, spool_dir=ctx.log_dir, shell=options.shell)
        else:
            res = self._run_here(options, ctx, cmd, env, stdin)
        return command_result(res, ctx, "command", "the command's process group")

    def _run_here(self, options: ShellOptions, ctx: StepContext, cmd: str, env: dict[str, str],
                  stdin: bytes | None) -> Any:
        from ..transports.local import run_local

        cwd = Path(ctx.workdir / ctx.render(options.cwd) if options.cwd else ctx.workdir)
        # what a shell would export for the directory it runs in
        env = {"PWD": str(cwd.absolute()), **env}
        common: dict[str, Any] = dict(cwd=cwd, env=env, deadline=ctx.deadline, cancel=ctx.cancel, stdin=stdin,
                                      spool_dir=ctx.log_dir, on_output=ctx.on_output, label=ctx.step_id)
        # only when the shell asked for is the one that would have read it
        argv = simple_argv(cmd) if options.shell == "/bin/sh" else None
        if argv is not None:
            try:
                return run_local(argv, **common)
            except OSError:
                pass  # not found, not executable: the shell says so in its own words (rc 127/126)
        return run_local([options.shell, "-c", cmd], **common)


# ---------------------------------------------------------------- values by context
#
# Where a tag stands in the command decides how its value is inserted: in a bare word,
# inside "...", inside '...', in a here-document, in backticks. The command template is
# scanned once (as a shell reads it) and every tag is rewritten to call ``quote_in`` with
# its context. When the command runs, ``quote_in`` inserts a reference to an environment
# variable that holds the value (``"${V}"`` bare, ``${V}`` inside "..." and here-documents,
# ``'"${V}"'`` inside '...'): a parameter expansion is never read as code, so even a wrong
# guess about the context yields a wrong string, never an executed value. Only a quoted
# here-document (``<<'EOF'``), where nothing expands, gets the text itself, refused if it
# holds the line that would end the here-document. For plans, values are shown as text.

QUOTER = "_runproc_quote_in"  # the name the rewritten tags call; bound when rendering
_TAG = re.compile(r"\{\{(-?)(.*?)(-?)\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_HEREDOC = re.compile(r"<<(-?)[ \t]*([^\s;&|()<>]+)")


class _Scanner:
    """Follows a shell's quoting state through literal text: bare, "...", '...', $(...), `...`,
    comments and here-documents."""

    def __init__(self) -> None:
        # bare | dq | sq | sub (in $( )) | paren (( ) inside $( )) | arith ($(( ))) | bq (in ` `) | comment
        self.stack: list[str] = ["bare"]
        self.depth = 0  # parentheses open inside $(( ))
        self.escape = False
        self.word_start = True
        self.pending: list[tuple[str, bool, bool]] = []  # here-docs opened on this line
        self.heredoc: tuple[str, bool, bool] | None = None  # (delimiter, quoted, strip tabs)
        self.line = ""  # the current line of a here-document body

    def context(self) -> str:
        if self.heredoc is not None:
            return "heredoc_raw" if self.heredoc[1] else "heredoc"
        top = self.stack[-1]
        if top in ("sub", "paren"):
            return "bare"
        return top

    def feed(self, text: str) -> None:
        i = 0
        n = len(text)
        while i < n:
            c = text[i]
            if self.heredoc is not None:
                if c == "\n":
                    delim, _, strip = self.heredoc
                    body = self.line.lstrip("\t") if strip else self.line
                    self.line = ""
                    if body == delim:
                        self.heredoc = self.pending.pop(0) if self.pending else None
                else:
                    self.line += c
                i += 1
                continue
            top = self.stack[-1]
            if self.escape:
                self.escape = False
                i += 1
                continue
            if top == "comment":
                if c == "\n":
                    self.stack.pop()
                    self._newline()
                i += 1
                continue
            if top == "sq":
                if c == "'":
                    self.stack.pop()
                i += 1
                continue
            if c == "\\":
                self.escape = True
            elif top == "dq":
                if c == '"':
                    self.stack.pop()
                elif text.startswith("$(", i):
                    self.stack.append("sub")
                    i += 1
                elif c == "`":
                    self.stack.append("bq")
            elif top == "arith":  # $(( ... )): no quoting, no here-documents, only nesting
                if text.startswith("))", i) and self.depth == 0:
                    self.stack.pop()
                    i += 2
                    continue
                if text.startswith("$(", i) and not text.startswith("$((", i):
                    self.stack.append("sub")  # a command substitution inside: words again
                    i += 2
                    continue
                if c == "(":
                    self.depth += 1
                elif c == ")":
                    self.depth -= 1
            else:  # bare, sub, bq, paren
                if text.startswith("$((", i):
                    self.stack.append("arith")
                    self.depth = 0
                    i += 3
                    continue
                if c == "'":
                    self.stack.append("sq")
                elif c == '"':
                    self.stack.append("dq")
                elif text.startswith("$(", i):
                    self.stack.append("sub")
                    i += 1
                elif c == "`":
                    if top == "bq":
                        self.stack.pop()
                    else:
                        self.stack.append("bq")
                elif c == "(" and top in ("sub", "paren"):
                    self.stack.append("paren")  # a subshell or group inside $( ): its ) is not ours
                elif c == ")" and top in ("sub", "paren"):
                    self.stack.pop()
                elif c == "#" and self.word_start:
                    self.stack.append("comment")
                elif text.startswith("<<", i) and not text.startswith("<<<", i):
                    m = _HEREDOC.match(text, i)
                    if m:
                        word = m.group(2)
                        quoted = any(q in word for q in "'\"\\")  # <<'EOF', <<"EOF", <<\EOF: no expansion
                        delimiter = re.sub(r"['\"\\]", "", word)
                        self.pending.append((delimiter, quoted, m.group(1) == "-"))
                        i = m.end()
                        self.word_start = False
                        continue
                elif c == "\n":
                    self._newline()
            self.word_start = c in " \t\n;&|()" and not self.escape
            i += 1

    def _newline(self) -> None:
        if self.pending:
            self.heredoc = self.pending.pop(0)
            self.line = ""


def _quoted_heredoc_value(text: str, delimiter: str) -> str:
    if any(line.lstrip("\t") == delimiter for line in text.split("\n")):
        raise ValueError(f"a value holds the line {delimiter!r}, which would end the here-document")
    return text


_bindings: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("shell_bindings",
                                                                                  default=None)
ENV_PREFIX = "RUNPROC_V_"


def bind_values() -> tuple[contextvars.Token[dict[str, str] | None], dict[str, str]]:
    """Start collecting the values of one command render (see ``quote_in``)."""
    values: dict[str, str] = {}
    return _bindings.set(values), values


def unbind_values(token: contextvars.Token[dict[str, str] | None]) -> None:
    _bindings.reset(token)


def quote_in(value: Any, context: str) -> Any:
    """A ``{{ }}`` value for where it stands (see ``shell_template``): a reference to an
    environment variable when the command runs, readable text in a plan."""
    from ..format.expressions import RawValue, Unknown, to_text

    if isinstance(value, RawValue | Unknown):
        return RawValue(to_text(value))  # | raw: the author's choice, visible in the file
    text = to_text(value)
    if context.startswith("heredoc_raw:"):
        return RawValue(_quoted_heredoc_value(text, context.split(":", 1)[1]))
    if context == "arith":
        # $(( )) evaluates what it is given (bash even runs $( ) in array subscripts): numbers only
        if not re.fullmatch(r"[+-]?[0-9]+", text.strip()):
            raise ValueError(f"a value inside $(( )) must be an integer, got {text!r}")
        return RawValue(text.strip())
    values = _bindings.get()
    if values is None:  # a plan: show the value itself, as a person reads it
        if context in ("bare", "bq"):
            import shlex

            return RawValue(shlex.quote(text))
        return RawValue(text.replace("\n", " ") if context == "comment" else text)
    name = f"{ENV_PREFIX}{len(values) + 1}"
    values[name] = text
    if context == "sq":
        return RawValue(f"'\"${{{name}}}\"'")  # close '...', expand inside "...", reopen
    if context in ("dq", "heredoc"):
        return RawValue(f"${{{name}}}")
    return RawValue(f'"${{{name}}}"')  # bare, $(...), `...`, a comment: one word, never split


@lru_cache(maxsize=4096)
def shell_template(source: str) -> str:
    """Rewrite each ``{{ expr }}`` of a command template to quote for its place in the command.

    A tag in a bare word keeps the environment's default quoting; others become
    ``{{ _runproc_quote_in((expr), "dq") }}`` and so on. ``{% %}`` blocks and comments are
    left as they are: they emit no value.
    """
    if "{{" not in source:
        return source
    scanner = _Scanner()
    result: list[str] = []
    pos = 0
    for m in _TAG.finditer(source):
        literal = source[pos:m.start()]
        scanner.feed(literal)
        result.append(literal)
        pos = m.end()
        context = scanner.context()
        scanner.word_start = False  # a value is part of the word it stands in: no '#' comment after it
        if m.group(2) is None:  # a block or comment emits no value
            result.append(m.group(0))
            continue
        if context == "heredoc_raw":
            assert scanner.heredoc is not None
            context = f"heredoc_raw:{scanner.heredoc[0]}"
        result.append(f"{{{{{m.group(1)} {QUOTER}(({m.group(2)}), {context!r}) {m.group(3)}}}}}")
    result.append(source[pos:])
    return "".join(result)
