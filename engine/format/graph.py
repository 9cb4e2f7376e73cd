"""The step DAG: edges from ``needs``, cycle paths, upstream checks, file-order ties.

Validation and the runner use plain dicts and a heap (Kahn's algorithm, Tarjan's for
cycles, bitsets for upstream checks), all linear and without recursion: importing networkx
costs ~125 ms, a third of the validate budget. ``runproc graph --format dot`` uses networkx
for rank generations and imports it there only. ``CycleError`` is graphlib's, so callers
catch the standard exception.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from graphlib import CycleError

from .model import Step


@dataclass
class Dag:
    order: list[str]  # topological, ties broken by file position
    needs: dict[str, list[str]]  # step id -> the ids it waits for
    position: dict[str, int]
    _ancestors: dict[str, int] | None = field(default=None, repr=False)

    def dependents(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {s: [] for s in self.needs}
        for step, deps in self.needs.items():
            for d in deps:
                out[d].append(step)
        return out

    def is_upstream(self, candidate: str, of: str) -> bool:
        """True when ``of`` (transitively) needs ``candidate``.

        Every step's ancestors are kept as one integer bitset, built once in topological
        order: a 10,000-step chain where each step reads an early step's result would
        otherwise walk the chain once per reference (quadratic). Past ``BITSET_LIMIT`` steps
        the sets would cost more memory than the walks cost time, so it walks.
        """
        if candidate in self.needs.get(of, ()):
            return True
        if candidate not in self.position or of not in self.position:
            return False
        if len(self.order) <= BITSET_LIMIT:
            return bool(self.ancestor_bitsets()[of] >> self.position[candidate] & 1)
        return self._walk(candidate, of)

    def ancestor_bitsets(self) -> dict[str, int]:
        """Each step's ancestors as one integer (bit ``position[a]`` for each ancestor ``a``).

        Built once, in one pass in topological order, and kept: callers that ask about every
        step (the upstream checks, a dry run's planned-upstream notes) never walk the graph.
        """
        if self._ancestors is None:
            self._ancestors = self._bitsets()
        return self._ancestors

    def _bitsets(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for node in self.order:
            mask = 0
            for dep in self.needs[node]:
                mask |= out[dep] | (1 << self.position[dep])
            out[node] = mask
        return out

    def _walk(self, candidate: str, of: str) -> bool:
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


BITSET_LIMIT = 20_000  # a chain of n steps keeps n*n/2 bits: 50 MB at this size


def declared_needs(steps: Sequence[Step]) -> dict[str, list[str]]:
    """``needs`` absent: the step before it (a procedure reads top to bottom); ``[]``: none.

    Ids that name no step are left out (validation reports them), so the graph of a file
    with a typo in one ``needs`` can still be checked for cycles and upstream references.
    """
    ids = {s.id for s in steps}
    needs: dict[str, list[str]] = {}
    previous: str | None = None
    for step in steps:
        if step.needs is None:
            needs[step.id] = [previous] if previous else []
        else:
            needs[step.id] = [n for n in dict.fromkeys(step.needs) if n in ids]
        previous = step.id
    return needs


def build(steps: Sequence[Step], needs: dict[str, list[str]] | None = None) -> Dag:
    """Order the steps; raise CycleError with the path (first == last) on a cycle.

    Kahn's algorithm with a heap keyed by file position, so ties run in file order.
    (graphlib's ``prepare`` would walk the whole graph once more looking for cycles.)
    """
    needs = declared_needs(steps) if needs is None else needs
    position = {s.id: i for i, s in enumerate(steps)}
    waiting = {node: len(deps) for node, deps in needs.items()}
    dependents: dict[str, list[str]] = {node: [] for node in needs}
    for node, deps in needs.items():
        for dep in deps:
            dependents[dep].append(node)
    ready = [(position[node], node) for node, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, node = heapq.heappop(ready)
        order.append(node)
        for nxt in dependents[node]:
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                heapq.heappush(ready, (position[nxt], nxt))
    if len(order) < len(needs):
        cycle = find_cycles(needs, position)[0]
        raise CycleError(" -> ".join(cycle), cycle)
    return Dag(order, needs, position)


def find_cycles(needs: dict[str, list[str]], position: dict[str, int]) -> list[list[str]]:
    """One cycle per strongly connected component, as ``[a, b, c, a]`` where a needs b.

    Each cycle starts at its earliest step in the file, and is the shortest way back to it,
    so the message reads like the file. Tarjan's algorithm with an explicit stack: a
    10,000-step chain must not hit Python's recursion limit.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for root in sorted(needs, key=position.__getitem__):
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(needs[root]))]
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in needs:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(needs[nxt])))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in needs[node]:
                        components.append(component)
    cycles = [_shortest_cycle(c, needs, position) for c in components]
    return sorted(cycles, key=lambda c: position[c[0]])


def _shortest_cycle(component: list[str], needs: dict[str, list[str]], position: dict[str, int]) -> list[str]:
    members = set(component)
    start = min(component, key=position.__getitem__)
    came_from: dict[str, str] = {}
    queue = [start]
    for node in queue:  # breadth first: the list grows as we go
        for nxt in needs[node]:
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [start, *reversed(path[:-1]), start] if node != start else [start, start]
            if nxt in members and nxt not in came_from:
                came_from[nxt] = node
                queue.append(nxt)
    return [start, start]  # unreachable: a component always cycles back to its start


# Words Mermaid's flowchart grammar reserves: a step called `end` would close a subgraph.
_MERMAID_RESERVED = frozenset({"end", "graph", "flowchart", "subgraph", "style", "class", "classDef",
                               "click", "linkStyle", "direction", "default", "call", "href"})


def to_mermaid(dag: Dag, labels: dict[str, str]) -> str:
    """A Mermaid flowchart: one node per step (its name as label), an arrow from each need."""

    def node_id(step: str) -> str:
        return f"{step}_" if step in _MERMAID_RESERVED else step

    lines = ["graph TD"]
    for node in dag.order:
        # Mermaid has no backslash escapes inside quotes, only HTML entities
        label = _one_line(labels.get(node, node)).replace('"', "#quot;")
        lines.append(f'    {node_id(node)}["{label}"]')
    for node in dag.order:
        lines.extend(f"    {node_id(dep)} --> {node_id(node)}" for dep in dag.needs[node])
    return "\n".join(lines) + "\n"


def to_dot(dag: Dag, labels: dict[str, str], name: str) -> str:
    """Graphviz DOT with steps that can run together on one rank (networkx generations).

    Ids are quoted: DOT reserves `node`, `edge`, `graph` and `strict` as bare words.
    """
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(dag.order)
    g.add_edges_from((dep, node) for node in dag.order for dep in dag.needs[node])
    lines = [f'digraph "{_esc(name)}" {{', "    rankdir=TB;", "    node [shape=box];"]
    for node in dag.order:
        lines.append(f'    "{node}" [label="{_esc(labels.get(node, node))}"];')
    for generation in nx.topological_generations(g):
        ranked = sorted(generation, key=dag.position.__getitem__)
        lines.append("    { rank=same; " + " ".join(f'"{n}"' for n in ranked) + " }")
    for node in dag.order:
        lines.extend(f'    "{dep}" -> "{node}";' for dep in dag.needs[node])
    lines.append("}")
    return "\n".join(lines) + "\n"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _esc(text: str) -> str:
    return _one_line(text).replace("\\", "\\\\").replace('"', '\\"')
