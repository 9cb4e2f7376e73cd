"""Compiled templates are kept by Jinja2's bytecode cache (engine/format/expressions.py): a
later process loads them instead of compiling, per quoting mode, and errors read as before."""

from __future__ import annotations

import errno
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from jinja2 import Environment

from engine.format import expressions as ex


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """As a new process: no environment, no compiled template in memory; the cache in tmp_path."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def forget() -> None:
        ex.environment.cache_clear()
        ex._compiled_template.cache_clear()

    forget()
    yield tmp_path
    forget()


def _cached(folder: Path, mode: str) -> list[Path]:
    return sorted(folder.glob(f"_jinja2-cache-*/__runproc_{mode}_*.cache"))


def test_a_template_compiled_once_is_loaded_by_the_next_process(fresh: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    ns = {"params": {"dir": "/srv/app one"}}
    assert ex.render("rm -rf {{ params.dir }}/cache", ns, "shell") == "rm -rf '/srv/app one'/cache"
    assert len(_cached(fresh, "shell")) == 1
    ex.environment.cache_clear()
    ex._compiled_template.cache_clear()

    def no_compiling(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("compiled again")

    monkeypatch.setattr(Environment, "compile", no_compiling)
    assert ex.render("rm -rf {{ params.dir }}/cache", ns, "shell") == "rm -rf '/srv/app one'/cache"
    assert ex.render("rm -rf {{ params.dir }}/cache", {"params": {"dir": "x;y"}}, "shell") == "rm -rf 'x;y'/cache"


def test_each_quoting_keeps_its_own_compiled_code(fresh: Path) -> None:
    # a constant is quoted at compile time (finalize folds it): shell and text must not share
    for _ in range(2):
        assert ex.render("echo {{ 'a b' }}", {}, "shell") == "echo 'a b'"
        assert ex.render("echo {{ 'a b' }}", {}, "text") == "echo a b"
        ex._compiled_template.cache_clear()
    assert len(_cached(fresh, "shell")) == 1 and len(_cached(fresh, "text")) == 1


def test_a_broken_template_reads_as_it_did_without_the_cache(fresh: Path) -> None:
    with pytest.raises(ex.ExpressionError) as caught:
        ex.render("echo {{ params.x ", {"params": {"x": 1}}, "shell")
    message = str(caught.value)
    # the template's text is its name for the cache: it must not come back as a "File" to read
    assert message.startswith("template error: ") and 'File "' not in message and "echo" not in message


def test_a_value_never_becomes_a_template(fresh: Path) -> None:
    # no loader: include/import/extends of a value find nothing to compile
    ns = {"params": {"name": "{{ vars.token }}"}, "vars": {"token": "s3cr3t-value"}}
    for source in ("hello {% include params.name %}", "{% import params.name as m %}x",
                   "{% extends params.name %}"):
        with pytest.raises(ex.ExpressionError) as caught:
            ex.render(source, ns, "text")
        assert "s3cr3t-value" not in str(caught.value)


def test_a_cache_that_cannot_be_written_is_no_cache(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", disk_full)  # how Jinja2 writes an entry
    assert ex.render("echo {{ params.x }}", {"params": {"x": "a b"}}, "shell") == "echo 'a b'"
    assert _cached(fresh, "shell") == []
