"""Ansible's Jinja2 in runproc's names: ``{{ version }}`` is ``{{ params.version }}``.

Both speak Jinja2, so an expression keeps its shape; what changes is where names live.
Ansible has one flat namespace (play vars, extra vars, registered results, facts, magic
variables); runproc has ``params``, ``secrets``, ``steps``, ``host``, ``env`` and a loop's
``item``. The rewrite works on Jinja's own token stream, so strings, attributes
(``x.stdout``), filter and test names and keyword arguments are never mistaken for
variables, and the text between the names is kept as it was written.

What has no runproc counterpart (facts, ``hostvars``, ``groups``, most lookups, filters
and tests runproc does not ship) raises ``Untranslatable``: the task becomes a
``# TODO(import)`` placeholder rather than a step that means something else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from jinja2 import Environment
from jinja2.exceptions import TemplateSyntaxError

from ..errors import InvalidInputError


class Untranslatable(InvalidInputError):
    """A task, or a value in it, that has no faithful runproc translation; the text says why.

    Caught per task (the task becomes a TODO); in the error tree as input runproc cannot take."""


# Jinja's own names, and those a template defines for itself
_BUILTIN_NAMES = frozenset({"true", "false", "none", "True", "False", "None", "range", "dict", "lipsum",
                            "cycler", "joiner", "namespace", "loop", "self", "caller", "varargs", "kwargs"})
# Ansible's magic variables with a runproc counterpart inside a step with ``on:``
_HOST_NAMES = {"inventory_hostname": "host.name", "inventory_hostname_short": "host.name.split('.')[0]",
               "ansible_host": "host.address", "ansible_port": "host.port", "ansible_user": "host.user",
               "group_names": "host.groups"}
# Ansible tests on a registered result, as the step statuses they stand for
_RESULT_TESTS = {"failed": ("failed", "timed_out"), "failure": ("failed", "timed_out"),
                 "succeeded": ("ok",), "success": ("ok",), "successful": ("ok",),
                 "skipped": ("skipped",), "skip": ("skipped",),
                 # runproc does not track "changed": a step that ran and succeeded is the closest
                 "changed": ("ok",), "change": ("ok",)}
# filters renamed on the way; ``mandatory`` is what runproc's strict undefined does anyway
_FILTER_RENAMES = {"to_nice_json": "to_json", "d": "default"}
_DROPPED_FILTERS = frozenset({"mandatory"})
_BOOL_TRUE = "('true', 'yes', 'on', '1', 'y')"


@cache
def _runproc_names() -> tuple[frozenset[str], frozenset[str]]:
    """The filters and tests runproc's sandbox knows (Jinja's own and runproc's additions)."""
    from ..format.expressions import environment

    env = environment("text")
    return frozenset(env.filters), frozenset(env.tests)


@dataclass
class Registered:
    """A registered Ansible result: the step it became and how its fields are named there."""

    step: str
    fields: dict[str, str] = field(default_factory=dict)  # Ansible field -> runproc expression suffix
    # the step ran on every host of a pattern: its result is one per host (steps.x.hosts[NAME])
    fanned: bool = False


@dataclass
class Scope:
    """What names mean at one place of the playbook."""

    params: set[str] = field(default_factory=set)
    secrets: set[str] = field(default_factory=set)
    vars: set[str] = field(default_factory=set)  # play vars kept as vars: (templates, mappings)
    registered: dict[str, Registered] = field(default_factory=dict)
    loop_var: str | None = None  # the item's name inside a loop (``item`` unless renamed)
    on_hosts: bool = False  # inside a step with ``on:``: host.* is available
    # called for a free name with no definition in the playbook (an extra var, an inventory
    # var) and whether it is optional there (``x is defined``, ``x | default(...)``): returns
    # its runproc spelling, usually a new param
    unknown: Callable[[str, bool], str] | None = None
    # names read so far (params and secrets), so the caller can declare them
    used: set[str] = field(default_factory=set)


_env = Environment()


def _tokens(source: str) -> list[tuple[str, str]]:
    try:
        return [(kind, value) for _, kind, value in _env.lex(source)]
    except TemplateSyntaxError as exc:
        raise Untranslatable(f"Jinja syntax error in {source!r}: {exc.message}") from None


def _significant(tokens: list[tuple[str, str]], i: int, step: int) -> int:
    """Index of the next (step=1) or previous (step=-1) token that is not whitespace, or -1."""
    i += step
    while 0 <= i < len(tokens):
        if tokens[i][0] != "whitespace":
            return i
        i += step
    return -1


def template(text: str, scope: Scope) -> str:
    """A template string (``{{ }}`` among text) with its names moved to runproc's."""
    if "{{" not in text and "{%" not in text:
        return text
    return _rewrite(text, scope)


def expression(text: str, scope: Scope) -> str:
    """A bare expression (``when``, ``that``, ``until``) with its names moved to runproc's.

    Ansible accepts ``when: "{{ x }}"`` (with a warning): the braces are dropped.
    """
    text = text.strip()
    if text.startswith("{{") and text.endswith("}}") and text.count("{{") == 1:
        text = text[2:-2].strip()
    out = _rewrite("{{ " + text + " }}", scope)
    return out[3:-3]


def _rewrite(source: str, scope: Scope) -> str:
    filters, tests = _runproc_names()
    tokens = _tokens(source)
    local: set[str] = set()
    out: list[str] = []
    i = 0
    while i < len(tokens):
        kind, value = tokens[i]
        if kind != "name":
            out.append(value)
            i += 1
            continue
        prev = _significant(tokens, i, -1)
        nxt = _significant(tokens, i, 1)
        prev_value = tokens[prev][1] if prev >= 0 else ""
        next_value = tokens[nxt][1] if nxt >= 0 else ""
        # a name after `.` is an attribute, before `=` inside a call a keyword argument
        if prev_value == ".":
            out.append(value)
            i += 1
            continue
        if prev_value == "|":
            i = _filter(tokens, i, value, filters, out)
            continue
        before_not = _significant(tokens, prev, -1) if prev_value == "not" else -1
        if prev_value == "is" or (before_not >= 0 and tokens[before_not][1] == "is"):
            if value not in tests:
                raise Untranslatable(f"the Jinja test '{value}' has no runproc counterpart")
            out.append(value)
            i += 1
            continue
        if next_value == "=" and tokens[nxt][0] == "operator":
            out.append(value)
            i += 1
            continue
        if value in ("for", "set") and prev >= 0 and tokens[prev][0] == "block_begin":
            # {% for a, b in ... %} and {% set a = ... %}: names the template defines
            j = nxt
            while j >= 0 and tokens[j][1] not in ("in", "=", "%}"):
                if tokens[j][0] == "name":
                    local.add(tokens[j][1])
                j = _significant(tokens, j, 1)
            out.extend(v for _, v in tokens[i:j])
            i = j
            continue
        if value in ("if", "else", "elif", "endif", "endfor", "in", "not", "and", "or", "is", "endset",
                     "recursive", "with", "endwith") or value in local or value in _BUILTIN_NAMES:
            out.append(value)
            i += 1
            continue
        i = _variable(tokens, i, value, scope, tests, out)
    return "".join(out)


def _filter(tokens: list[tuple[str, str]], i: int, name: str, filters: frozenset[str], out: list[str]) -> int:
    if name in _DROPPED_FILTERS:
        # drop `| mandatory` with the `|` before it
        while out and out[-1].strip() in ("", "|"):
            if out.pop().strip() == "|":
                break
        return i + 1
    if name == "bool":
        # Ansible's `| bool` reads yes/true/on/1 as true; a comparison does the same here
        out.append(f"string | lower in {_BOOL_TRUE}")
        return i + 1
    name = _FILTER_RENAMES.get(name, name)
    if name not in filters:
        raise Untranslatable(f"the Jinja filter '{name}' has no runproc counterpart")
    out.append(name)
    return i + 1


def _variable(tokens: list[tuple[str, str]], i: int, name: str, scope: Scope, tests: frozenset[str],
              out: list[str]) -> int:
    """A free variable: its runproc spelling; returns the index after what was consumed."""
    if name == "lookup" or name == "query" or name == "q":
        return _lookup(tokens, i, name, out)
    if scope.loop_var is not None and name == scope.loop_var:
        out.append(name)
        return i + 1
    if name in _HOST_NAMES:
        if not scope.on_hosts:
            raise Untranslatable(f"'{name}' names the host a task runs on, and this step runs on no inventory host")
        out.append(_HOST_NAMES[name])
        return i + 1
    if name in scope.registered:
        return _registered(tokens, i, scope.registered[name], scope, out)
    if name in scope.secrets:
        scope.used.add(name)
        out.append(f"secrets.{name}")
        return i + 1
    if name in scope.vars:
        out.append(f"vars.{name}")
        return i + 1
    if name in scope.params:
        scope.used.add(name)
        out.append(f"params.{name}")
        return i + 1
    if name in ("hostvars", "groups", "ansible_facts", "play_hosts", "ansible_play_hosts", "omit",
                "ansible_play_batch", "playbook_dir", "role_path", "ansible_check_mode") or \
            name.startswith(("ansible_", "facter_", "ohai_")):
        raise Untranslatable(f"'{name}' is an Ansible fact or magic variable with no runproc counterpart")
    if scope.unknown is None:
        raise Untranslatable(f"'{name}' is not defined in the playbook")
    return _maybe_undefined(tokens, i, name, scope, out)


def _maybe_undefined(tokens: list[tuple[str, str]], i: int, name: str, scope: Scope, out: list[str]) -> int:
    """A variable the playbook may leave undefined (``x is defined``, ``x | default('a')``) is an
    optional param: unset, it is none, and the test or the default reads that."""
    assert scope.unknown is not None
    j = _significant(tokens, i, 1)
    nxt = tokens[j][1] if j >= 0 else ""
    k = _significant(tokens, j, 1) if j >= 0 else -1
    after = tokens[k][1] if k >= 0 else ""
    if nxt == "is":
        negate = after == "not"
        m = _significant(tokens, k, 1) if negate else k
        test = tokens[m][1] if m >= 0 else ""
        if test in ("defined", "undefined"):
            ref = scope.unknown(name, True)
            unset = (test == "undefined") != negate
            if ref.startswith("secrets."):  # an optional secret that is not set is ''
                out.append(f"{ref} {'==' if unset else '!='} ''")
            else:
                out.append(f"{ref} is {'none' if unset else 'not none'}")
            return m + 1
    if nxt == "|" and after in ("default", "d"):
        ref = scope.unknown(name, True)
        open_ = _significant(tokens, k, 1)
        if open_ >= 0 and tokens[open_][1] == "(":
            depth, end, commas = 0, open_, 0
            for end in range(open_, len(tokens)):
                value = tokens[end][1]
                depth += value in ("(", "[", "{")
                depth -= value in (")", "]", "}")
                commas += value == "," and depth == 1
                if depth == 0:
                    break
            inner = "".join(v for _, v in tokens[open_ + 1:end])
            rewritten = _rewrite("{{ " + inner + " }}", scope)[3:-3] if inner.strip() else "''"
            # default(x, true): an unset param is none, which default() alone would keep
            out.append(f"{ref} | default({rewritten}{'' if commas else ', true'})")
            return end + 1
    out.append(scope.unknown(name, False))
    return i + 1


def _lookup(tokens: list[tuple[str, str]], i: int, name: str, out: list[str]) -> int:
    """``lookup('env', 'HOME')`` is ``env.HOME``; other lookups read the controller's files,
    passwords, templates... at run time and are not translated."""
    j = _significant(tokens, i, 1)
    args: list[tuple[str, str]] = []
    if j >= 0 and tokens[j][1] == "(":
        k = _significant(tokens, j, 1)
        while k >= 0 and tokens[k][1] != ")":
            if tokens[k][1] != ",":
                args.append(tokens[k])
            k = _significant(tokens, k, 1)
        if (len(args) == 2 and all(kind == "string" for kind, _ in args)
                and args[0][1][1:-1] == "env" and args[1][1][1:-1].isidentifier()):
            out.append(f"env.{args[1][1][1:-1]}")
            return k + 1
        what = args[0][1] if args else "?"
        raise Untranslatable(f"{name}({what}, ...) reads the controller at run time; runproc has no such lookup")
    raise Untranslatable(f"'{name}' used as a value")


def _registered(tokens: list[tuple[str, str]], i: int, reg: Registered, scope: Scope, out: list[str]) -> int:
    """``r.stdout`` is ``steps.r.stdout``; renamed fields and result tests are mapped. A result
    registered on every host is read for the host at hand (``steps.r.hosts[host.name]``)."""
    ref = f"steps.{reg.step}"
    if reg.fanned:
        if not scope.on_hosts:
            raise Untranslatable(f"'{tokens[i][1]}' holds one result per host, read here where no host is at "
                                 f"hand: name one (steps.{reg.step}.hosts['HOST'])")
        ref = f"steps.{reg.step}.hosts[host.name]"
    j = _significant(tokens, i, 1)
    # `r is failed` / `r is not skipped`: the step's status
    if j >= 0 and tokens[j][1] == "is":
        k = _significant(tokens, j, 1)
        negate = k >= 0 and tokens[k][1] == "not"
        if negate:
            k = _significant(tokens, k, 1)
        if k >= 0 and tokens[k][1] in _RESULT_TESTS:
            statuses = _RESULT_TESTS[tokens[k][1]]
            out.append(f"{ref}.status {'not in' if negate else 'in'} {_tuple(statuses)}")
            return k + 1
    if j >= 0 and tokens[j][1] == ".":
        k = _significant(tokens, j, 1)
        if k >= 0 and tokens[k][0] == "name":
            attr = tokens[k][1]
            if attr in _RESULT_TESTS and attr in ("failed", "skipped", "changed"):
                out.append(f"({ref}.status in {_tuple(_RESULT_TESTS[attr])})")
                return k + 1
            if attr in reg.fields:
                suffix = reg.fields[attr]
                # "__LIST__": the field is a list of the one value (k8s_info of a named object)
                out.append(f"[{ref}{suffix[8:]}]" if suffix.startswith("__LIST__") else f"{ref}{suffix}")
                return k + 1
    out.append(ref)
    return i + 1


def _tuple(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(repr(v) for v in values) + ("," if len(values) == 1 else "") + ")"
