"""Plans that scale linearly (issue 14): structural checks, no timing.

A dry run asks, for every step, which writes upstream of it were only planned. That used to
walk all of a step's ancestors and scan the steps for each one met: O(n^3) for a chain. These
tests fail if the walk comes back (they count what is computed, never how long it takes),
and check that the plan says what the walk said: the same steps, nearest first, the same
count, for a chain, a wide fan-in and random graphs.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.execution import dryrun
from engine.execution.dryrun import PlannedUpstream
from engine.execution.events import StepFinished
from engine.format import graph

N = 200


def _write(tmp_path: Path, name: str, steps: list[tuple[str, bool, list[str]]]) -> Path:
    """A procedure of (id, is_write, needs) steps: a write is a shell step a dry run only plans,
    a read an ``assert`` the dry run executes (in-process, so the test spawns nothing)."""
    lines = [f"procedure: {name}", "steps:"]
    for i, (sid, write, needs) in enumerate(steps):
        lines.append(f"  - id: {sid}")
        lines.append("    shell: 'true'" if write else "    assert: 'true'")
        lines.append(f"    needs: [{', '.join(needs)}]")
        if write and i % 10 == 0:
            lines.append("    rollback: {shell: 'true'}")
    path = tmp_path / f"{name}.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def chain(n: int, read_every: int = 5) -> list[tuple[str, bool, list[str]]]:
    return [(f"s{i}", i % read_every != read_every - 1, [f"s{i - 1}"] if i else []) for i in range(n)]


def fan_in(n: int) -> list[tuple[str, bool, list[str]]]:
    return [*((f"s{i}", True, []) for i in range(n - 1)), ("last", False, [f"s{i}" for i in range(n - 1)])]


def random_dag(n: int, seed: int) -> list[tuple[str, bool, list[str]]]:
    rng = random.Random(seed)
    out: list[tuple[str, bool, list[str]]] = []
    for i in range(n):
        earlier = [sid for sid, _, _ in out]
        needs = rng.sample(earlier, k=min(i, rng.randint(0, 4)))
        out.append((f"s{i}", rng.random() < 0.6, needs))
    return out


def walked_note(steps: list[tuple[str, bool, list[str]]], step_id: str) -> str | None:
    """What the note said when every step walked its ancestors (the code this replaced)."""
    needs = {sid: n for sid, _, n in steps}
    writes = {sid for sid, write, _ in steps if write}
    seen: set[str] = set()
    planned: list[str] = []
    frontier = deque(needs[step_id])
    while frontier:
        node = frontier.popleft()
        if node in seen:
            continue
        seen.add(node)
        if node in writes:
            planned.append(node)
        frontier.extend(needs[node])
    if not planned:
        return None
    shown = ", ".join(planned[:3]) + (f" and {len(planned) - 3} more" if len(planned) > 3 else "")
    return f"ran against the current state; upstream {shown} {'was' if len(planned) == 1 else 'were'} only planned"


def _plan(path: Path) -> Any:
    return engine.plan(engine.load(path))


@pytest.mark.parametrize("shape", ["chain", "fan-in", "random-1", "random-2", "random-3"])
def test_a_plan_names_the_planned_upstream_steps_as_the_walk_did(tmp_path: Path, shape: str) -> None:
    steps = {"chain": lambda: chain(60), "fan-in": lambda: fan_in(40)}.get(
        shape, lambda: random_dag(80, int(shape[-1])))()
    result = _plan(_write(tmp_path, "shape", steps))
    assert result.status == "planned"
    assert list(result.steps) == [sid for sid, _, _ in steps]  # the report keeps the file order
    for sid, write, _ in steps:
        sr = result.steps[sid]
        if write:
            assert (sr.status, sr.notes) == ("planned", []), sid
        else:
            expected = walked_note(steps, sid)
            assert (sr.status, sr.notes) == ("ok", [expected] if expected else []), sid


def test_a_200_step_plan_builds_the_ancestor_sets_once_and_judges_each_write_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proc = engine.load(_write(tmp_path, "chain", chain(N)))
    counts = {"bitsets": 0, "changes_things": 0}
    bitsets, changes_things = graph.Dag._bitsets, dryrun.changes_things

    def counting_bitsets(self: graph.Dag) -> dict[str, int]:
        counts["bitsets"] += 1
        return bitsets(self)

    def counting_changes_things(step: Any) -> bool:
        counts["changes_things"] += 1
        return changes_things(step)

    monkeypatch.setattr(graph.Dag, "_bitsets", counting_bitsets)
    monkeypatch.setattr(dryrun, "changes_things", counting_changes_things)
    result = engine.plan(proc)
    assert result.status == "planned"
    assert result.steps[f"s{N - 1}"].notes == [walked_note(chain(N), f"s{N - 1}")]
    # the walk asked once per ancestor met: N*N/2 questions and N/5 walks of the chain
    assert counts == {"bitsets": 1, "changes_things": N - N // 5}


class CountingNeeds(dict[str, list[str]]):
    """``needs`` that counts the steps a walk expands."""

    def __init__(self, needs: dict[str, list[str]]) -> None:
        super().__init__(needs)
        self.expanded = 0

    def get(self, key: str, default: Any = None) -> Any:
        self.expanded += 1
        return super().get(key, default)


@pytest.mark.parametrize("shape", ["chain", "fan-in"])
def test_each_question_expands_a_handful_of_steps_not_the_ancestors(tmp_path: Path, shape: str) -> None:
    steps = chain(N, read_every=N + 1) if shape == "chain" else fan_in(N)  # every step a write
    proc = engine.load(_write(tmp_path, shape, steps))
    needs = CountingNeeds(graph.declared_needs(proc.steps))
    upstream = PlannedUpstream(proc.steps, needs)
    for step in proc.steps:
        upstream.note(step.id)
    needs.expanded = 0
    answers = {step.id: upstream.nearest(step.id, 3) for step in proc.steps}
    assert needs.expanded <= 4 * N  # the walk it replaced expanded N*N/2 in the chain
    last = proc.steps[-1].id
    if shape == "chain":
        assert answers[last] == ([f"s{N - 2}", f"s{N - 3}", f"s{N - 4}"], N - 1)
        assert answers["s1"] == (["s0"], 1)
    else:
        assert answers[last] == (["s0", "s1", "s2"], N - 1)
        assert answers["s5"] == ([], 0)
    assert answers["s0"] == ([], 0)


def test_a_read_below_unplanned_branches_is_found_without_walking_them(tmp_path: Path) -> None:
    # one write at the top, then a long readonly chain and a readonly branch: the answer for
    # the end of the chain is the write, found by walking the chain, not the branch
    steps = [("w", True, []), ("b0", False, []), *((f"b{i}", False, [f"b{i - 1}"]) for i in range(1, 50)),
             ("r0", False, ["w"]), ("end", False, ["r0", "b49"])]
    proc = engine.load(_write(tmp_path, "branches", steps))
    needs = CountingNeeds(graph.declared_needs(proc.steps))
    upstream = PlannedUpstream(proc.steps, needs)
    upstream.note("w")
    needs.expanded = 0
    assert upstream.nearest("end", 3) == (["w"], 1)
    assert needs.expanded <= 3  # end, r0, w: the 50 steps of the branch are not entered


@pytest.mark.parametrize("shape", ["chain", "fan-in"])
def test_the_validated_order_and_needs_of_both_shapes(tmp_path: Path, shape: str) -> None:
    steps = chain(N) if shape == "chain" else fan_in(N)
    proc = engine.load(_write(tmp_path, shape, steps))
    dag = graph.build(proc.steps)
    assert dag.order == [sid for sid, _, _ in steps]
    assert dag.needs == {sid: needs for sid, _, needs in steps}
    last = proc.steps[-1].id
    assert dag.is_upstream("s0", last) and not dag.is_upstream(last, "s0")


def test_an_offline_plan_of_a_wide_fan_in_starts_no_thread_per_step(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proc = engine.load(_write(tmp_path, "fan", fan_in(N)))
    starts: list[str] = []
    start = threading.Thread.start
    here = threading.current_thread()

    def counting_start(self: threading.Thread) -> None:
        # the plan's threads only: started here or by its coordinator, not by a server another
        # test of this worker left answering requests (its request threads start meanwhile)
        starter = threading.current_thread()
        if starter is here or starter.name.startswith("run-"):
            starts.append(self.name)
        start(self)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    finished: list[str] = []
    result = engine.plan(proc, offline=True,
                         on_event=lambda e: finished.append(e.step_id) if isinstance(e, StepFinished) else None)
    assert result.status == "planned" and all(sr.status == "planned" for sr in result.steps.values())
    # the coordinator at most (a plan called from the main thread runs on one): an offline
    # plan waits on nothing, and a thread per ready step cost more than the step
    assert len(starts) <= 1, starts[:5]
    # steps end in the order they start, which for independent steps is the file's
    assert finished == [sid for sid, _, _ in fan_in(N)]


def test_a_valid_file_is_read_without_recording_positions(tmp_path: Path) -> None:
    # a position per node was a third of a 10,000-step validate's memory, and positions are
    # only asked for to locate a problem: they are read again from the text when asked
    path = _write(tmp_path, "chain", chain(N))
    proc = engine.load(path)
    source = proc._source
    assert source is not None and source._positions is None
    line = path.read_text().splitlines().index("  - id: s150") + 1
    assert source.where(("steps", 150, "id")) == (line, 9)
    assert source.where(("steps", 150, "id"), key=True) == (line, 5)
    assert source.where(("steps", 150, "needs", 0)) == (line + 2, 13)
    assert source._positions is not None  # read once, then kept
