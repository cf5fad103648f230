"""A picture of a case's graph as a self-contained, server-rendered SVG.

Pure: no Flask, no SQLAlchemy, no I/O. The picture is built from a `GraphModel`, which
comes from a valid `Case` or, while a trainer is still fixing a file, from whatever part of
the YAML could be read. The SVG carries no script, no event attributes, no external
references and no `<style>` element (a page's Content-Security-Policy may refuse inline
styles; presentation attributes are never refused), so it can be inlined into a page as is.
Output is deterministic: the same input gives the same bytes.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal

from quizzes.case_format import Case, Ending, Problem, parse_case

__all__ = [
    "GraphEdge",
    "GraphModel",
    "GraphNode",
    "graph_model_from_case",
    "graph_model_from_yaml",
    "render_graph_svg",
    "render_partial_graph_svg",
    "render_svg",
    "svg_document",
    "xml_escape",
]

NodeKind = Literal["situation", "ending"]


@dataclass(frozen=True)
class GraphNode:
    """A node as the picture shows it; `outcome` and `passes` are set for endings only."""

    id: str
    title: str
    kind: NodeKind
    outcome: str | None = None
    passes: bool | None = None


@dataclass(frozen=True)
class GraphEdge:
    """A choice as an arrow; `target_known` is False when its goto names no node."""

    source: str
    choice_id: str
    target: str
    score: int
    target_known: bool


@dataclass(frozen=True)
class GraphModel:
    """What the picture is drawn from: nodes in file order and one edge per choice."""

    case_id: str
    title: str
    start: str
    nodes: tuple[GraphNode, ...]
    edges: tuple[GraphEdge, ...]


def graph_model_from_case(case: Case) -> GraphModel:
    """The graph of a case; works on a partly parsed case too (duplicate ids: the first node wins)."""
    nodes = tuple(_graph_node(node.id, node.title, node.ending) for node in case.graph_nodes)
    edges = tuple(
        GraphEdge(node.id, choice.id, choice.goto, choice.score, case.has_node(choice.goto))
        for node in case.graph_nodes
        for choice in node.choices
    )
    return GraphModel(case.id, case.title, case.start, nodes, edges)


def graph_model_from_yaml(text: str) -> GraphModel | None:
    """As much of the graph as a possibly broken case file describes; None when the YAML cannot be read."""
    # parse_case rather than yaml.safe_load: it never raises, refuses oversized files, stops
    # reading runaway alias-expanded lists, and keeps every node that has an id.
    case, _problems = parse_case(text, "case.yaml")
    return graph_model_from_case(case) if case is not None else None


def render_graph_svg(case: Case | None, problems: Sequence[Problem] = (), *, title: str | None = None) -> str:
    """The picture of a case, with the given problems marked on their nodes."""
    model = graph_model_from_case(case) if case is not None else None
    return _render_with_problems(model, problems, title)


def render_partial_graph_svg(text: str, problems: Sequence[Problem] = (), *, title: str | None = None) -> str:
    """The picture of whatever a case file that failed validation still describes."""
    return _render_with_problems(graph_model_from_yaml(text), problems, title)


def render_svg(
    model: GraphModel | None,
    problems_by_node: Mapping[str, Sequence[str]] | None = None,
    *,
    case_problems: Sequence[str] = (),
    title: str | None = None,
) -> str:
    """The SVG for a graph model; problems under an id not in the model count as case problems.

    A node id used twice is drawn once (the first), and an edge from no node is left out.
    """
    if model is not None:
        model = _consistent(model)
    by_node = dict(problems_by_node or {})
    known_ids = {node.id for node in model.nodes} if model else set()
    stray = [
        message for node_id, messages in sorted(by_node.items()) if node_id not in known_ids for message in messages
    ]
    by_node = {node_id: list(messages) for node_id, messages in by_node.items() if node_id in known_ids}
    notes = [*case_problems, *stray]
    problem_count = sum(len(messages) for messages in by_node.values()) + len(notes)
    heading = title or (f"Graph of the case “{model.title or model.case_id}”" if model else "Graph of the case")
    seed = repr((model, sorted(by_node.items()), notes, heading))
    if model is None or not model.nodes:
        return _render_empty(heading, notes, problem_count, seed)
    layout = _layout(model)
    return _Drawing(model, layout, by_node, notes, heading, problem_count, seed).render()


def xml_escape(text: str) -> str:
    """Text made safe for XML element content and double-quoted attributes (invalid characters become U+FFFD)."""
    cleaned = _NOT_XML_CHAR.sub("\ufffd", text)
    escaped = cleaned.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    # As references, line breaks and tabs survive attribute-value and line-end normalisation.
    return escaped.replace("\t", "&#9;").replace("\n", "&#10;").replace("\r", "&#13;")


def svg_document(body: Iterable[str], *, width: int, height: int, title: str, desc: str, seed: str) -> str:
    """A standalone, accessible SVG: role="img", labelled by its own <title> and <desc>."""
    prefix = svg_id_prefix(seed)
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="{prefix}-title {prefix}-desc" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'font-family="system-ui, sans-serif" font-size="12" class="rebound-svg">'
    )
    labels = f'<title id="{prefix}-title">{xml_escape(title)}</title><desc id="{prefix}-desc">{xml_escape(desc)}</desc>'
    return "\n".join([head, labels, *body, "</svg>"]) + "\n"


def svg_id_prefix(seed: str) -> str:
    """A deterministic id prefix, distinct per content, so several SVGs can share one page."""
    return "rb" + hashlib.sha256(seed.encode("utf-8", errors="surrogatepass")).hexdigest()[:10]


def plural(count: int, word: str) -> str:
    """`1 ending`, `3 endings`."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def shorten(text: str, limit: int) -> str:
    """The text on one line, cut to `limit` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


# XML 1.0 allows only these characters, even as character references.
_NOT_XML_CHAR: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

NODE_WIDTH: Final = 200
NODE_HEIGHT: Final = 76
COLUMN_GAP: Final = 160
ROW_GAP: Final = 36
MARGIN: Final = 20
LABEL_ROW: Final = 24  # the column labels above the nodes
VIA_HEIGHT: Final = 8
LANE_GAP: Final = 14  # between the lanes above the boxes that arrows leading back run along
GUTTER_STEP: Final = 6  # between the climbs of arrows leading back, in the gaps beside columns
GUTTERS: Final = 8  # climbs are spread over this many positions, then reuse them
NOTE_ROW: Final = 18
SHOWN_NOTES: Final = 5
# Box text is cut by characters (there are no font metrics on the server), sized for typical text.
ID_CHARS: Final = 22
MARKED_ID_CHARS: Final = 19  # leaves room for the warning sign
TITLE_CHARS: Final = 27
EDGE_LABEL_CHARS: Final = 22
BARYCENTRE_SWEEPS: Final = 3

INK: Final = "#1f2933"
MUTED: Final = "#52606d"
PROBLEM: Final = "#b00020"
LOOP: Final = "#6b3fa0"

# A slot in a column: ("node", id) and ("unknown", target) are boxes; ("via", "<edge>/<column>") is
# where an arrow spanning several columns passes through one, so that it goes round the boxes.
_Key = tuple[str, str]


@dataclass(frozen=True)
class _Layout:
    """Where everything goes: columns left to right, slots top to bottom, in pixels."""

    columns: tuple[tuple[_Key, ...], ...]
    unreachable_column: int | None  # index into columns, always the last one
    arcs: frozenset[int]  # indexes into model.edges drawn as arcs: loops, and arrows pointing left
    routes: Mapping[int, tuple[_Key, ...]]  # the via slots of each long arrow
    column_of: Mapping[_Key, int]
    origin: Mapping[_Key, tuple[float, float]]  # top left corner
    left: float  # where the first column starts
    top: float  # where the tallest column starts
    bottom: float
    width: int


def _consistent(model: GraphModel) -> GraphModel:
    """The model with one node per id and only edges that leave a node, each knowing if its target exists."""
    # As in a Case, the first node with an id is the one a goto reaches; later ones would overlap it.
    first: dict[str, GraphNode] = {}
    for node in model.nodes:
        first.setdefault(node.id, node)
    edges = tuple(replace(edge, target_known=edge.target in first) for edge in model.edges if edge.source in first)
    return replace(model, nodes=tuple(first.values()), edges=edges)


def _graph_node(node_id: str, title: str, ending: Ending | None) -> GraphNode:
    if ending is not None:
        return GraphNode(node_id, title, "ending", ending.outcome, ending.passes)
    return GraphNode(node_id, title, "situation")


def _render_with_problems(model: GraphModel | None, problems: Sequence[Problem], title: str | None) -> str:
    by_node: dict[str, list[str]] = {}
    case_level: list[str] = []
    for problem in problems:
        message = f"line {problem.line}: {problem.message}"
        if problem.node_id is None:
            case_level.append(message)
        else:
            by_node.setdefault(problem.node_id, []).append(message)
    return render_svg(model, by_node, case_problems=case_level, title=title)


def _box_key(edge: GraphEdge) -> _Key:
    return ("node", edge.target) if edge.target_known else ("unknown", edge.target)


def _layout(model: GraphModel) -> _Layout:
    """Layered layout: longest path from the start over the graph without its loops, then barycentres."""
    ids = [node.id for node in model.nodes]
    successors: dict[str, list[tuple[int, str]]] = {node_id: [] for node_id in ids}
    for index, edge in enumerate(model.edges):
        if edge.target_known and edge.source in successors:
            successors[edge.source].append((index, edge.target))
    order, back = _depth_first(model.start, successors)
    layer = _longest_path_layers(order, successors, back)
    unknown_layer: dict[str, int] = {}
    for edge in model.edges:
        if not edge.target_known and edge.source in layer:
            unknown_layer[edge.target] = max(unknown_layer.get(edge.target, 0), layer[edge.source] + 1)
    columns: list[list[_Key]] = [[] for _ in range(max([*layer.values(), *unknown_layer.values(), -1]) + 1)]
    for node_id in order:
        columns[layer[node_id]].append(("node", node_id))
    for target in sorted(unknown_layer, key=lambda target: _first_edge(model, target)):
        columns[unknown_layer[target]].append(("unknown", target))
    column_of = {key: number for number, keys in enumerate(columns) for key in keys}
    routes = _add_vias(model, columns, column_of, back)
    _reduce_crossings(model, columns, routes)
    leftover = _unreachable_boxes(model, layer, unknown_layer)
    unreachable_column = None
    if leftover:
        unreachable_column = len(columns)
        columns.append(leftover)
        column_of.update((key, unreachable_column) for key in leftover)
    arcs = back | {
        index for index, edge in enumerate(model.edges) if column_of[_box_key(edge)] <= column_of[("node", edge.source)]
    }
    # Arrows leading back climb in the gaps beside the columns and run along lanes above them.
    gutter = 12 + GUTTER_STEP * GUTTERS if arcs else 0
    left, top = MARGIN + gutter, MARGIN + LABEL_ROW + (12 + LANE_GAP * len(arcs) if arcs else 0)
    origin, bottom = _place(columns, left, top)
    width = 2 * left + len(columns) * NODE_WIDTH + (len(columns) - 1) * COLUMN_GAP
    frozen = tuple(tuple(keys) for keys in columns)
    return _Layout(frozen, unreachable_column, frozenset(arcs), routes, column_of, origin, left, top, bottom, width)


def _add_vias(
    model: GraphModel, columns: list[list[_Key]], column_of: dict[_Key, int], back: set[int]
) -> dict[int, tuple[_Key, ...]]:
    """A via slot in every column a rightward arrow jumps over."""
    routes: dict[int, tuple[_Key, ...]] = {}
    for index, edge in enumerate(model.edges):
        source = ("node", edge.source)
        if index in back or source not in column_of:
            continue
        first, last = column_of[source], column_of[_box_key(edge)]
        vias = tuple(("via", f"{index}/{column}") for column in range(first + 1, last))
        for column, via in zip(range(first + 1, last), vias, strict=True):
            columns[column].append(via)
            column_of[via] = column
        if vias:
            routes[index] = vias
    return routes


def _slot_height(key: _Key) -> float:
    return VIA_HEIGHT if key[0] == "via" else NODE_HEIGHT


def _place(columns: Sequence[Sequence[_Key]], left: float, top: float) -> tuple[dict[_Key, tuple[float, float]], float]:
    """Pixel corners of every slot, each column centred on the tallest; and the bottom of the tallest."""
    heights = [sum(_slot_height(key) + ROW_GAP for key in keys) - ROW_GAP for keys in columns]
    tallest = max([0.0, *heights])
    origin: dict[_Key, tuple[float, float]] = {}
    for number, keys in enumerate(columns):
        x = left + number * (NODE_WIDTH + COLUMN_GAP)
        y = top + (tallest - heights[number]) / 2
        for key in keys:
            origin[key] = (x, y)
            y += _slot_height(key) + ROW_GAP
    return origin, top + tallest


def _depth_first(start: str, successors: Mapping[str, list[tuple[int, str]]]) -> tuple[list[str], set[int]]:
    """Nodes reachable from the start in discovery order, and the edges that close a loop."""
    if start not in successors:
        return [], set()
    order = [start]
    seen = {start}
    on_stack = {start}
    back: set[int] = set()
    # Iterative, so that a long chain cannot hit the recursion limit.
    stack: list[tuple[str, int]] = [(start, 0)]
    while stack:
        node_id, next_edge = stack[-1]
        if next_edge == len(successors[node_id]):
            stack.pop()
            on_stack.discard(node_id)
            continue
        stack[-1] = (node_id, next_edge + 1)
        index, target = successors[node_id][next_edge]
        if target in on_stack:
            back.add(index)
        elif target not in seen:
            seen.add(target)
            on_stack.add(target)
            order.append(target)
            stack.append((target, 0))
    return order, back


def _longest_path_layers(
    order: Sequence[str], successors: Mapping[str, list[tuple[int, str]]], back: set[int]
) -> dict[str, int]:
    """Each reachable node's column: the longest loop-free path to it, so every other arrow points right."""
    reachable = set(order)
    incoming = dict.fromkeys(order, 0)
    for node_id in order:
        for index, target in successors[node_id]:
            if index not in back and target in reachable:
                incoming[target] += 1
    layer = dict.fromkeys(order, 0)
    ready = deque(node_id for node_id in order if incoming[node_id] == 0)
    while ready:
        node_id = ready.popleft()
        for index, target in successors[node_id]:
            if index in back:
                continue
            layer[target] = max(layer[target], layer[node_id] + 1)
            incoming[target] -= 1
            if incoming[target] == 0:
                ready.append(target)
    return layer


def _first_edge(model: GraphModel, target: str) -> int:
    return next(index for index, edge in enumerate(model.edges) if not edge.target_known and edge.target == target)


def _unreachable_boxes(model: GraphModel, layer: Mapping[str, int], unknown_layer: Mapping[str, int]) -> list[_Key]:
    """Nodes the start does not lead to (file order), then unknown targets only they lead to."""
    boxes: list[_Key] = [("node", node.id) for node in model.nodes if node.id not in layer]
    seen: set[str] = set()
    for edge in model.edges:
        if not edge.target_known and edge.target not in unknown_layer and edge.target not in seen:
            seen.add(edge.target)
            boxes.append(("unknown", edge.target))
    return boxes


def _reduce_crossings(model: GraphModel, columns: list[list[_Key]], routes: Mapping[int, tuple[_Key, ...]]) -> None:
    """Reorder each column by the mean position of its neighbours, sweeping right, left, right."""
    column_of = {key: number for number, keys in enumerate(columns) for key in keys}
    before: dict[_Key, list[_Key]] = {key: [] for key in column_of}
    after: dict[_Key, list[_Key]] = {key: [] for key in column_of}
    for index, edge in enumerate(model.edges):
        chain = [("node", edge.source), *routes.get(index, ()), _box_key(edge)]
        for source, target in itertools.pairwise(chain):
            # Only links between neighbouring columns pull on positions; loops and unreachable
            # boxes are left in their order.
            if source in column_of and target in column_of and column_of[target] == column_of[source] + 1:
                before[target].append(source)
                after[source].append(target)
    place: dict[_Key, float] = {}
    for keys in columns:
        place.update(_centred_places(keys))
    for sweep in range(BARYCENTRE_SWEEPS):
        rightwards = sweep % 2 == 0
        numbers = range(1, len(columns)) if rightwards else range(len(columns) - 2, -1, -1)
        for number in numbers:
            neighbours = before if rightwards else after
            columns[number] = _by_barycentre(columns[number], neighbours, place)
            place.update(_centred_places(columns[number]))


def _centred_places(keys: Sequence[_Key]) -> dict[_Key, float]:
    # Columns are drawn centred on each other, so positions are compared around the middle.
    return {key: row - (len(keys) - 1) / 2 for row, key in enumerate(keys)}


def _by_barycentre(keys: list[_Key], neighbours: Mapping[_Key, list[_Key]], place: Mapping[_Key, float]) -> list[_Key]:
    def barycentre(row: int) -> tuple[float, int]:
        linked = neighbours[keys[row]]
        mean = sum(place[key] for key in linked) / len(linked) if linked else place[keys[row]]
        return mean, row  # ties keep the current order, so the result is stable

    return [keys[row] for row in sorted(range(len(keys)), key=barycentre)]


def _num(value: float) -> str:
    """A coordinate with at most one decimal, written the same way every time."""
    text = f"{value:.1f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _score_label(score: int) -> str:
    return f"{score:+d}" if score else "0"


class _Drawing:
    """Turns a laid-out model into SVG markup."""

    def __init__(
        self,
        model: GraphModel,
        layout: _Layout,
        problems: Mapping[str, Sequence[str]],
        notes: Sequence[str],
        heading: str,
        problem_count: int,
        seed: str,
    ) -> None:
        self.model = model
        self.layout = layout
        self.problems = problems
        self.notes = notes
        self.heading = heading
        self.problem_count = problem_count
        self.seed = seed
        self.prefix = svg_id_prefix(seed)
        self.nodes = {node.id: node for node in model.nodes}
        # Each choice leaves its node from its own port, numbered in file order.
        self.ports: dict[int, tuple[int, int]] = {}
        for source in self.nodes:
            indexes = [index for index, edge in enumerate(model.edges) if edge.source == source]
            self.ports.update((index, (port, len(indexes))) for port, index in enumerate(indexes))
        shown_notes = min(len(notes), SHOWN_NOTES) + (1 if len(notes) > SHOWN_NOTES else 0)
        self.width = layout.width
        self.lane = {index: number for number, index in enumerate(sorted(layout.arcs))}
        self.leads = {index: self._lead(index, edge) for index, edge in enumerate(model.edges)}
        self.arrival = self._arrivals()
        self.notes_top = layout.bottom + MARGIN + 8
        self.height = int(layout.bottom + MARGIN + (shown_notes * NOTE_ROW + 8 if shown_notes else 0))

    def render(self) -> str:
        """The whole SVG document."""
        body = [
            self._defs(),
            '<g class="edges">',
            *(self._edge(index, edge) for index, edge in enumerate(self.model.edges)),
            "</g>",
            '<g class="columns">',
            *(self._column(number, keys) for number, keys in enumerate(self.layout.columns)),
            "</g>",
            *self._notes(),
        ]
        desc = self._desc()
        return svg_document(body, width=self.width, height=self.height, title=self.heading, desc=desc, seed=self.seed)

    def _desc(self) -> str:
        situations = sum(1 for node in self.model.nodes if node.kind == "situation")
        endings = len(self.model.nodes) - situations
        problems = plural(self.problem_count, "problem")
        parts = [f"{plural(situations, 'situation')}, {plural(endings, 'ending')}, {problems}."]
        if self.model.start in self.nodes:
            parts.append(f"The case starts at “{self.model.start}”.")
        else:
            parts.append("The start node is unknown.")
        if self.layout.unreachable_column is not None:
            column = self.layout.columns[self.layout.unreachable_column]
            count = sum(1 for kind, _ in column if kind == "node")
            parts.append(
                _counted(
                    count, "1 node cannot be reached from the start.", "{} nodes cannot be reached from the start."
                )
            )
        dangling = sum(1 for edge in self.model.edges if not edge.target_known)
        if dangling:
            parts.append(_counted(dangling, "1 choice leads to an unknown node.", "{} choices lead to unknown nodes."))
        if self.layout.arcs:
            arcs = len(self.layout.arcs)
            parts.append(
                _counted(arcs, "1 choice leads back, drawn as an arc.", "{} choices lead back, drawn as arcs.")
            )
        return " ".join(parts)

    def _defs(self) -> str:
        arrows = (("arrow", MUTED), ("arrow-loop", LOOP), ("arrow-unknown", PROBLEM))
        markers = "".join(
            f'<marker id="{self.prefix}-{name}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            f'markerHeight="7" orient="auto"><path d="M0 0L10 5L0 10z" fill="{colour}"/></marker>'
            for name, colour in arrows
        )
        return f"<defs>{markers}</defs>"

    def _column(self, number: int, keys: Sequence[_Key]) -> str:
        x = self.layout.left + number * (NODE_WIDTH + COLUMN_GAP)
        if number == self.layout.unreachable_column:
            label, kind = "unreachable", "unreachable"
        elif number == 0 and self.model.start in self.nodes:
            label, kind = "start", "start"
        else:
            label, kind = "", "reachable"
        parts = [f'<g class="column {kind}" data-column="{number}">']
        if label:
            parts.append(
                f'<text class="column-label" x="{_num(x)}" y="{_num(MARGIN + 14)}" font-weight="600" '
                f'fill="{MUTED}">{label}</text>'
            )
        parts.extend(self._box(key) for key in keys if key[0] != "via")
        parts.append("</g>")
        return "".join(parts)

    def _box(self, key: _Key) -> str:
        return self._node(self.nodes[key[1]]) if key[0] == "node" else self._placeholder(key[1])

    def _node(self, node: GraphNode) -> str:
        x, y = self.layout.origin[("node", node.id)]
        problems = self.problems.get(node.id, ())
        classes = ["node", node.kind]
        if node.id == self.model.start:
            classes.append("start")
        if problems:
            classes.append("problem")
        tooltip = "\n".join([f"{node.id}: {node.title}" if node.title else node.id, *(f"⚠ {m}" for m in problems)])
        lines = [
            f'<g class="{" ".join(classes)}" data-node-id="{xml_escape(node.id)}" '
            f'transform="translate({_num(x)} {_num(y)})">',
            f"<title>{xml_escape(tooltip)}</title>",
            _node_rect(node, bool(problems)),
            f'<text class="node-id" x="12" y="22" font-weight="700" fill="{INK}">'
            f"{xml_escape(shorten(node.id, MARKED_ID_CHARS if problems else ID_CHARS))}</text>",
            f'<text class="node-title" x="12" y="42" fill="{INK}">'
            f"{xml_escape(shorten(node.title, TITLE_CHARS))}</text>",
        ]
        if node.kind == "ending":
            verdict = "PASS" if node.passes else "FAIL"
            outcome = node.outcome or "no outcome"
            lines.append(
                f'<text class="node-outcome" x="12" y="62" font-weight="600" fill="{MUTED}">'
                f"{xml_escape(outcome)} · {verdict}</text>"
            )
        if problems:
            lines.append(
                f'<text class="problem-marker" x="{NODE_WIDTH - 10}" y="22" text-anchor="end" font-size="16" '
                f'fill="{PROBLEM}">⚠</text>'
            )
        lines.append("</g>")
        return "".join(lines)

    def _placeholder(self, target: str) -> str:
        x, y = self.layout.origin[("unknown", target)]
        shown = shorten(target, ID_CHARS) if target else "(no target)"
        return (
            f'<g class="placeholder" data-target="{xml_escape(target)}" transform="translate({_num(x)} {_num(y)})">'
            f"<title>{xml_escape(f'No node has the id “{target}”')}</title>"
            f'<rect class="box" width="{NODE_WIDTH}" height="{NODE_HEIGHT}" rx="3" fill="#fff5f5" '
            f'stroke="{PROBLEM}" stroke-width="2" stroke-dasharray="2 3"/>'
            f'<text x="12" y="30" font-weight="700" fill="{PROBLEM}">unknown:</text>'
            f'<text x="12" y="50" fill="{PROBLEM}">{xml_escape(shown)}</text>'
            "</g>"
        )

    def _port(self, index: int) -> tuple[float, float]:
        """Where a choice leaves its node: its own height on the right side, in file order."""
        port, ports = self.ports[index]
        x, y = self.layout.origin[("node", self.model.edges[index].source)]
        return x + NODE_WIDTH, y + NODE_HEIGHT * (port + 1) / (ports + 1)

    def _lead(self, index: int, edge: GraphEdge) -> list[tuple[float, float]]:
        """An arrow's points up to where it turns into its target (a self loop: all of them)."""
        x1, y1 = self._port(index)
        if index not in self.layout.arcs:
            points = [(x1, y1)]
            for key in self.layout.routes.get(index, ()):
                vx, vy = self.layout.origin[key]
                points += [(vx, vy + VIA_HEIGHT / 2), (vx + NODE_WIDTH, vy + VIA_HEIGHT / 2)]
            return points
        _, sy = self.layout.origin[("node", edge.source)]
        if edge.target == edge.source:
            return [(x1, y1), (x1 + 18, y1), (x1 + 18, sy - 14), (x1 - 36, sy - 14), (x1 - 36, sy)]
        step = GUTTER_STEP * (self.lane[index] % GUTTERS)
        lane = self.layout.top - 12 - LANE_GAP * self.lane[index]
        tx, _ = self.layout.origin[_box_key(edge)]
        return [(x1, y1), (x1 + 12 + step, y1), (x1 + 12 + step, lane), (tx - 12 - step, lane)]

    def _arrivals(self) -> dict[int, float]:
        """The height at which each arrow meets its target, spread so that arrowheads stay apart."""
        incoming: dict[_Key, list[int]] = {}
        for index, edge in enumerate(self.model.edges):
            if edge.target != edge.source or not edge.target_known:
                incoming.setdefault(_box_key(edge), []).append(index)
        arrival: dict[int, float] = {}
        for target, indexes in incoming.items():
            # Ordered by the height they come from, so arrows into one box do not cross near it.
            indexes.sort(key=lambda index: (self.leads[index][-1][1], index))
            _, top = self.layout.origin[target]
            arrival.update(
                (index, top + NODE_HEIGHT * (number + 1) / (len(indexes) + 1)) for number, index in enumerate(indexes)
            )
        return arrival

    def _points(self, index: int, edge: GraphEdge) -> list[tuple[float, float]]:
        points = self.leads[index]
        if index not in self.arrival:
            return points
        tx, _ = self.layout.origin[_box_key(edge)]
        y = self.arrival[index]
        if index in self.layout.arcs:
            return [*points, (points[-1][0], y), (tx - 1, y)]
        return [*points, (tx - 1, y)]

    def _edge(self, index: int, edge: GraphEdge) -> str:
        points = self._points(index, edge)
        label = f"{shorten(edge.choice_id or '(no id)', EDGE_LABEL_CHARS)} {_score_label(edge.score)}"
        if index in self.layout.arcs:
            kind, marker, colour = "loop", "arrow-loop", LOOP
            # On the lane (or above a self loop), just past the climb, so it reads as the arrow's name.
            label_x, label_y, anchor = points[2][0] - 6, points[2][1] - 4, "end"
        else:
            kind, marker, colour = "forward", "arrow", MUTED
            # Just above the port it leaves from, so a node's labels stack like its choices.
            label_x, label_y, anchor = points[0][0] + 10, points[0][1] - 3, "start"
        if not edge.target_known:
            kind, marker, colour = f"{kind} unknown", "arrow-unknown", PROBLEM
        shown_target = edge.target if edge.target_known else f"unknown node “{edge.target}”"
        tooltip = f"{edge.source} → {shown_target}: {edge.choice_id} ({_score_label(edge.score)})"
        return (
            f'<g class="edge {kind}" data-source="{xml_escape(edge.source)}" '
            f'data-choice="{xml_escape(edge.choice_id)}" data-target="{xml_escape(edge.target)}">'
            f"<title>{xml_escape(tooltip)}</title>"
            f'<path d="{_rounded_path(points)}" fill="none" stroke="{colour}" stroke-width="1.5" '
            f'marker-end="url(#{self.prefix}-{marker})"/>'
            f'<text class="edge-label" x="{_num(label_x)}" y="{_num(label_y)}" text-anchor="{anchor}" font-size="11" '
            f'fill="{INK}" stroke="#ffffff" stroke-width="3" paint-order="stroke">{xml_escape(label)}</text>'
            "</g>"
        )

    def _notes(self) -> list[str]:
        if not self.notes:
            return []
        lines = ['<g class="case-problems">']
        for number, note in enumerate(self.notes[:SHOWN_NOTES]):
            lines.append(
                f'<text x="{MARGIN}" y="{_num(self.notes_top + number * NOTE_ROW)}" fill="{PROBLEM}">'
                f"<title>{xml_escape(note)}</title>⚠ {xml_escape(shorten(note, 110))}</text>"
            )
        if len(self.notes) > SHOWN_NOTES:
            rest = len(self.notes) - SHOWN_NOTES
            lines.append(
                f'<text x="{MARGIN}" y="{_num(self.notes_top + SHOWN_NOTES * NOTE_ROW)}" fill="{PROBLEM}">'
                f"⚠ … and {plural(rest, 'more problem')}</text>"
            )
        lines.append("</g>")
        return lines


def _rounded_path(points: Sequence[tuple[float, float]], radius: float = 10) -> str:
    """SVG path data for a polyline whose corners are rounded off with quadratic curves."""
    parts = [f"M{_num(points[0][0])} {_num(points[0][1])}"]
    for (px, py), (cx, cy), (nx, ny) in zip(points, points[1:], points[2:], strict=False):
        before, after = math.hypot(cx - px, cy - py), math.hypot(nx - cx, ny - cy)
        if not before or not after:
            parts.append(f"L{_num(cx)} {_num(cy)}")
            continue
        cut = min(radius, before / 2, after / 2)
        ax, ay = cx - (cx - px) * cut / before, cy - (cy - py) * cut / before
        bx, by = cx + (nx - cx) * cut / after, cy + (ny - cy) * cut / after
        parts.append(f"L{_num(ax)} {_num(ay)}Q{_num(cx)} {_num(cy)} {_num(bx)} {_num(by)}")
    if len(points) > 1:
        parts.append(f"L{_num(points[-1][0])} {_num(points[-1][1])}")
    return "".join(parts)


def _counted(count: int, one: str, many: str) -> str:
    """`one` when the count is 1, else `many` with the count filled in."""
    return one if count == 1 else many.format(count)


def _node_rect(node: GraphNode, has_problems: bool) -> str:
    """The node's box: rounded for endings; a thick dashed border when it has problems (not colour alone)."""
    rounded = 18 if node.kind == "ending" else 3
    fill = "#eef6ee" if node.passes else "#fbf0f0" if node.kind == "ending" else "#f4f6f9"
    if has_problems:
        stroke = f'stroke="{PROBLEM}" stroke-width="3" stroke-dasharray="8 4"'
    else:
        stroke = f'stroke="{INK}" stroke-width="1.5"'
    return f'<rect class="box" width="{NODE_WIDTH}" height="{NODE_HEIGHT}" rx="{rounded}" fill="{fill}" {stroke}/>'


def _render_empty(heading: str, notes: Sequence[str], problem_count: int, seed: str) -> str:
    """The picture when there is no graph: a sentence saying so, and the problems."""
    width = 640
    sentence = "Nothing to draw: the case has no nodes that could be read."
    body = [f'<text x="{MARGIN}" y="{MARGIN + 14}" fill="{INK}">{sentence}</text>']
    for number, note in enumerate(notes[:SHOWN_NOTES]):
        body.append(
            f'<text x="{MARGIN}" y="{MARGIN + 14 + (number + 1) * NOTE_ROW}" fill="{PROBLEM}">'
            f"<title>{xml_escape(note)}</title>⚠ {xml_escape(shorten(note, 90))}</text>"
        )
    height = 2 * MARGIN + 14 + min(len(notes), SHOWN_NOTES) * NOTE_ROW + 8
    desc = f"0 situations, 0 endings, {plural(problem_count, 'problem')}. Nothing could be drawn."
    return svg_document(body, width=width, height=height, title=heading, desc=desc, seed=seed)
