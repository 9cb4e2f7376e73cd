"""The located YAML reader: YAML 1.2 scalars, positions, anchors, and what it refuses."""

from __future__ import annotations

import math

import pytest

from engine.errors import ProcedureError
from engine.format.yamlsrc import parse_text


def data(text: str) -> object:
    return parse_text(text, "f.yml").data


@pytest.mark.parametrize(("text", "value"), [
    ("true", True), ("false", False), ("True", True), ("FALSE", False),
    ("yes", "yes"), ("no", "no"), ("on", "on"), ("off", "off"), ("y", "y"),  # YAML 1.1 booleans
    ("null", None), ("~", None), ("", None),
    ("12", 12), ("-3", -3), ("+4", 4), ("0", 0), ("0o17", 15), ("0x1F", 31),
    ("0755", "0755"), ("08", "08"),  # neither octal (1.1) nor silently decimal (1.2)
    ("1_000", "1_000"), ("1:30", "1:30"),  # YAML 1.1 underscores and sexagesimal
    ("1.5", 1.5), ("1e3", 1000.0), (".5", 0.5), ("-.inf", -math.inf),
    ("2024-01-01", "2024-01-01"),  # no timestamps
    ("hello", "hello"), ("0b101", "0b101"),
])
def test_plain_scalars_follow_yaml_12_core(text: str, value: object) -> None:
    got = data(f"k: {text}\n")["k"]  # type: ignore[index]
    assert got == value and type(got) is type(value)


def test_quoted_and_block_scalars_are_strings() -> None:
    assert data("a: '12'\nb: \"true\"\nc: |\n  1\nd: >\n  x\n") == {"a": "12", "b": "true", "c": "1\n", "d": "x\n"}


def test_explicit_tags() -> None:
    assert data("a: !!str 12\nb: !!int '3'\nc: !!float 1\nd: ! 5\n") == {"a": "12", "b": 3, "c": 1.0, "d": "5"}
    with pytest.raises(ProcedureError, match="f.yml:1:4: unsupported YAML tag '!vault'"):
        data("a: !vault xyz\n")
    with pytest.raises(ProcedureError, match="'x' is not a valid 'tag:yaml.org,2002:int'"):
        data("a: !!int x\n")


def test_keys_stay_names() -> None:
    # `on:` and `yes:` are YAML 1.1 booleans; here they are the keys they look like
    assert data("on: 1\nyes: 2\nnull: 3\n1.5: 4\n7: 5\n") == {"on": 1, "yes": 2, "null": 3, "1.5": 4, 7: 5}


def test_positions_of_values_and_keys() -> None:
    src = parse_text("a:\n  - x\n  - {b: 1, c: [2, 3]}\nd: |\n  line one\n  line two\n", "f.yml")
    assert src.where(("a",)) == (2, 3)
    assert src.where(("a", 1, "c", 1)) == (3, 19)
    assert src.where(("a", 1, "c"), key=True) == (3, 12)
    assert src.where(("a", 1, "zzz")) == (3, 5)  # unknown: nearest parent
    assert src.where_in_text(("d",), 2) == (6, 3)  # literal block lines map one to one


def test_duplicate_keys_are_all_reported() -> None:
    with pytest.raises(ProcedureError) as info:
        data("a: 1\nb: 2\na: 3\nc:\n  x: 1\n  x: 2\n")
    assert [str(p) for p in info.value.problems] == [
        "f.yml:3:1: duplicate key 'a' (first defined at line 1) (hint: YAML keeps only one of them; remove or rename one)",
        "f.yml:6:3: duplicate key 'x' (first defined at line 5) (hint: YAML keeps only one of them; remove or rename one)",
    ]


def test_aliases_share_and_merge() -> None:
    d = data("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\nl: [*b, *b]\nmany:\n  <<: [{p: 1}, {p: 2, q: 2}]\n")
    assert d["m"] == {"x": 1, "y": 3}  # type: ignore[index]
    assert d["l"][0] is d["l"][1] is d["base"]  # type: ignore[index]
    assert d["many"] == {"p": 1, "q": 2}  # type: ignore[index]  # the first listed wins
    with pytest.raises(ProcedureError, match="a merge key '<<' takes a mapping"):
        data("a:\n  <<: 5\n")


def test_collections_as_keys_are_refused() -> None:
    with pytest.raises(ProcedureError, match="f.yml:1:3: mapping keys must be plain scalars"):
        data("? [a]\n: 1\n")



def test_a_collection_value_after_a_collection_key_is_not_taken_for_a_key() -> None:
    src = parse_text("? {steps: {x: [1, 2]}}\n: {steps: 9}\nsteps: [a, {b: c}]\n", "f.yml", keep_going=True)
    assert src.data == {"steps": ["a", {"b": "c"}]}
    assert [str(p) for p in src.problems] == ["f.yml:1:3: mapping keys must be plain scalars"]
    assert src.where(("steps",)) == (3, 8) and src.where(("steps", 1, "b")) == (3, 16)
