"""``kubectl``: the kubectl CLI with an argv, never through a shell.

A string ``args`` is split with ``shlex.split`` *before* templating, and every item is then
rendered on its own, so a value (a name with a space, a ``;``, a ``--flag``) is always exactly
one argv item and can never become extra arguments. ``{{ }}`` blocks are kept whole by the
split even when they contain spaces or quotes.

The executor knows which verbs change the cluster (``effect``): read verbs run in a dry run;
mutating verbs that kubectl can rehearse are run with ``--dry-run=server`` (the API server
validates and admits the change without persisting it); the others are only planned.
The tables below were checked against ``kubectl <verb> --help`` of kubectl v1.32.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path
from typing import Any

from pydantic import field_validator

from ..format.model import KubernetesConnection
from .base import ENVIRONMENT, Effect, Executor, Options, Result, StepContext
from .shell import command_result

# kubectl's words for a cluster it cannot use (its own messages: matched loosely, case-insensitive)
_UNREACHABLE = re.compile(r"context .* (?:was )?not found|unable to connect to the server|connection refused|"
                          r"no such host|i/o timeout|certificate|x509|the server has asked for the client to "
                          r"provide credentials|you must be logged in|no configuration has been provided", re.I)

Args = list[str | int | float] | str


class KubectlOptions(Options):
    args: Args
    connection: str | None = None
    stdin: str | None = None
    kubectl: str = "kubectl"

    @field_validator("args")
    @classmethod
    def _splits(cls, value: Args) -> Args:
        # an unbalanced quote is a load-time error with a location, not a failure mid-run
        if isinstance(value, str):
            try:
                split_args(value)
            except ValueError as exc:
                raise ValueError(f"cannot split the kubectl arguments: {exc}") from None
        return value


# ---------------------------------------------------------------- the verb tables

# Global flags that take their value as the next argv item (``kubectl options``); needed to
# find the verb in ``kubectl -n prod --context x get pods``.
GLOBAL_VALUE_FLAGS = frozenset({
    "--as", "--as-group", "--as-uid", "--cache-dir", "--certificate-authority", "--client-certificate",
    "--client-key", "--cluster", "--context", "--kubeconfig", "--log-flush-frequency", "-n",
    "--namespace", "--password", "--profile", "--profile-output", "--request-timeout", "-s",
    "--server", "--tls-server-name", "--token", "--user", "--username", "-v", "--v", "--vmodule",
})

# Verbs that only read. A verb with sub-commands is listed as "verb sub".
READ_VERBS = frozenset({
    "get", "describe", "logs", "top", "explain", "version", "api-resources", "api-versions",
    "cluster-info", "diff", "wait", "events", "kustomize", "completion", "options", "help",
    "rollout status", "rollout history", "auth can-i", "auth whoami", "apply view-last-applied",
    "config view", "config get-contexts", "config get-clusters", "config get-users",
    "config current-context", "plugin list",
})

# Mutating verbs that accept ``--dry-run=server`` in kubectl v1.32 (verified with --help).
# ``rollout restart/pause/resume``, ``edit``, ``exec``, ``cp``, ``attach``, ``debug``,
# ``port-forward``, ``proxy``, ``certificate`` and ``create token`` do not: they are planned.
DRY_RUN_VERBS = frozenset({
    "apply", "apply set-last-applied", "patch", "scale", "set", "create", "delete", "annotate",
    "label", "replace", "rollout undo", "drain", "cordon", "uncordon", "taint", "expose",
    "autoscale", "run", "auth reconcile",
})
NO_DRY_RUN = frozenset({"create token", "apply edit-last-applied"})

# Verbs whose meaning depends on the sub-command; an unknown sub-command is a write.
GROUP_VERBS = frozenset({"rollout", "auth", "config", "set", "certificate", "plugin", "apply", "create"})


def _positionals(argv: list[str]) -> list[str]:
    """The non-flag items before ``--``, skipping the values of global flags that take one."""
    out: list[str] = []
    skip = False
    for item in argv:
        if skip:
            skip = False
            continue
        if item == "--":
            break
        if item.startswith("-"):
            skip = "=" not in item and item in GLOBAL_VALUE_FLAGS
            continue
        out.append(item)
    return out


def command_of(argv: list[str]) -> str:
    """The kubectl command an argv runs: ``get``, ``rollout status``, ``set`` or "" (none)."""
    words = _positionals(argv)
    if not words:
        return ""
    verb = words[0]
    if verb in GROUP_VERBS and len(words) > 1:
        return f"{verb} {words[1]}"
    return verb


def classify(argv: list[str]) -> tuple[Effect, bool]:
    """(effect, whether ``--dry-run=server`` can rehearse it) for an argv without the binary."""
    command = command_of(argv)
    verb = command.split(" ", 1)[0]
    if command in READ_VERBS or (verb in READ_VERBS and verb not in GROUP_VERBS):
        return Effect.READ, False
    if command in NO_DRY_RUN:
        return Effect.WRITE, False
    # ``set image``, ``create deployment`` and ``apply -f x`` (whose "sub-command" is a file
    # name) are rehearsable through their verb; ``rollout undo`` only as a whole.
    rehearsable = command in DRY_RUN_VERBS or (verb in DRY_RUN_VERBS and verb in GROUP_VERBS)
    return Effect.WRITE, rehearsable


def sets_namespace(argv: list[str]) -> bool:
    """Whether the args choose a namespace themselves (``-n x``, ``--namespace=x``, ``-A``)."""
    for item in argv:
        if item == "--":
            return False
        if (item in ("-n", "--namespace", "-A", "--all-namespaces") or item.startswith("--namespace=")
                or item.startswith("--all-namespaces=") or (item.startswith("-n") and not item.startswith("--"))):
            return True
    return False


# ---------------------------------------------------------------- template-aware splitting

_TEMPLATE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)


def split_args(text: str) -> list[str]:
    """``shlex.split`` that keeps each ``{{ ... }}`` whole, to be rendered after the split."""
    blocks: list[str] = []

    def hide(m: re.Match[str]) -> str:
        blocks.append(m.group(0))
        return f"\x00{len(blocks) - 1}\x00"

    hidden = _TEMPLATE.sub(hide, text)
    return [re.sub(r"\x00(\d+)\x00", lambda m: blocks[int(m.group(1))], item) for item in shlex.split(hidden)]


def raw_args(options: KubectlOptions) -> list[str]:
    if isinstance(options.args, str):
        return split_args(options.args)
    return [str(a) for a in options.args]


def _text(value: Any) -> str:
    from ..format.expressions import to_text

    return to_text(value)


# ---------------------------------------------------------------- the executor


class KubectlExecutor(Executor):
    knows_effect = True  # the method / verb / op says whether it writes
    name = "kubectl"
    main_option = "args"
    Options = KubectlOptions
    connection_kinds = ("kubernetes",)
    result_fields = ("rc", "stdout", "stderr", "json")

    def effect(self, options: KubectlOptions) -> Effect:
        # Judged on the unrendered args: a verb that is itself a template is unknown, so a write.
        return classify(raw_args(options))[0]

    def argv(self, options: KubectlOptions, ctx: StepContext) -> list[str]:
        # each item rendered alone: whatever a value holds, it stays one argv item
        args = [_text(ctx.render(item)) for item in raw_args(options)]
        flags: list[str] = []
        conn = _connection(options, ctx)
        if conn is not None:
            # a setting that renders empty (an unset param) is unset, not an empty flag
            kubeconfig = _text(ctx.render(conn.kubeconfig)) if conn.kubeconfig else ""
            context = _text(ctx.render(conn.context)) if conn.context else ""
            namespace = _text(ctx.render(conn.namespace)) if conn.namespace else ""
            if kubeconfig:
                path = Path(kubeconfig).expanduser()
                flags += ["--kubeconfig", str(path if path.is_absolute() else ctx.workdir / path)]
            if context:
                flags += ["--context", context]
            if namespace and not sets_namespace(args):
                flags += ["--namespace", namespace]
        binary = _text(ctx.render(options.kubectl))
        if "/" in binary and not Path(binary).expanduser().is_absolute():
            binary = str(ctx.workdir / binary)  # relative to the procedure file, as `file:` paths are
        return [str(Path(binary).expanduser()) if "/" in binary else binary, *flags, *args]

    def describe(self, options: KubectlOptions, ctx: StepContext) -> str:
        try:
            argv = self.argv(options, ctx)
        except ValueError as exc:  # an ambiguous connection: show the args, execute says why
            argv = ["kubectl", *(_text(ctx.render(item)) for item in raw_args(options))]
            return ctx.redact(f"{shlex.join(argv)}  # {exc}")
        return ctx.redact(shlex.join(argv))

    def execute(self, options: KubectlOptions, ctx: StepContext) -> Result:
        return self._run(self.argv(options, ctx), options, ctx)

    def rehearse(self, options: KubectlOptions, ctx: StepContext) -> Result | None:
        argv = self.argv(options, ctx)
        # judged again on the rendered args: a templated verb is known now
        # (a verb that renders to a read verb is still only planned: effect() said write)
        effect, rehearsable = classify(argv[1:])
        if effect == Effect.READ or not rehearsable:
            return None
        # before any "--": after it, words belong to the container's command, and a flag there
        # would leave kubectl to apply the change for real
        cut = argv.index("--") if "--" in argv else len(argv)
        res = self._run([*argv[:cut], "--dry-run=server", *argv[cut:]], options, ctx)
        if res.ok:
            res.note = "rehearsed with --dry-run=server: the API server accepted it; nothing was applied"
        return res

    def _run(self, argv: list[str], options: KubectlOptions, ctx: StepContext) -> Result:
        from ..transports.local import run_local

        binary = argv[0]
        if shutil.which(binary) is None:
            return Result(False, {}, f"kubectl not found: {binary!r} (set the 'kubectl' option to its path)",
                          error_kind=ENVIRONMENT)
        env = {k: _text(ctx.render(v)) for k, v in ctx.env.items()}
        stdin = _text(ctx.render(options.stdin)).encode() if options.stdin is not None else None
        res = run_local(argv, cwd=ctx.workdir, env=env, deadline=ctx.deadline, cancel=ctx.cancel,
                        stdin=stdin, spool_dir=ctx.log_dir, on_output=ctx.on_output)
        result = command_result(res, ctx, "kubectl", "kubectl")
        if not result.ok and result.error_kind is None and _UNREACHABLE.search(str(result.fields.get("stderr") or "")):
            result.error_kind = ENVIRONMENT  # no such context, no cluster answering: not the data
        return result


def _connection(options: KubectlOptions, ctx: StepContext) -> KubernetesConnection | None:
    """The step's kubernetes connection; none at all is fine (kubectl's own current context)."""
    if options.connection is None and not any(c.kind == "kubernetes" for c in ctx.connections.values()):
        return None
    _, conn = ctx.connection(options.connection, ("kubernetes",))
    return conn
