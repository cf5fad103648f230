"""Validating case files: every problem, each with its file, line and a plain-English message.

Field-level checks happen while parsing (`quizzes.case_format`); this module adds the
checks that need the whole graph, and the two entry points `check_case` and `load_case`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

from quizzes import engine
from quizzes.case_format import Case, CaseInvalid, Problem, did_you_mean, parse_case

__all__ = ["CaseInvalid", "Problem", "check_case", "load_case", "unreachable_pass_mark", "validate_graph"]

ON_A_LOOP = "a choice on a loop may not score above 0, or it could be repeated for points"


def check_case(text: str, filename: str) -> tuple[Case | None, list[Problem]]:
    """Parse and validate a case file; never raises. The case is None unless there are no problems."""
    case, problems = parse_case(text, filename)
    # Without nodes there is no graph to check, and past the node limit only part of it was
    # read: either way graph checks would only echo the problem already reported.
    too_many = any(problem.code == "too-many-nodes" for problem in problems)
    if case is not None and case.nodes and not too_many:
        problems += validate_graph(case, filename)
    # Whether the pass mark can be reached depends on every score, ending and link, so it
    # is judged only once all of them are right; before that it would echo other problems.
    if case is not None and not problems:
        problems += unreachable_pass_mark(case, filename)
    problems.sort(key=lambda problem: problem.line)
    return (None if problems else case), problems


def load_case(text: str, filename: str) -> Case:
    """The case in a file, or CaseInvalid listing every problem."""
    case, problems = check_case(text, filename)
    if case is None:
        raise CaseInvalid(problems)
    return case


def validate_graph(case: Case, filename: str) -> list[Problem]:
    """The problems in how a case's nodes connect; works on a partly parsed case too."""
    graph = _Graph(case)
    checks = (
        _duplicate_node_ids,
        _duplicate_choice_ids,
        _unknown_targets,
        _ratings_below_pass_mark,
        _scored_loops,
        _no_ending_at_all,
        _paths_from_start,
    )
    return [Problem(filename, *finding) for check in checks for finding in check(case, graph)]


def unreachable_pass_mark(case: Case, filename: str) -> list[Problem]:
    """A problem if no path to a passing ending reaches the pass mark (judge only valid cases)."""
    line = case.source.line_of("pass_mark")
    best = engine.best_path(case)
    if best is None:
        message = 'the pass mark cannot be reached: no ending with "passes: true" can be reached'
    elif best.percent < case.pass_mark:
        message = (
            f"the pass mark of {case.pass_mark}% cannot be reached: "
            f"the best path to a passing ending scores {best.percent}%"
        )
    else:
        return []
    return [Problem(filename, line, message, None, "pass-mark-unreachable")]


class _Finding(NamedTuple):
    """A problem before it is tied to its file."""

    line: int
    message: str
    node_id: str | None
    code: str


class _Graph:
    """The case as a directed graph over the first node of each id; unknown targets are left out."""

    def __init__(self, case: Case) -> None:
        self.ids = [node.id for node in case.graph_nodes]
        self.endings = {node.id for node in case.graph_nodes if node.is_ending}
        self.successors: dict[str, list[str]] = {node_id: [] for node_id in self.ids}
        for node in case.graph_nodes:
            if not node.is_ending:
                known = [choice.goto for choice in node.choices if choice.goto in self.successors]
                self.successors[node.id] = known
        # Graphs are small (at most MAX_NODES), so a search from every node is cheap and plain.
        self._after = {node_id: self._search(self.successors[node_id]) for node_id in self.ids}

    def leads_to(self, source: str, target: str) -> bool:
        """Whether some path of zero or more steps goes from source to target."""
        return source == target or target in self._after[source]

    def on_loop(self, node_id: str) -> bool:
        """Whether a path of one or more steps returns to the node."""
        return node_id in self._after[node_id]

    def reachable_from(self, node_id: str) -> set[str]:
        """The node itself and every node a path leads to from it."""
        return {node_id} | self._after[node_id]

    def can_end(self, node_id: str) -> bool:
        """Whether some ending can be reached from the node."""
        return bool(self.reachable_from(node_id) & self.endings)

    def _search(self, frontier: Iterable[str]) -> set[str]:
        seen: set[str] = set()
        stack = list(frontier)
        while stack:
            node_id = stack.pop()
            if node_id not in seen:
                seen.add(node_id)
                stack.extend(self.successors[node_id])
        return seen


def _duplicate_node_ids(case: Case, graph: _Graph) -> Iterator[_Finding]:
    first_line: dict[str, int] = {}
    for node in case.nodes:
        line = node.source.line_of("id")
        if node.id in first_line:
            message = f'node id "{node.id}" is used twice (first on line {first_line[node.id]})'
            yield _Finding(line, message, node.id, "duplicate-id")
        else:
            first_line[node.id] = line


def _duplicate_choice_ids(case: Case, graph: _Graph) -> Iterator[_Finding]:
    for node in case.nodes:
        first_line: dict[str, int] = {}
        for choice in node.choices:
            line = choice.source.line_of("id")
            if choice.id in first_line:
                message = (
                    f'choice id "{choice.id}" is used twice in node "{node.id}" (first on line {first_line[choice.id]})'
                )
                yield _Finding(line, message, node.id, "duplicate-id")
            elif choice.id:
                first_line[choice.id] = line


def _unknown_targets(case: Case, graph: _Graph) -> Iterator[_Finding]:
    for node in case.nodes:
        for choice in node.choices:
            # An empty goto was already reported as missing or empty.
            if choice.goto and not case.has_node(choice.goto):
                hint = did_you_mean(choice.goto, graph.ids)
                message = f'choice "{choice.id}" leads to unknown node "{choice.goto}"{hint}'
                yield _Finding(choice.source.line_of("goto"), message, node.id, "unknown-target")


def _ratings_below_pass_mark(case: Case, graph: _Graph) -> Iterator[_Finding]:
    for node in case.nodes:
        ending = node.ending
        if ending and ending.passes and ending.rating is not None and ending.rating < case.pass_mark:
            message = (
                f'ending "{node.id}" passes, but its rating of {ending.rating}% is below '
                f"the pass mark of {case.pass_mark}%, so reaching it never passes"
            )
            yield _Finding(ending.source.line_of("rating"), message, node.id, "rating-below-pass-mark")


def _scored_loops(case: Case, graph: _Graph) -> Iterator[_Finding]:
    for node in case.graph_nodes:
        if node.is_ending:
            continue
        for choice in node.choices:
            if choice.score > 0 and case.has_node(choice.goto) and graph.leads_to(choice.goto, node.id):
                message = (
                    f'choice "{choice.id}" scores {choice.score} but lies on a loop back to '
                    f'node "{node.id}"; {ON_A_LOOP}'
                )
                yield _Finding(choice.source.line_of("score"), message, node.id, "scored-loop")


def _no_ending_at_all(case: Case, graph: _Graph) -> Iterator[_Finding]:
    if not graph.endings:
        message = 'the case has no ending: at least one node needs an "ending"'
        yield _Finding(case.source.line_of("nodes"), message, None, "no-ending")


def _paths_from_start(case: Case, graph: _Graph) -> Iterator[_Finding]:
    """Unknown start, unreachable nodes, endings out of reach and loops with no way out."""
    line = case.source.line_of("start")
    if not case.has_node(case.start):
        # An empty start was already reported as missing or empty.
        if case.start:
            hint = did_you_mean(case.start, graph.ids)
            yield _Finding(line, f'start names unknown node "{case.start}"{hint}', None, "unknown-start")
        return
    if case.node(case.start).is_ending:
        message = f'the start node "{case.start}" is an ending: a case needs at least one choice'
        yield _Finding(line, message, case.start, "start-is-ending")
        return
    reachable = graph.reachable_from(case.start)
    for node in case.graph_nodes:
        if node.id not in reachable:
            message = f'node "{node.id}" cannot be reached from the start node "{case.start}"'
            yield _Finding(node.source.line, message, node.id, "unreachable")
    if not graph.can_end(case.start):
        # With no ending at all, _no_ending_at_all has said so already.
        if graph.endings:
            message = f'no ending can be reached from the start node "{case.start}"'
            yield _Finding(line, message, None, "no-ending")
        return
    yield from _loops_without_way_out(case, graph, reachable)


def _loops_without_way_out(case: Case, graph: _Graph, reachable: set[str]) -> Iterator[_Finding]:
    """One problem per loop that can be entered but never left for an ending.

    Other nodes that cannot reach an ending lead into such a loop, a dead end or an
    unknown target, each reported on its own.
    """
    reported: set[str] = set()
    for node in case.graph_nodes:
        if node.id not in reachable or node.id in reported or not graph.on_loop(node.id):
            continue
        if graph.can_end(node.id):
            continue
        loop = [other for other in graph.ids if graph.leads_to(node.id, other) and graph.leads_to(other, node.id)]
        reported.update(loop)
        if len(loop) == 1:
            message = f'node "{node.id}" loops back to itself with no way out: no ending can be reached from it'
        else:
            names = ", ".join(f'"{node_id}"' for node_id in loop)
            message = f"nodes {names} form a loop with no way out: no ending can be reached from them"
        yield _Finding(node.source.line, message, node.id, "trap")
