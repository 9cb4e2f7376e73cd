"""Static analysis of expressions and templates: syntax, filters, and the names they use."""

from __future__ import annotations

import pytest

from engine.format.analysis import Reference, analyse, step_references


def refs(text: str, *, expression: bool = False) -> set[tuple[str, str | None]]:
    result = analyse(text, expression=expression)
    assert result.error is None, result.error
    return {(r.root, r.name) for r in result.references}


def test_names_in_templates() -> None:
    assert refs("echo {{ params.v }} {{ steps['b'].rc }} {{ vars.x | upper }}") == {
        ("params", "v"), ("steps", "b"), ("vars", "x")}
    assert refs("{{ env[name] }}") == {("env", None), ("name", None)}


def test_names_bound_by_the_template_are_not_roots() -> None:
    assert refs("{% for h in params.hosts %}{{ h }}{{ loop.index }}{% endfor %}") == {("params", "hosts")}
    assert refs("{% set x = vars.a %}{{ x }}") == {("vars", "a")}


def test_expressions_parse_as_compile_expression_does() -> None:
    assert refs("params.a and steps.b.rc == 0", expression=True) == {("params", "a"), ("steps", "b")}
    for bad in ["a ) or ( b", "a }} {{ b", "1 +", ""]:
        assert analyse(bad, expression=True).error, bad


@pytest.mark.parametrize(("text", "error", "line"), [
    ("one\ntwo {{ x | nofilter }}", "no filter named 'nofilter'", 2),
    ("{{ x is nottest }}", "no test named 'nottest'", 1),
    ("a\nb\n{{ x. }}", "syntax error: expected name or number", 3),
    ("echo {{ x", "syntax error: unexpected end of template, expected 'end of print statement'.", 1),
    ("{% if x %}", "syntax error: Unexpected end of template.", 1),
])
def test_errors_with_their_line(text: str, error: str, line: int) -> None:
    result = analyse(text, expression=False)
    assert result.error is not None and result.error.startswith(error)
    assert result.error_line == line


def test_tag_by_tag_analysis_equals_the_whole_parse() -> None:
    from engine.format.analysis import _analyse_template

    for text in ['a {{ "}}" ~ vars.x }} b {{ params.y }}', "{{ a }}{{ b.c }}\n{{ d['e'] }}", "x {{ '{{' }}"]:
        fast = analyse(text, expression=False)
        whole = _analyse_template(text)
        assert (fast.error, set(fast.references)) == (whole.error, set(whole.references)), text


@pytest.mark.parametrize("tag", [
    "{{ params.v }}", "{{steps.s12.rc}}", "{{- vars.x | trim -}}", "{{ x }}", "{{ steps['b'].x }}",
    '{{ steps["b"] }}', "{{ a[0].b }}", "{{ a[''] }}", "{{ true }}", "{{ none }}", "{{ x | nofilt }}",
    "{{ x|upper|lower }}", "{{ x.0 }}", "{{ if }}", "{{ a . b }}", "{{ x | default('a') }}", "{{ a.b['c'] }}",
])
def test_simple_tag_fast_path_equals_the_parser(tag: str) -> None:
    from engine.format.analysis import _analyse_tag, _analyse_template

    fast, whole = _analyse_tag(tag), _analyse_template(tag)
    assert (fast.error, fast.roots, set(fast.references)) == (whole.error, whole.roots, set(whole.references))


def test_step_references() -> None:
    assert step_references(["steps.a.rc == 0", "echo {{ steps.b.stdout }}", "params.x"]) == {"a", "b"}
    assert Reference("steps", "a") in analyse("steps.a", expression=True).references
