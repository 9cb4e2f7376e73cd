"""Semantic checks after the schema: ids, needs, cycles, connections, expressions and names."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from ..errors import Problem
from . import expressions as ex
from . import graph
from .analysis import Reference, analyse
from .loops import loop_scope, loop_sources, refused_loop_scope
from .model import Body, Check, Procedure, Step
from .suggest import did_you_mean
from .window import WindowError, parse_window
from .yamlsrc import Path_, Source

JINJA_GLOBALS = frozenset({"range", "dict", "lipsum", "cycler", "joiner", "namespace", "true", "false",
                           "none", "True", "False", "None"})


class _Scope:
    """What names an expression may use where it stands."""

    def __init__(self, *, steps: set[str] | None, self_id: str | None = None, upstream_of: str | None = None,
                 host: bool = False, result: bool = False) -> None:
        self.loop: Any = None  # a loop step's item (loops.LoopScope); None outside loops
        self.steps = steps or set()
        self.self_id = self_id
        self.upstream_of = upstream_of
        self.host = host
        self.host_why: str | None = None  # why host is undefined here, when it is not the usual reason
        self.result = result


@dataclass
class Lenience:
    """What the schema pass refused and the loader repaired; problems that follow from it
    were already reported, so the semantic pass does not report them again."""

    roots: set[str] = field(default_factory=set)  # params/vars/secrets/connections not readable
    steps: set[str] = field(default_factory=set)  # step ids that were themselves invalid
    needs: set[tuple[str, int]] = field(default_factory=set)  # (section, index) with invalid needs
    connections: set[str] = field(default_factory=set)  # connections that failed validation


def check_semantics(proc: Procedure, source: Source, lenience: Lenience | None = None) -> list[Problem]:
    lenience = lenience or Lenience()
    problems: list[Problem] = []
    sections = [("steps", proc.steps), ("finally", proc.finally_), ("on_failure", proc.on_failure)]
    seen: dict[str, Path_] = {}
    for section, steps in sections:
        for i, step in enumerate(steps):
            if step.id in seen:
                problems.append(source.problem((section, i, "id"), f"{section}[{i}]: duplicate step id "
                                               f"{step.id!r} (first at line {source.where(seen[step.id])[0]})"))
            else:
                seen[step.id] = (section, i, "id")
    dag: graph.Dag | None = None
    for section, steps in sections:
        built = _check_needs(section, steps, {s.id for s in proc.steps}, source, lenience, problems)
        if section == "steps":
            dag = built
    problems.extend(_check_connections(proc, source, lenience))
    if proc.window_times:
        base: tuple[Any, ...] = ("window",) if isinstance(proc.window, str | list) else ("window", "times")
        times = proc.window if isinstance(proc.window, str | list) else proc.window.times  # type: ignore[union-attr]
        # a list is checked item by item, so that a problem points at the window it is about
        for where, text in ([((*base, i), t) for i, t in enumerate(times)] if isinstance(times, list)
                            else [(base, times)]):
            try:
                parse_window(text)
            except WindowError as exc:
                problems.append(source.problem(where, f"window: {exc}"))
    problems.extend(_check_expressions(proc, source, dag, lenience))
    if any(s.loops or s.as_ or s.concurrency or "fail_fast" in s.model_fields_set for s in proc.all_steps()):
        from .loops import check_loops

        problems.extend(check_loops(proc, source))
    if proc.notify or proc.escalate or any(s.notify for s in proc.all_steps()):
        from .notifications import check_notifications

        problems.extend(check_notifications(proc, source, lenience.roots))
    return problems


def _check_needs(section: str, steps: list[Step], main_ids: set[str], source: Source, lenience: Lenience,
                 problems: list[Problem]) -> graph.Dag | None:
    """Unknown ids and cycles in one section; its DAG when the section is sound."""
    ids = {s.id for s in steps}
    if len(ids) < len(steps):
        return None  # duplicate ids (reported above) make every edge ambiguous
    for i, step in enumerate(steps):
        for j, need in enumerate(step.needs or []):
            if need not in ids:
                if need in lenience.steps:
                    continue
                where = "" if section == "steps" else f" in {section}"
                hint = None
                if need in main_ids and section != "steps":
                    hint = f"{section} steps run after all the main steps; 'needs' orders steps within {section}"
                problems.append(source.problem((section, i, "needs", j), f"{section}[{i}]: needs unknown "
                                               f"step {need!r}{where}{did_you_mean(need, ids)}", hint=hint))
    needs = graph.declared_needs(steps)
    position = {s.id: i for i, s in enumerate(steps)}
    cycles = graph.find_cycles(needs, position)
    for cycle in cycles:  # every cycle at once; graph.build would stop at the first
        shown = cycle if len(cycle) <= 12 else [*cycle[:5], f"... ({len(cycle) - 10:,} more)", *cycle[-5:]]
        problems.append(source.problem(
            (section, position[cycle[0]], "needs"), f"{section}: dependency cycle: {' -> '.join(shown)}",
            hint="each step needs the next one; a step without 'needs' needs the step before it"))
    if cycles or any(s == section for s, _ in lenience.needs):
        return None  # an upstream check against a wrong graph would only add noise
    return graph.build(steps, needs)


def _check_connections(proc: Procedure, source: Source, lenience: Lenience) -> list[Problem]:
    from .. import executors

    out: list[Problem] = []
    for path, body in _bodies(proc):
        action = body.action
        if action is None:
            continue
        cls = executors.get_executor(action.kind)
        if not cls.connection_kinds:
            continue  # a plugin's own 'connection' option (a URL, say) is not one of ours
        name = getattr(action.options, "connection", None)
        if name is None and cls().uses_connection(action.options) and "connection" in type(action.options).model_fields:
            kinds = [n for n, c in proc.connections.items() if c.kind in cls.connection_kinds]
            if len(kinds) > 1:
                out.append(source.problem(path, f"{_label(path)}: {action.kind} needs 'connection:' here: "
                                          f"{len(kinds)} connections fit ({', '.join(kinds)})"))
            continue
        if not isinstance(name, str) or ex.is_template(name):
            continue  # a templated name is checked when rendered
        opt_path = getattr(action, "paths", {}).get("connection", path)
        if name in lenience.connections or "connections" in lenience.roots:
            continue  # its own problem was reported
        if name not in proc.connections:
            out.append(source.problem(opt_path, f"{_label(path)}: unknown connection {name!r}"
                                      f"{did_you_mean(name, proc.connections)}"))
        elif cls.connection_kinds and proc.connections[name].kind not in cls.connection_kinds:
            out.append(source.problem(opt_path, f"{_label(path)}: connection {name!r} is "
                                      f"{proc.connections[name].kind}; {action.kind} needs "
                                      f"{' or '.join(cls.connection_kinds)}"))
    return out


def _label(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _bodies(proc: Procedure) -> Iterator[tuple[Path_, Body]]:
    for i, check in enumerate(proc.preconditions):
        yield ("preconditions", i), check
    for section, steps in (("steps", proc.steps), ("finally", proc.finally_), ("on_failure", proc.on_failure)):
        for i, step in enumerate(steps):
            yield from _step_bodies((section, i), step)


def _step_bodies(path: Path_, step: Step) -> Iterator[tuple[Path_, Body]]:
    yield path, step
    for nested in ("preconditions", "verify"):
        for j, check in enumerate(getattr(step, nested)):
            yield (*path, nested, j), check
    if step.rollback is not None:
        yield (*path, "rollback"), step.rollback


# ---------------------------------------------------------------- expressions


def _strings(value: Any, path: Path_) -> Iterator[tuple[Path_, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k, (*path, k)) if isinstance(k, str) and ex.is_template(k) else iter(())
            yield from _strings(v, (*path, k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _strings(v, (*path, i))


def body_sources(body: Body, path: Path_) -> Iterator[tuple[Path_, str, bool, bool]]:
    """(path, text, is_expression, uses_result) for every expression and template in a body."""
    from .. import executors

    if body.name and ex.is_template(body.name):
        yield (*path, "name"), body.name, False, False
    for k, v in body.env.items():
        if isinstance(v, str) and ex.is_template(v):
            yield (*path, "env", k), v, False, False
    if body.retry and body.retry.until:
        yield (*path, "retry", "until"), body.retry.until, True, True
    if isinstance(body, Check) and body.expect:
        yield (*path, "expect"), body.expect, True, True
    if isinstance(body, Step) and body.when:
        yield (*path, "when"), body.when, True, False
    if isinstance(body, Step) and body.on and ex.is_template(body.on):
        yield (*path, "on"), body.on, False, False
    action = body.action
    if action is None:
        return
    cls = executors.get_executor(action.kind)
    paths: dict[str, Path_] = getattr(action, "paths", {})
    options = action.options
    for opt in options.model_fields_set:  # only what the author wrote can hold a template
        value = getattr(options, opt)
        if isinstance(value, BaseModel):
            value = value.model_dump()
        base = paths.get(opt, path)
        as_expression = opt in cls.expression_options
        for p, text in _strings(value, base):
            if as_expression:
                yield p, text, True, False
            elif ex.is_template(text):
                yield p, text, False, False


def _check_expressions(proc: Procedure, source: Source, dag: graph.Dag | None,
                       lenience: Lenience) -> list[Problem]:
    problems: list[Problem] = []
    main_ids = {s.id for s in proc.steps}
    var_order = {name: i for i, name in enumerate(proc.vars)}

    def check(path: Path_, text: str, expression: bool, scope: _Scope, refs_out: set[str] | None) -> None:
        analysis = analyse(text, expression=expression)
        if analysis.error:
            line, col = source.where_in_text(path, analysis.error_line)
            problems.append(Problem(source.file, line, col, f"{_label(path)}: {analysis.error}"))
            return
        for ref in analysis.references:
            msg = _reference_problem(ref, proc, scope, dag, var_order, path, lenience)
            if msg:
                line, col = source.where(path)
                problems.append(Problem(source.file, line, col, f"{_label(path)}: {msg}"))
            elif ref.root == "steps" and ref.name and refs_out is not None:
                refs_out.add(ref.name)

    for name, value in proc.vars.items():
        for p, text in _strings(value, ("vars", name)):
            if ex.is_template(text):
                check(p, text, False, _Scope(steps=None), None)
    for name, conn in proc.connections.items():
        paths = conn.__dict__.get("_paths", {})
        for opt, value in conn.model_dump(exclude_defaults=True).items():
            for p, text in _strings(value, paths.get(opt, ("connections", name))):
                if ex.is_template(text):
                    check(p, text, False, _Scope(steps=None), None)
    if proc.inventory and ex.is_template(proc.inventory):
        check(("inventory",), proc.inventory, False, _Scope(steps=None), None)
    for i, c in enumerate(proc.preconditions):
        for p, text, expression, uses_result in body_sources(c, ("preconditions", i)):
            check(p, text, expression, _Scope(steps=None, result=uses_result), None)
    for section, steps in (("steps", proc.steps), ("finally", proc.finally_), ("on_failure", proc.on_failure)):
        earlier: set[str] = set()
        for i, step in enumerate(steps):
            refs: set[str] = set()
            undo_refs: set[str] = set()  # what only the rollback uses: the action does not wait on it
            host = step.on is not None
            loop = None
            if step.loops:  # the items' expressions: checked as the step's, without the item
                loop = loop_scope(step)
                for p, text, expression in loop_sources(step, (section, i)):
                    scope = (_Scope(steps=main_ids, upstream_of=step.id, host=host) if section == "steps"
                             else _Scope(steps=main_ids | earlier, host=host))
                    check(p, text, expression, scope, refs)
            for path, body in _step_bodies((section, i), step):
                in_self = path != (section, i) and path[2] in ("verify", "rollback")
                collect = undo_refs if path != (section, i) and path[2] == "rollback" else refs
                for p, text, expression, uses_result in body_sources(body, path):
                    # a fanned-out step's own when: and on: are decided once, before its hosts
                    decided_once = host and p in ((section, i, "when"), (section, i, "on"))
                    if section == "steps":
                        scope = _Scope(steps=main_ids, self_id=step.id if in_self else None,
                                       upstream_of=step.id, host=host and not decided_once, result=uses_result)
                    else:
                        scope = _Scope(steps=main_ids | earlier | ({step.id} if in_self else set()),
                                       host=host and not decided_once, result=uses_result)
                    scope.loop = loop
                    if decided_once:
                        scope.host_why = (f"'host' is not defined in '{p[-1]}:': it is decided once for the "
                                          "step, before it runs on its hosts (to skip some hosts, choose them "
                                          "with 'on:' or --limit, or test the host in the command)")
                    check(p, text, expression, scope, collect)
            if refs:  # most steps read no step: no empty set for each (2 MB in 10,000 steps)
                proc._references[step.id] = refs
            earlier.add(step.id)
    return problems


def _raw_step(source: Source, section: str, i: Any) -> Any:
    steps = source.data.get(section) if isinstance(source.data, dict) else None
    return steps[i] if isinstance(steps, list) and isinstance(i, int) and i < len(steps) else None


def _branch_hint(proc: Procedure, step_id: str, dag: graph.Dag) -> str:
    """Explain the implicit chain when it ends at a `needs: []` that started a new branch."""
    chain = [step_id]
    step = proc.step(step_id)
    while step.needs is None and dag.needs.get(step.id):
        step = proc.step(dag.needs[step.id][0])
        chain.append(step.id)
    if len(chain) > 1 and step.needs == []:
        waits = " -> ".join(chain)
        return (f" ({waits}: each waits only for the step above it, and {step.id!r} has needs: [], "
                "so it starts a new branch)")
    return ""


def _reference_problem(ref: Reference, proc: Procedure, scope: _Scope, dag: graph.Dag | None,
                       var_order: dict[str, int], path: Path_, lenience: Lenience) -> str | None:
    root, name = ref.root, ref.name
    if root in JINJA_GLOBALS:
        return None
    if scope.loop is not None or root == "item" or root not in ex.ROOT_NAMES:
        from .loops import reference_problem

        loop = scope.loop
        if loop is None and len(path) > 1 and proc._source is not None:
            # a name no scope has: was it the item of a loop the schema refused (and reported)?
            loop = refused_loop_scope(_raw_step(proc._source, str(path[0]), path[1]))
        handled, problem = reference_problem(ref, loop, ex.ROOT_NAMES)
        if handled:
            return problem
    if root not in ex.ROOT_NAMES:
        return f"unknown name {root!r}{did_you_mean(root, ex.ROOT_NAMES)}"
    if name is None or root in lenience.roots or (root == "steps" and name in lenience.steps):
        return None
    if root == "params" and name not in proc.params:
        return f"undeclared param {name!r}{did_you_mean(name, proc.params)}"
    if root == "vars":
        if name not in var_order:
            return f"unknown var {name!r}{did_you_mean(name, var_order)}"
        if path[0] == "vars" and var_order[name] >= var_order[path[1]]:
            # vars are rendered in file order, each seeing the ones before it
            return f"var {name!r} is not declared before this one"
    if root == "secrets" and name not in proc.secrets:
        return f"undeclared secret {name!r}{did_you_mean(name, proc.secrets)}"
    if root == "run" and name not in ex.RUN_FIELDS:
        return f"run has no field {name!r}{did_you_mean(name, ex.RUN_FIELDS)}"
    if root == "host":
        if not scope.host:
            return scope.host_why or "'host' is only defined in a step with 'on:' (a fanned-out step)"
        if name not in ex.HOST_FIELDS:
            return f"host has no field {name!r}{did_you_mean(name, ex.HOST_FIELDS)}"
    if root == "result" and not scope.result:
        return "'result' is only defined in 'expect' and 'until', where it is the result of the action checked"
    if root == "steps":
        if not scope.steps:
            return "no step results exist here (it runs before any step)"
        if name not in scope.steps:
            return f"unknown step {name!r}{did_you_mean(name, scope.steps)}"
        if scope.upstream_of and name != scope.self_id and dag is not None:
            if name == scope.upstream_of:
                return f"a step cannot use its own result here (steps.{name})"
            if not dag.is_upstream(name, scope.upstream_of):
                message = (f"uses steps.{name} but does not (transitively) need it; its value would "
                           f"depend on timing: add {name!r} to 'needs'")
                return message + _branch_hint(proc, scope.upstream_of, dag)
    return None
