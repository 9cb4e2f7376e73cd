"""The parts of runproc serve on their own: the layered layout of a graph, reading --bind and
telling loopback from the rest, the tokens file, the runs list's query, the catalogue."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.errors import InvalidInputError
from engine.web import dag, tokens
from engine.web.catalogue import Catalogue
from engine.web.data import BadQuery, parse_run_query, parse_since
from engine.web.server import Bind, is_loopback, parse_bind


def test_layers_follow_topological_generations_and_keep_children_under_parents() -> None:
    nodes = ["a", "b", "c", "d", "e", "f"]
    # a -> c, b -> d, c -> e, d -> e, b -> f: f's parent is on the right, so f goes right too
    edges = [("a", "c"), ("b", "d"), ("c", "e"), ("d", "e"), ("b", "f")]
    assert dag.layers(nodes, edges) == [["a", "b"], ["c", "d", "f"], ["e"]]
    crossing = [("b", "x"), ("a", "y")]
    assert dag.layers(["a", "b", "x", "y"], crossing) == [["a", "b"], ["y", "x"]]  # no crossing edges
    assert dag.layers(["a", "b"], [("a", "b"), ("b", "a")]) == [["a"], ["b"]]  # a cycle: one a row, in order


def test_a_drawing_places_boxes_row_by_row_and_draws_an_edge_per_need() -> None:
    nodes = [{"id": "a", "label": "A step with a very long name indeed", "status": "ok"},
             {"id": "b", "label": "b", "status": "failed"}, {"id": "c", "label": "c", "status": "skipped"}]
    drawing = dag.draw(nodes, [["a", "b"], ["a", "c"], ["a", "nowhere"]])
    boxes = {b.id: b for b in drawing.boxes}
    assert boxes["a"].y < boxes["b"].y == boxes["c"].y and boxes["b"].x < boxes["c"].x
    assert boxes["a"].label.endswith("\u2026") and len(boxes["a"].label) == dag.LABEL_CHARS
    assert boxes["a"].title == "A step with a very long name indeed (a): ok"
    assert len(drawing.edges) == 2 and all(re.fullmatch(r"M\d+,\d+ C[\d, ]+", d) for d in drawing.edges)
    assert drawing.width >= 2 * dag.WIDTH and drawing.height >= 2 * dag.HEIGHT
    column = dag.draw(nodes, [["a", "b"]], dependencies_known=False)
    assert [b.id for b in sorted(column.boxes, key=lambda b: b.y)] == ["a", "b", "c"] and column.edges == ()
    assert dag.draw([], []).boxes == ()


@pytest.mark.parametrize(("text", "bind"), [
    ("127.0.0.1:8480", Bind("127.0.0.1", 8480)), ("127.0.0.1", Bind("127.0.0.1", 8480)),
    ("[::1]:9000", Bind("::1", 9000)), ("[::1]", Bind("::1", 8480)), ("localhost:0", Bind("localhost", 0)),
    ("0.0.0.0:8480", Bind("0.0.0.0", 8480)),
])
def test_bind_is_read(text: str, bind: Bind) -> None:
    assert parse_bind(text) == bind


@pytest.mark.parametrize("text", ["127.0.0.1:65536", "127.0.0.1:", ":8480", "::1:8480", "[::1", "[::1]8480",
                                  "host:-1"])
def test_a_bad_bind_is_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInputError, match="--bind"):
        parse_bind(text)


def test_loopback_is_every_address_of_a_name_on_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.8.9.10") and is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("10.1.2.3")
    assert not is_loopback("192.0.2.7")  # only read, never reached
    assert str(Bind("::1", 80)) == "[::1]:80"


def test_the_tokens_file_keeps_hashes_and_refuses_what_it_cannot_trust(tmp_path: Path) -> None:
    path = tmp_path / "t.yml"
    first = tokens.add_token(path, "ann", "operator")
    second = tokens.add_token(path, "bo.b@ops", "viewer")
    book = tokens.load_tokens(path)
    assert [(t.name, t.role) for t in book.tokens] == [("ann", "operator"), ("bo.b@ops", "viewer")]
    assert book.match(first).name == "ann" and book.match(second).name == "bo.b@ops"  # type: ignore[union-attr]
    assert book.match(first + "x") is None and book.match("") is None and book.match(None) is None
    assert book.match("x" * 10_000) is None
    assert first not in path.read_text() and second not in path.read_text()
    assert tokens.load_tokens(None).configured is False
    path.write_text("")
    assert tokens.load_tokens(path).configured is False
    for text, words in [
        ("tokens: [", "not valid YAML"),
        ("- a\n- b\n", "a mapping"),
        ("tokens: []\nextra: 1\n", "a mapping"),
        ("tokens:\n  - name: a\n    role: viewer\n", "exactly name, role and sha256"),
        (f"tokens:\n  - name: 'a b'\n    role: viewer\n    sha256: {'0' * 64}\n", "name 'a b'"),
        (f"tokens:\n  - name: a\n    role: god\n    sha256: {'0' * 64}\n", "role 'god'"),
        ("tokens:\n  - name: a\n    role: viewer\n    sha256: rpt_abc\n", "64 hex digits"),
        (f"tokens:\n  - {{name: a, role: viewer, sha256: '{'0' * 64}'}}\n"
         f"  - {{name: a, role: operator, sha256: '{'1' * 64}'}}\n", "used twice"),
    ]:
        path.write_text(text)
        with pytest.raises(InvalidInputError, match=re.escape(words)) as caught:
            tokens.load_tokens(path)
        assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_the_runs_query_is_checked_and_turned_into_a_store_filter() -> None:
    q = parse_run_query({"procedure": " deploy ", "status": "failed", "user": "", "since": "2024-05-01",
                         "page": "3", "limit": "20"})
    f = q.store_filter()
    assert (f.procedure, f.status, f.user, f.since) == ("deploy", "failed", None, "2024-05-01T00:00:00.000Z")
    assert (f.limit, f.offset) == (21, 40)  # one more than a page: whether there is a next one
    assert q.link(4) == {"procedure": "deploy", "status": "failed", "since": "2024-05-01", "limit": "20",
                         "page": "4"}
    assert parse_run_query({}).store_filter().limit == 51
    with pytest.raises(BadQuery, match="unknown parameter"):
        parse_run_query({"sort": "asc"})
    assert parse_since("2024-05-01T14:00+02:00") == "2024-05-01T12:00:00.000Z"
    assert parse_since("2024-05-01T14:00Z") == "2024-05-01T14:00:00.000Z"
    assert parse_since("7d") < parse_since("12h") < parse_since("1m")
    with pytest.raises(BadQuery, match="since"):
        parse_since("99999999999d")


def test_the_catalogue_reads_a_changed_file_again_and_lists_an_invalid_one(tmp_path: Path) -> None:
    folder = tmp_path / "procs"
    (folder / "team").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    (folder / "one.yml").write_text("procedure: one\ndescription: first\nsteps:\n  - id: a\n    shell: 'true'\n")
    (folder / "team" / "two.yaml").write_text("procedure: two\nsteps:\n  - id: a\n    shell: 'true'\n")
    (folder / ".hidden" / "three.yml").write_text("procedure: three\nsteps:\n  - id: a\n    shell: 'true'\n")
    (folder / "bad.yml").write_text("procedure: Bad Name\nsteps: []\n")
    catalogue = Catalogue(folder)
    entries = {e.name: e for e in catalogue.entries()}
    assert set(entries) == {"one", "two", "bad"} and entries["bad"].ok is False and entries["bad"].problems >= 1
    assert entries["one"].description == "first" and entries["one"].kinds == {"a": "shell"}
    (folder / "one.yml").write_text("procedure: one\ndescription: second, longer\nsteps:\n  - id: a\n    shell: 'true'\n")
    assert catalogue.find("one").description == "second, longer"  # type: ignore[union-attr]
    assert catalogue.find("bad") is None and catalogue.find("nothing") is None
    assert catalogue.load(str(folder / "missing.yml")) is None
    assert Catalogue(None).entries() == [] and Catalogue(tmp_path / "gone").entries() == []
