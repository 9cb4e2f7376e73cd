"""A step graph laid out for an SVG drawn on the server: layers from networkx's
``topological_generations`` (a step sits one row below the last step it needs), each row
ordered by the mean position of its steps' parents (fewer crossings than file order), edges as
curves from a parent's bottom to a child's top. No JavaScript and no graph library in the
browser: the page template turns this geometry into ``<svg>`` (autoescaped like the rest).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WIDTH, HEIGHT = 172, 44  # a node's box
GAP_X, GAP_Y = 20, 40
PAD = 12
LABEL_CHARS = 22  # what fits a box at the CSS font size; the full label is the node's tooltip


@dataclass(frozen=True)
class Box:
    id: str
    label: str  # as drawn (cut to fit)
    title: str  # the whole label, id and status: the tooltip
    status: str
    detail: str  # the box's second line: the status of a run's step, the executor of a procedure's
    x: int
    y: int


@dataclass(frozen=True)
class Drawing:
    width: int
    height: int
    boxes: tuple[Box, ...]
    edges: tuple[str, ...]  # SVG path data, one a dependency
    box_width: int = WIDTH
    box_height: int = HEIGHT


def layers(nodes: list[str], edges: list[tuple[str, str]]) -> list[list[str]]:
    """Rows of the layered layout: each row's steps, ordered to keep edges short."""
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from((a, b) for a, b in edges if a in g and b in g and a != b)
    position = {n: i for i, n in enumerate(nodes)}
    try:
        rows = [sorted(gen, key=position.__getitem__) for gen in nx.topological_generations(g)]
    except nx.NetworkXUnfeasible:  # a cycle: validation refuses one, so only a corrupt record gets here
        return [[n] for n in nodes]
    placed: dict[str, float] = {}
    out: list[list[str]] = []
    for row in rows:
        def weight(n: str) -> tuple[float, int]:
            parents = [placed[p] for p in g.predecessors(n) if p in placed]
            return (sum(parents) / len(parents) if parents else float(position[n]), position[n])

        ordered = sorted(row, key=weight) if out else row
        for i, n in enumerate(ordered):
            placed[n] = i - (len(ordered) - 1) / 2  # centred, as the rows are drawn
        out.append(ordered)
    return out


def draw(nodes: list[dict[str, Any]], edges: list[list[str]], *, dependencies_known: bool = True) -> Drawing:
    """The drawing of ``nodes`` ({id, label, status, detail?}) and ``edges`` ([from, to]). Without known
    dependencies the steps are one column, in order, with no edge drawn (none is implied)."""
    ids = [str(n["id"]) for n in nodes]
    info = {str(n["id"]): n for n in nodes}
    pairs = [(str(a), str(b)) for a, b in edges]
    rows = layers(ids, pairs) if dependencies_known else [[n] for n in ids]
    widest = max((len(r) for r in rows), default=0)
    width = 2 * PAD + max(widest, 1) * WIDTH + max(widest - 1, 0) * GAP_X
    height = 2 * PAD + max(len(rows), 1) * HEIGHT + max(len(rows) - 1, 0) * GAP_Y
    where: dict[str, tuple[int, int]] = {}
    boxes: list[Box] = []
    for r, row in enumerate(rows):
        span = len(row) * WIDTH + (len(row) - 1) * GAP_X
        left = (width - span) // 2
        y = PAD + r * (HEIGHT + GAP_Y)
        for i, sid in enumerate(row):
            x = left + i * (WIDTH + GAP_X)
            where[sid] = (x, y)
            n = info[sid]
            label = str(n.get("label") or sid)
            status = str(n.get("status") or "")
            shown = label if len(label) <= LABEL_CHARS else label[:LABEL_CHARS - 1] + "\u2026"
            title = f"{label} ({sid})" if label != sid else sid
            title += f": {status}" if status else ""
            detail = str(n.get("detail") or status)
            boxes.append(Box(sid, shown, title, status, detail, x, y))
    paths = []
    for a, b in pairs if dependencies_known else []:
        if a not in where or b not in where:
            continue
        (ax, ay), (bx, by) = where[a], where[b]
        x1, y1 = ax + WIDTH // 2, ay + HEIGHT
        x2, y2 = bx + WIDTH // 2, by - 4  # the arrowhead's length above the box
        bend = max((y2 - y1) // 2, 8)
        paths.append(f"M{x1},{y1} C{x1},{y1 + bend} {x2},{y2 - bend} {x2},{y2}")
    return Drawing(width, height, tuple(boxes), tuple(paths))
