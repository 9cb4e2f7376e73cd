"""The DAG: implicit needs, file-order ties, every cycle with its path, upstream checks."""

from __future__ import annotations

import random
from graphlib import CycleError

import pytest

from engine.format import graph
from engine.format.model import Step


def steps(spec: dict[str, list[str] | None]) -> list[Step]:
    return [Step(id=k, needs=v) for k, v in spec.items()]


def test_absent_needs_is_the_previous_step_and_empty_is_none() -> None:
    assert graph.declared_needs(steps({"a": None, "b": None, "c": [], "d": ["a", "a"]})) == {
        "a": [], "b": ["a"], "c": [], "d": ["a"]}


def test_order_breaks_ties_by_file_position() -> None:
    dag = graph.build(steps({"z": [], "y": [], "x": ["y", "z"], "w": []}))
    assert dag.order == ["z", "y", "x", "w"]
    assert dag.dependents() == {"z": ["x"], "y": ["x"], "x": [], "w": []}


def test_build_reports_a_cycle_with_its_path() -> None:
    with pytest.raises(CycleError) as info:
        graph.build(steps({"a": ["c"], "b": None, "c": None}))
    assert info.value.args == ("a -> c -> b -> a", ["a", "c", "b", "a"])


def test_find_cycles_reports_each_component_once() -> None:
    needs = {"a": ["b"], "b": ["a"], "c": ["c"], "d": ["e"], "e": ["f"], "f": ["d", "e"], "g": []}
    position = {k: i for i, k in enumerate(needs)}
    assert graph.find_cycles(needs, position) == [["a", "b", "a"], ["c", "c"], ["d", "e", "f", "d"]]


def test_long_chain_without_recursion() -> None:
    n = 50_000
    needs = {f"s{i}": [f"s{i - 1}"] if i else [] for i in range(n)}
    position = {k: i for i, k in enumerate(needs)}
    assert graph.find_cycles(needs, position) == []
    needs["s0"] = [f"s{n - 1}"]
    [cycle] = graph.find_cycles(needs, position)
    assert len(cycle) == n + 1


def test_upstream_bitsets_agree_with_walking() -> None:
    rng = random.Random(7)
    ids = [f"s{i}" for i in range(60)]
    spec: dict[str, list[str] | None] = {}
    for i, sid in enumerate(ids):
        spec[sid] = rng.sample(ids[:i], k=min(i, rng.randint(0, 3))) if rng.random() < 0.8 else None
    dag = graph.build(steps(spec))
    for a in ids:
        for b in ids:
            assert dag.is_upstream(a, b) == dag._walk(a, b), (a, b)
    assert not dag.is_upstream("s1", "s1")
    assert not dag.is_upstream("nope", "s1")
