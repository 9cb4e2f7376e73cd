"""The step DAG: edges from ``needs``, cycle paths, upstream checks, file-order ties.

The run path uses the standard library's ``graphlib`` (importing networkx costs ~125 ms,
a third of the validate budget); ``runproc graph`` uses networkx, imported there only.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter

from .model import Step


@dataclass
class Dag:
    order: list[str]  # topological, ties broken by file position
    needs: dict[str, list[str]]  # step id -> the ids it waits for
    position: dict[str, int]

    def dependents(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {s: [] for s in self.needs}
        for step, deps in self.needs.items():
            for d in deps:
                out[d].append(step)
        return out

    def is_upstream(self, candidate: str, of: str) -> bool:
        """True when ``of`` (transitively) needs ``candidate``."""
        if candidate in self.needs.get(of, ()):
            return True
        seen: set[str] = set()
        stack = list(self.needs.get(of, ()))
        while stack:
            node = stack.pop()
            if node == candidate:
                return True
            if node not in seen:
                seen.add(node)
                stack.extend(self.needs.get(node, ()))
        return False


def declared_needs(steps: Sequence[Step]) -> dict[str, list[str]]:
    """``needs`` absent: the step before it (a procedure reads top to bottom); ``[]``: none."""
    needs: dict[str, list[str]] = {}
    previous: str | None = None
    for step in steps:
        if step.needs is None:
            needs[step.id] = [previous] if previous else []
        else:
            needs[step.id] = list(dict.fromkeys(step.needs))
        previous = step.id
    return needs


def build(steps: Sequence[Step]) -> Dag:
    """Order the steps; raise CycleError with the path (first == last) on a cycle."""
    needs = declared_needs(steps)
    position = {s.id: i for i, s in enumerate(steps)}
    sorter = TopologicalSorter({k: [d for d in v if d in needs] for k, v in needs.items()})
    try:
        sorter.prepare()
    except CycleError as exc:
        cycle = list(reversed(exc.args[1]))  # graphlib lists it dependency-first
        raise CycleError(" -> ".join(cycle), cycle) from None
    ready: list[tuple[int, str]] = []
    order: list[str] = []
    while sorter.is_active():
        for node in sorter.get_ready():
            heapq.heappush(ready, (position[node], node))
        pos, node = heapq.heappop(ready)
        order.append(node)
        sorter.done(node)
    return Dag(order, needs, position)


def to_mermaid(dag: Dag, labels: dict[str, str]) -> str:
    lines = ["graph TD"]
    for node in dag.order:
        lines.append(f'    {node}["{_esc(labels.get(node, node))}"]')
    for node in dag.order:
        lines.extend(f"    {dep} --> {node}" for dep in dag.needs[node])
    return "\n".join(lines) + "\n"


def to_dot(dag: Dag, labels: dict[str, str], name: str) -> str:
    """Graphviz DOT with steps that can run together on one rank (networkx generations)."""
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(dag.order)
    g.add_edges_from((dep, node) for node in dag.order for dep in dag.needs[node])
    lines = [f'digraph "{_esc(name)}" {{', "    rankdir=TB;", "    node [shape=box];"]
    for node in dag.order:
        lines.append(f'    {node} [label="{_esc(labels.get(node, node))}"];')
    for generation in nx.topological_generations(g):
        ranked = sorted(generation, key=dag.position.__getitem__)
        lines.append("    { rank=same; " + " ".join(ranked) + " }")
    for node in dag.order:
        lines.extend(f"    {dep} -> {node};" for dep in dag.needs[node])
    lines.append("}")
    return "\n".join(lines) + "\n"


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
