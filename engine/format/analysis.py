"""Static analysis of expressions and templates: syntax, filters and tests that exist, and the
names a template reads (``steps.<id>``, ``params.<name>``), without rendering anything."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from jinja2 import TemplateSyntaxError, nodes

from .expressions import _Environment, environment, is_template


@dataclass(frozen=True)
class Reference:
    root: str
    name: str | None  # the first attribute or constant key, when static


@dataclass(frozen=True)
class Analysis:
    roots: frozenset[str]
    references: tuple[Reference, ...]
    error: str | None = None
    error_line: int = 1  # 1-based, within the analysed text


# A template made only of ``{{ }}`` tags is analysed tag by tag, each tag cached: a large
# procedure repeats the same few expressions (``{{ params.env }}``) inside text that differs
# from step to step, and parsing 10,000 distinct templates whole costs seconds.
_TAG = re.compile(r"\{\{.*?\}\}", re.S)
# Names a template binds for itself: loop bodies see ``loop``, macros ``caller``/``varargs``/``kwargs``.
_IMPLICIT = frozenset({"loop", "caller", "varargs", "kwargs"})


def analyse(source: str, *, expression: bool) -> Analysis:
    """Parse without rendering: syntax, unknown filters/tests, and the names used.

    An expression (``when``, ``expect``, ``until``, ``assert``) is parsed exactly as
    ``compile_expression`` will at run time, so what passes here also compiles there.
    """
    if expression:
        return _analyse_expression(source)
    if "{%" in source or "{#" in source:
        return _analyse_template(source)
    tags = _TAG.findall(source)
    if len(tags) != source.count("{{"):
        return _analyse_template(source)  # an unclosed tag: let the full parse say where
    roots: set[str] = set()
    refs: dict[Reference, None] = {}
    for tag in tags:
        part = _analyse_tag(tag)
        if part.error:
            # the whole parse gives the right line, and a "}}" inside a string literal may
            # have cut this tag short where Jinja's lexer would not
            return _analyse_template(source)
        roots |= part.roots
        refs.update(dict.fromkeys(part.references))
    return Analysis(frozenset(roots), tuple(refs))


# The common tag, ``{{ steps.build.stdout | trim }}``: a name, attributes or constant keys,
# argument-less filters. Read by a regular expression instead of Jinja's lexer and parser,
# which cost ~100 us a tag (a 10,000-step file with a distinct tag per step spent a second
# there). Anything else, or any doubt, goes to the real parser.
_SIMPLE_TAG = re.compile(
    r"\{\{-?\s*([A-Za-z_][A-Za-z0-9_]*)"
    r"((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\s*(?:'[^'\\]*'|\"[^\"\\]*\"|[0-9]+)\s*\])*)"
    r"((?:\s*\|\s*[A-Za-z_][A-Za-z0-9_]*)*)\s*-?\}\}")
_FIRST_ACCESS = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*(?:'([^']*)'|\"([^\"]*)\"|[0-9]+)\s*\]")
# Words Jinja's parser reads as literals or operators, never as a variable
_NOT_NAMES = frozenset({"true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is",
                        "if", "else", "recursive"})


# 2,048 entries: the few tags and expressions a file repeats stay cached; one per step (a
# 10,000-step file reading each step's predecessor) would otherwise keep 10,000 analyses,
# 5 MB of an 80 MB validate, to save a regular-expression match each.
@lru_cache(maxsize=2048)
def _analyse_tag(tag: str) -> Analysis:
    m = _SIMPLE_TAG.fullmatch(tag)
    if m is None or m.group(1) in _NOT_NAMES:
        return _analyse_template(tag)
    known = environment("text").filters
    if any(name not in known for name in m.group(3).replace("|", " ").split()):
        return _analyse_template(tag)  # the parser words the error
    root = m.group(1)
    first = _FIRST_ACCESS.match(m.group(2))
    name: str | None = None  # a bare name, or an integer key first
    if first is not None:
        name = next((g for g in first.groups() if g is not None), None)
    return Analysis(frozenset({root}), (Reference(root, name),))


@lru_cache(maxsize=2048)
def _analyse_expression(source: str) -> Analysis:
    from jinja2.parser import Parser

    env = environment("text")
    try:
        parser = Parser(env, source, state="variable")
        tree = parser.parse_expression()
        if not parser.stream.eos:
            token = parser.stream.current
            return Analysis(frozenset(), (), f"syntax error: unexpected {token.value!r} after the expression",
                            token.lineno)
    except TemplateSyntaxError as exc:
        return Analysis(frozenset(), (), f"syntax error: {exc.message}", exc.lineno or 1)
    return _walk(tree, env)


@lru_cache(maxsize=16384)
def _analyse_template(source: str) -> Analysis:
    env = environment("text")
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as exc:
        return Analysis(frozenset(), (), f"syntax error: {exc.message}", exc.lineno or 1)
    return _walk(tree, env)


def _walk(tree: nodes.Node, env: _Environment) -> Analysis:
    """One pass over the tree: names read, names bound, attribute roots, filters and tests.

    ``jinja2.meta.find_undeclared_variables`` would run the code generator's frame analysis,
    ten times the cost of this walk; binding is approximated per template (a name bound
    anywhere counts as bound everywhere), which can only hide a problem, never invent one.
    """
    loaded: set[str] = set()
    bound: set[str] = set()
    refs: dict[Reference, None] = {}
    stack: list[nodes.Node] = [tree]
    implicit = False
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is nodes.Name:
            (loaded if node.ctx == "load" else bound).add(node.name)
        elif kind is nodes.Getattr or kind is nodes.Getitem:
            target = node.node
            if type(target) is nodes.Name and target.ctx == "load":
                if kind is nodes.Getattr:
                    refs[Reference(target.name, node.attr)] = None
                elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                    refs[Reference(target.name, node.arg.value)] = None
                else:
                    refs[Reference(target.name, None)] = None
        elif kind is nodes.Filter or kind is nodes.Test:
            table = env.filters if kind is nodes.Filter else env.tests
            if node.name not in table:
                from .suggest import did_you_mean

                word = "filter" if kind is nodes.Filter else "test"
                return Analysis(frozenset(), (), f"no {word} named '{node.name}'"
                                f"{did_you_mean(node.name, table)}", node.lineno)
        elif kind in (nodes.For, nodes.Macro, nodes.CallBlock):
            implicit = True
        stack.extend(node.iter_child_nodes())
    if implicit:
        bound |= _IMPLICIT
    roots = loaded - bound
    out = [r for r in refs if r.root in roots]
    named = {r.root for r in out}
    out.extend(Reference(name, None) for name in sorted(roots - named))
    return Analysis(frozenset(roots), tuple(out))


def step_references(sources: Iterable[str]) -> set[str]:
    """Ids of steps named as ``steps.<id>`` in the given expressions/templates."""
    out: set[str] = set()
    for src in sources:
        for ref in analyse(src, expression=not is_template(src)).references:
            if ref.root == "steps" and ref.name:
                out.add(ref.name)
    return out


