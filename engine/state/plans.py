"""Saved plans: ``runproc FILE --dry-run --save-plan PLAN`` writes one, ``runproc apply PLAN`` runs it.

A plan is a JSON file holding what a reviewer approved: the dry run's steps and their
rendered actions, the params and run options that shaped them, and a fingerprint (SHA-256)
of every file the run reads its definition from: the procedure, the child procedures it
names, the inventory and its group_vars/host_vars. ``apply`` refuses when a fingerprint no
longer matches, and the runner refuses to execute an action that renders otherwise than
the plan showed (``Run.expected_actions``, checked in ``StepRunner.departure_from_plan``).

This module only uses the standard library at import time: the CLI imports it for
``--save-plan`` and ``apply`` alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError
from .fingerprints import child_file

if TYPE_CHECKING:
    from ..execution.results import RunResult, StepResult
    from ..execution.scheduler import Run
    from ..format.model import Body, Procedure, Step

PLAN_FORMAT = "runproc-plan"
PLAN_VERSION = 1
# params declared `secret: true` are kept as a salted, slow hash: enough to tell that apply was
# given the same value, without a plan file turning into a cheap dictionary attack on it
_SECRET_ITERATIONS = 100_000
# template parts whose value is only known when the real run starts: the run's id and start
# time, whether it is a dry run, the clock. An action using them cannot be fixed by a plan.
_TEMPLATE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
_RUN_VALUES = re.compile(r"(?<![\w.])now\s*\(|(?<![\w.])run\s*(?:\.\s*(?!procedure\b|dir\b)[A-Za-z_]|\[)")
_VAR_NAME = re.compile(r"\bvars\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*['\"]([^'\"]+)['\"]\s*\])")




class PlanError(InvalidInputError):
    """The plan file cannot be used: unreadable, not JSON, not a plan, another format version."""


# ---------------------------------------------------------------- secret params


def hash_secret(value: Any, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", _canonical(value), salt, _SECRET_ITERATIONS)
    return f"pbkdf2-sha256${_SECRET_ITERATIONS}${salt.hex()}${digest.hex()}"


def secret_matches(stored: str, value: Any) -> bool:
    try:
        scheme, iterations, salt, digest = stored.split("$")
        if scheme != "pbkdf2-sha256":
            return False
        again = hashlib.pbkdf2_hmac("sha256", _canonical(value), bytes.fromhex(salt), int(iterations))
    except ValueError:
        return False
    import hmac

    return hmac.compare_digest(again.hex(), digest)


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, default=str).encode()


# ---------------------------------------------------------------- what a plan fixes


def uses_run_values(body: Body, proc: Procedure) -> bool:
    """Whether a body's action renders values known only once the real run starts (``now()``,
    ``run.id``, ``run.started_at``, ``run.dry_run``), directly or through ``vars``."""
    if body.action is None:
        return False
    texts = list(_strings(_dump(body.action.options)))
    seen: set[str] = set()
    while texts:
        for part in _TEMPLATE.findall(texts.pop()):
            if _RUN_VALUES.search(part):
                return True
            for m in _VAR_NAME.finditer(part):
                name = m.group(1) or m.group(2)
                if name not in seen and name in proc.vars:
                    seen.add(name)
                    texts.extend(_strings(proc.vars[name]))
    return False


def _dump(options: Any) -> Any:
    dump = getattr(options, "model_dump", None)
    return dump() if dump is not None else options


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def known(action: str | None) -> bool:
    """A fully rendered action: no unknown value, nothing that failed to render."""
    return (action is not None and "<unknown:" not in action
            and not action.startswith(("<depends on ", "<cannot render", "<cannot describe")))


def _step_entries(proc: Procedure | None, results: Mapping[str, StepResult]) -> list[dict[str, Any]]:
    out = []
    for sid, sr in results.items():
        step = _find_step(proc, sid)
        entry: dict[str, Any] = {"id": sid, "phase": sr.phase, "status": sr.status, "action": sr.description,
                                 "notes": list(sr.notes)}
        if sr.error:
            entry["error"] = sr.error
        if sr.rollback_action is not None:
            entry["rollback_action"] = sr.rollback_action
        variant = step is not None and uses_run_values(step, proc)  # type: ignore[arg-type]
        entry["fixed"], why = _fixed(sr.phase, sr.status, sr.description, sr.notes, variant)
        if sr.hosts is not None:
            entry["fixed"] = False
            entry["hosts"] = {}
            for host, hsr in sr.hosts.items():
                fixed, hwhy = _fixed(sr.phase, hsr.status, hsr.description, hsr.notes, variant)
                entry["hosts"][host] = {"status": hsr.status, "action": hsr.description, "fixed": fixed}
                if hwhy:
                    entry["hosts"][host]["not_fixed"] = hwhy
                entry["fixed"] = entry["fixed"] or fixed
            why = None if entry["fixed"] else "no host's action is known"
            if sr.loop:
                entry["loop"] = True
        if why:
            entry["not_fixed"] = why
        children = sr.fields.get("steps") if step is not None and step.action is not None \
            and step.action.kind == "procedure" else None
        if isinstance(children, Mapping):
            entry["steps"] = _child_entries(_child_proc(step, proc), children)
        out.append(entry)
    return out


def _child_entries(proc: Procedure | None, children: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A child procedure's steps as its parent's result holds them (as templates see them)."""
    out = []
    for sid, view in children.items():
        if not isinstance(view, Mapping):
            continue
        step = _find_step(proc, sid)
        action = view.get("action")
        status = str(view.get("status"))
        entry: dict[str, Any] = {"id": sid, "status": status, "action": action}
        if view.get("hosts"):
            # a child's fanned-out step keeps one action for all its hosts: not held per host
            entry["fixed"], entry["not_fixed"] = False, "a child procedure's fanned-out step"
        elif proc is None or step is None:
            entry["fixed"], entry["not_fixed"] = False, "the child procedure could not be read"
        else:
            # a child's notes are not in its parent's result, so why it was skipped is not
            # known here: a skipped child step is not held to anything
            fixed, why = _fixed("step", status, action, [], uses_run_values(step, proc))
            entry["fixed"] = fixed
            if why:
                entry["not_fixed"] = why
        grandchildren = view.get("steps")
        if isinstance(grandchildren, Mapping) and step is not None:
            entry["steps"] = _child_entries(_child_proc(step, proc), grandchildren)
        out.append(entry)
    return out


def _fixed(phase: str, status: str, action: str | None, notes: list[str], variant: bool) -> tuple[bool, str | None]:
    """(fixed, why not): whether apply holds the step to this plan entry."""
    if phase == "on_failure":
        return False, "on_failure steps are not planned"
    if status == "skipped":
        if any(n.startswith("when false") for n in notes):
            return True, None  # with no action: the plan showed it not acting, so it must not act
        return False, "skipped in the plan"
    if not known(action):
        return False, "its action is known only at run time"
    if variant:
        return False, "its action renders now() or run.* values, known only at run time"
    return True, None


def _find_step(proc: Procedure | None, sid: str) -> Step | None:
    if proc is None:
        return None
    try:
        return proc.step(sid)
    except KeyError:
        return None


def _child_proc(step: Step | None, proc: Procedure | None) -> Procedure | None:
    if step is None or proc is None:
        return None
    path = child_file(step, proc.workdir)
    if path is None:
        return None
    from ..errors import ProcedureError
    from ..format.loader import load

    try:
        return load(path)
    except ProcedureError:
        return None


def expected_actions(plan: Mapping[str, Any]) -> dict[str, str | None]:
    """``Run.expected_actions`` from a plan's steps: the fixed ones, keyed as the runner looks them up."""
    out: dict[str, str | None] = {}

    def walk(entries: list[dict[str, Any]], prefix: str) -> None:
        for e in entries:
            key = prefix + e["id"]
            hosts = e.get("hosts")
            if hosts:
                for host, h in hosts.items():
                    if h.get("fixed"):
                        out[f"{key}@{host}"] = h.get("action")
                if e.get("loop") and e.get("fixed"):
                    # a loop's items can change after the plan (an upstream result): an iteration
                    # the plan did not list is held to this, which no action reads, so it is refused
                    out[key] = f"<only the iterations the plan listed: {', '.join(map(str, hosts))}>"
            elif e.get("fixed"):
                out[key] = e.get("action") if e.get("status") != "skipped" else None
            if e.get("steps"):
                walk(e["steps"], key + "/")

    walk(plan["steps"], "")
    return out


# ---------------------------------------------------------------- writing and reading


def build(run: Run, result: RunResult, *, inventory: str | None, files: dict[str, dict[str, Any]],
          warnings: list[str], cwd: str) -> dict[str, Any]:
    """The plan document for a finished dry run (``result``) of ``run``."""
    from ..execution.journal import now_iso
    from ..execution.store import user_name

    proc = run.proc
    params: dict[str, Any] = {}
    secret_params: dict[str, str | None] = {}
    for name, value in run.params.items():
        spec = proc.params.get(name)
        if spec is not None and spec.secret:
            secret_params[name] = None if value is None else hash_secret(value)
        else:
            params[name] = value
    # every text of the steps goes through the run's redactor once more, as reports do (not the
    # whole document: a secret of three characters could be found inside a hex digest)
    steps = _redact(_step_entries(proc, result.steps), result.redact)
    return {
        "format": PLAN_FORMAT, "version": PLAN_VERSION,
        "created_at": now_iso(), "created_by": f"{user_name()}@{socket.gethostname()}",
        "runproc_version": _version(), "cwd": cwd,
        "procedure": {"name": proc.procedure, "path": str(proc.path)},
        "files": files, "not_fingerprinted": warnings,
        "params": params, "secret_params": secret_params,
        "options": {"inventory": inventory, "only": sorted(run.only), "limit": run.limit,
                    "no_rollback": run.no_rollback, "forks": run.forks},
        "dry_run": {"run_id": result.run_id, "status": result.status, "exit_code": result.exit_code,
                    "offline": result.offline, "started_at": result.started_at},
        "steps": steps,
    }


def _version() -> str:
    from ..version import __version__

    return __version__


def _redact(value: Any, redact: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, redact) for v in value]
    return value


def write(path: str | Path, plan: Mapping[str, Any]) -> None:
    """Write atomically (a reviewer never sees half a plan), readable by its owner only:
    it holds rendered commands and the hashes of secret params."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(plan, f, indent=2, default=str)
            f.write("\n")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "procedure": dict, "files": dict, "params": dict, "secret_params": dict, "options": dict, "steps": list,
    "cwd": str,
}


def read(path: str | Path) -> dict[str, Any]:
    """A plan file, checked enough that apply can trust its shape; PlanError otherwise."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"{path}: cannot read the plan: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        plan = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(f"{path}: not a plan (invalid JSON at line {exc.lineno}: {exc.msg})") from None
    if not isinstance(plan, dict) or plan.get("format") != PLAN_FORMAT:
        raise PlanError(f"{path}: not a runproc plan (write one with runproc FILE --dry-run --save-plan {path})")
    if plan.get("version") != PLAN_VERSION:
        raise PlanError(f"{path}: plan format version {plan.get('version')!r} is not supported "
                        f"(this runproc reads version {PLAN_VERSION}); save the plan again")
    for key, kind in _REQUIRED.items():
        if not isinstance(plan.get(key), kind):
            raise PlanError(f"{path}: malformed plan: {key!r} is missing or not a {_kind(kind)}")
    if not isinstance(plan["procedure"].get("path"), str):
        raise PlanError(f"{path}: malformed plan: 'procedure.path' is missing")
    for file, entry in plan["files"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str | None):
            raise PlanError(f"{path}: malformed plan: files[{file!r}] has no sha256")
    if not _steps_ok(plan["steps"]):
        raise PlanError(f"{path}: malformed plan: every step needs an 'id' and a string or null 'action'")
    return plan


def _steps_ok(steps: Any) -> bool:
    if not isinstance(steps, list):
        return False
    for e in steps:
        if not isinstance(e, dict) or not isinstance(e.get("id"), str) or not isinstance(e.get("action"), str | None):
            return False
        hosts = e.get("hosts")
        if hosts is not None and not (isinstance(hosts, dict) and all(
                isinstance(h, dict) and isinstance(h.get("action"), str | None) for h in hosts.values())):
            return False
        if e.get("steps") is not None and not _steps_ok(e["steps"]):
            return False
    return True


def _kind(kind: type | tuple[type, ...]) -> str:
    return {dict: "mapping", list: "list", str: "string"}.get(kind, "value")  # type: ignore[call-overload]


def params_problem(plan: dict[str, Any], proc: Any, given: set[str]) -> str | None:
    """Why the params given to ``apply`` cannot be used with this plan, or None."""
    secret = plan["secret_params"]
    fixed = sorted(n for n in given if n not in secret)
    if fixed and fixed[0] not in plan["params"]:
        return f"unknown param {fixed[0]!r}: the plan's procedure declares no such param"
    if fixed:
        return (f"param {fixed[0]!r} is fixed by the plan (it was planned with "
                f"{fixed[0]}={plan['params'].get(fixed[0])!r}); to change it, save a new plan. "
                "Only params declared secret: true are given again")
    for name, stored in secret.items():
        spec = proc.params.get(name)
        if stored is not None and name not in given and (spec is None or spec.default is None):
            return (f"param {name!r} is secret: the plan keeps only a hash of it; give it again with "
                    f"-p {name}=VALUE or --params-file")
    return None
