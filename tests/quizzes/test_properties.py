"""Properties of the validator and the engine on random case graphs, checked by brute force.

The brute force here shares no code with quizzes: it enumerates simple paths, which is
slow but obviously right on graphs of a few nodes.
"""

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from math import floor

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quizzes import engine
from quizzes.case_format import Case, parse_case
from quizzes.validator import check_case

settings.register_profile(
    "quizzes",
    max_examples=120,
    deadline=None,
    database=None,  # other engineers share this checkout: leave no .hypothesis folder behind
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("quizzes-thorough", parent=settings.get_profile("quizzes"), max_examples=2000)
PROFILE = settings.get_profile(os.environ.get("QUIZZES_HYPOTHESIS_PROFILE", "quizzes"))

NOWHERE = -1  # a goto or start naming no node


@dataclass(frozen=True)
class Graph:
    """A small case as numbers: node i is a situation with choices[i] or an ending with endings[i]."""

    choices: tuple[tuple[tuple[int, int], ...] | None, ...]  # (target, score) per choice; None for endings
    endings: tuple[tuple[bool, int | None] | None, ...]  # (passes, rating); None for situations
    start: int
    pass_mark: int
    allow_back: bool = True

    @property
    def size(self) -> int:
        return len(self.endings)

    def is_ending(self, node: int) -> bool:
        return self.endings[node] is not None

    def edges(self, node: int) -> Iterator[tuple[int, int, int]]:
        """(choice index, target, score) for each choice leading to a known node."""
        for index, (target, score) in enumerate(self.choices[node] or ()):
            if target != NOWHERE:
                yield index, target, score


def to_yaml(graph: Graph) -> str:
    """The case file for a graph: node i is "n{i}", choice j of a node is "c{j}"."""
    nodes = []
    for node in range(graph.size):
        entry: dict = {"id": f"n{node}", "title": "A moment", "text": "Something happens."}
        if graph.is_ending(node):
            passes, rating = graph.endings[node]
            entry["ending"] = {
                "outcome": "recovered",
                "passes": passes,
                "rating": rating,
                "principle": "p",
                "debrief": "d",
            }
        else:
            entry["choices"] = [
                {
                    "id": f"c{index}",
                    "text": "Do it.",
                    "goto": f"n{target}" if target != NOWHERE else "nowhere",
                    "score": score,
                    "consequence": "c",
                }
                for index, (target, score) in enumerate(graph.choices[node])
            ]
        nodes.append(entry)
    document = {
        "id": "random-case",
        "title": "Random",
        "module": "own",
        "version": 1,
        "summary": "s",
        "pass_mark": graph.pass_mark,
        "navigation": {"allow_back": graph.allow_back},
        "start": f"n{graph.start}" if graph.start != NOWHERE else "nowhere",
        "nodes": nodes,
    }
    return yaml.safe_dump(document, sort_keys=False)


# --- Brute force ---------------------------------------------------------------------------


def simple_paths(graph: Graph, node: int, seen: frozenset[int] = frozenset()) -> Iterator[list[tuple[int, int, int]]]:
    """Every path from node that repeats no node, as (node, choice index, score) steps; [] included."""
    yield []
    for index, target, score in graph.edges(node) if not graph.is_ending(node) else ():
        if target not in seen | {node}:
            for rest in simple_paths(graph, target, seen | {node}):
                yield [(node, index, score), *rest]


def end_of(graph: Graph, node: int, path: list[tuple[int, int, int]]) -> int:
    if not path:
        return node
    last_node, index, _ = path[-1]
    return graph.choices[last_node][index][0]


def reaches(graph: Graph, source: int, target: int) -> bool:
    return any(end_of(graph, source, path) == target for path in simple_paths(graph, source))


def on_cycle(graph: Graph, node: int) -> bool:
    return any(reaches(graph, target, node) for _, target, _ in graph.edges(node) if not graph.is_ending(node))


def reaches_ending(graph: Graph, node: int) -> bool:
    return any(graph.is_ending(end_of(graph, node, path)) for path in simple_paths(graph, node))


def paths_to_endings(graph: Graph) -> list[list[tuple[int, int, int]]]:
    return [path for path in simple_paths(graph, graph.start) if graph.is_ending(end_of(graph, graph.start, path))]


def brute_max_score(graph: Graph) -> int:
    return max([0] + [sum(score for *_, score in path) for path in paths_to_endings(graph)])


def brute_percent(graph: Graph, path: list[tuple[int, int, int]]) -> int:
    passes, rating = graph.endings[end_of(graph, graph.start, path)]
    top = brute_max_score(graph)
    if rating is not None:
        return rating
    if top == 0:
        return 100 if passes else 0
    points = min(max(sum(score for *_, score in path), 0), top)
    return floor(Fraction(100 * points, top) + Fraction(1, 2))


def brute_best(graph: Graph) -> tuple[int, int] | None:
    """(percent, steps) of the best path to a passing ending: highest percent, then fewest steps."""
    passing = [path for path in paths_to_endings(graph) if graph.endings[end_of(graph, graph.start, path)][0]]
    if not passing:
        return None
    return max((brute_percent(graph, path), -len(path)) for path in passing)


def expected_codes(graph: Graph) -> set[str]:
    """The kinds of problem the format's rules say this graph has."""
    codes = set()
    situations = [node for node in range(graph.size) if not graph.is_ending(node)]
    if any(not 2 <= len(graph.choices[node]) <= 4 for node in situations):
        codes.add("dead-end")
    if any(target == NOWHERE for node in situations for target, _ in graph.choices[node]):
        codes.add("unknown-target")
    if any(
        passes and rating is not None and rating < graph.pass_mark for passes, rating in filter(None, graph.endings)
    ):
        codes.add("rating-below-pass-mark")
    if any(score > 0 and reaches(graph, target, node) for node in situations for _, target, score in graph.edges(node)):
        codes.add("scored-loop")
    if not any(graph.is_ending(node) for node in range(graph.size)):
        codes.add("no-ending")
    if graph.start == NOWHERE:
        codes.add("unknown-start")
    elif graph.is_ending(graph.start):
        codes.add("start-is-ending")
    else:
        reachable = [node for node in range(graph.size) if reaches(graph, graph.start, node)]
        if len(reachable) < graph.size:
            codes.add("unreachable")
        if not reaches_ending(graph, graph.start):
            codes.add("no-ending")
        elif any(on_cycle(graph, node) and not reaches_ending(graph, node) for node in reachable):
            codes.add("trap")
    if not codes:
        best = brute_best(graph)
        if best is None or best[0] < graph.pass_mark:
            codes.add("pass-mark-unreachable")
    return codes


# --- Strategies ----------------------------------------------------------------------------


@st.composite
def graphs(draw: st.DrawFn) -> Graph:
    """Any small graph, including broken ones; each kind of damage is switched on per graph."""
    size = draw(st.integers(2, 6))
    targets = st.integers(0, size - 1)
    if draw(st.booleans()):
        targets = targets | st.just(NOWHERE)
    counts = st.sampled_from([0, 1, 2, 3, 4, 5]) if draw(st.booleans()) else st.integers(2, 4)
    scores = st.integers(-3, 5) if draw(st.booleans()) else st.integers(-3, 0)
    choices, endings = [], []
    for node in range(size):
        if node > 0 and draw(st.integers(0, 2)) == 0:
            choices.append(None)
            endings.append((draw(st.booleans()), draw(st.none() | st.integers(0, 100))))
        else:
            choices.append(tuple((draw(targets), draw(scores)) for _ in range(draw(counts))))
            endings.append(None)
    start = draw(st.sampled_from([0] * 8 + [size - 1, NOWHERE]))
    return Graph(tuple(choices), tuple(endings), start, draw(st.integers(0, 100)))


@st.composite
def playable_graphs(draw: st.DrawFn) -> Graph:
    """Graphs that follow every rule, loops included; the validator must accept them all.

    Situations come first. Each one's first choice leads to the next situation (the last to
    the first ending), so everything is reachable and every node can reach an ending; other
    choices go anywhere. A choice on a loop has its positive score set to 0.
    """
    situations = draw(st.integers(1, 5))
    ending_count = draw(st.integers(1, min(3, situations)))
    size = situations + ending_count
    endings: list[tuple[bool, int | None] | None] = [None] * situations
    for index in range(ending_count):
        passes = index == 0 or draw(st.booleans())
        endings.append((passes, draw(st.none() | st.integers(0, 100))))
    choices: list[tuple[tuple[int, int], ...] | None] = []
    for node in range(situations):
        # The first choice goes on (node + 1 is the first ending for the last situation); the
        # second leads the first situations to one ending each, so every ending is reachable.
        targets = [node + 1, situations + node if node < ending_count else draw(st.integers(0, size - 1))]
        targets += [draw(st.integers(0, size - 1)) for _ in range(draw(st.integers(0, 2)))]
        choices.append(tuple((target, draw(st.integers(-3, 8))) for target in targets))
    choices += [None] * ending_count
    draft = Graph(tuple(choices), tuple(endings), 0, 0)
    choices = [
        None
        if node_choices is None
        else tuple(
            (target, 0 if score > 0 and reaches(draft, target, node) else score) for target, score in node_choices
        )
        for node, node_choices in enumerate(choices)
    ]
    best = brute_best(Graph(tuple(choices), tuple(endings), 0, 0))
    assert best is not None
    ratings = [rating for passes, rating in filter(None, endings) if passes and rating is not None]
    pass_mark = draw(st.integers(0, min([best[0], *ratings])))
    return Graph(tuple(choices), tuple(endings), 0, pass_mark, allow_back=draw(st.booleans()))


@st.composite
def nearly_playable_graphs(draw: st.DrawFn) -> Graph:
    """A playable graph with one thing changed, which may or may not break a rule."""
    graph = draw(playable_graphs())
    choices = list(graph.choices)
    endings = list(graph.endings)
    situations = [node for node in range(graph.size) if not graph.is_ending(node)]
    node = draw(st.sampled_from(situations))
    index = draw(st.integers(0, len(choices[node]) - 1))
    target, score = choices[node][index]
    change = draw(st.sampled_from(["goto", "score", "drop", "add", "trap", "pass_mark", "passes", "rating", "start"]))
    if change == "goto":
        target = draw(st.integers(0, graph.size - 1) | st.just(NOWHERE))
    elif change == "score":
        score = draw(st.integers(-3, 8))
    choices[node] = (*choices[node][:index], (target, score), *choices[node][index + 1 :])
    if change == "drop":
        choices[node] = choices[node][:index] + choices[node][index + 1 :]
    elif change == "add":
        choices[node] = (*choices[node], (draw(st.integers(0, graph.size - 1)), draw(st.integers(-3, 8))))
    elif change == "trap":
        # Two situations whose choices only lead to each other: a loop with no way out.
        other = draw(st.sampled_from(situations))
        for looping in {node, other}:
            choices[looping] = tuple(
                (draw(st.sampled_from([node, other])), min(points, 0)) for _, points in choices[looping]
            )
    ending = draw(st.integers(len(situations), graph.size - 1))
    passes, rating = endings[ending]
    if change == "passes":
        endings[ending] = (not passes, rating)
    elif change == "rating":
        endings[ending] = (passes, draw(st.none() | st.integers(0, 100)))
    pass_mark = draw(st.integers(0, 100) | st.integers(90, 100)) if change == "pass_mark" else graph.pass_mark
    start = draw(st.integers(0, graph.size - 1)) if change == "start" else graph.start
    return Graph(tuple(choices), tuple(endings), start, pass_mark, graph.allow_back)


def loaded(graph: Graph) -> Case:
    """The graph's case, which must be valid."""
    case, problems = check_case(to_yaml(graph), "random.yaml")
    assert problems == [], problems
    assert case is not None
    return case


def is_acyclic(graph: Graph) -> bool:
    return not any(on_cycle(graph, node) for node in range(graph.size))


# --- The validator -------------------------------------------------------------------------


@PROFILE
@given(graphs() | nearly_playable_graphs())
def test_the_validator_finds_exactly_the_graph_problems_brute_force_finds(graph):
    case, problems = check_case(to_yaml(graph), "random.yaml")
    assert {problem.code for problem in problems} == expected_codes(graph)
    assert (case is None) == bool(problems)


@PROFILE
@given(playable_graphs())
def test_the_validator_accepts_every_graph_that_follows_the_rules(graph):
    loaded(graph)


@PROFILE
@given(st.text(max_size=400))
def test_check_case_never_raises_on_any_text(text):
    case, problems = check_case(text, "any.yaml")
    assert case is None and problems
    assert all(problem.line >= 1 for problem in problems)


@PROFILE
@given(playable_graphs(), st.data())
def test_check_case_never_raises_on_a_damaged_case(graph, data):
    text = to_yaml(graph)
    position = data.draw(st.integers(0, len(text)))
    cut = data.draw(st.integers(0, 20))
    insert = data.draw(
        st.sampled_from(["", " ", "  ", "\n", "- ", ": ", "[", "{", "}", "'", '"', "&a ", "*a ", "~", "!!int ", "-1"])
    )
    damaged = text[:position] + insert + text[position + cut :]
    case, problems = check_case(damaged, "damaged.yaml")
    lines = damaged.count("\n") + 1
    assert all(1 <= problem.line <= lines for problem in problems)
    assert (case is None) == bool(problems)


# --- The engine ----------------------------------------------------------------------------


@PROFILE
@given(playable_graphs(), st.data())
def test_random_play_stays_within_the_rules_and_can_always_finish(graph, data):
    case = loaded(graph)
    state = engine.start(case)
    for _ in range(data.draw(st.integers(0, 30))):
        if state.ended:
            break
        if case.navigation.allow_back and state.path and data.draw(st.integers(0, 4)) == 0:
            state = engine.back(case, state)
        else:
            choice = data.draw(st.sampled_from(case.node(state.current_node).choices))
            answered, step = state.current_node, len(state.path)
            state = engine.choose(case, state, answered, choice.id, step=step)
            with pytest.raises(engine.StepRefused, match="this step was already answered"):
                engine.choose(case, state, answered, choice.id, step=step)
        check_invariants(case, state)
    finish_by_the_shortest_way(case, state)


def check_invariants(case: Case, state: engine.State) -> None:
    assert 0 <= engine.percent(case, state) <= 100
    assert not engine.passed(case, state) or engine.percent(case, state) >= case.pass_mark
    taken, remaining = engine.progress(case, state)
    assert taken == len(state.path)
    assert (remaining == 0) == state.ended
    assert engine.replay(case, state.path) == state
    if state.ended:
        assert engine.score(case, state) <= engine.max_score(case)


def finish_by_the_shortest_way(case: Case, state: engine.State) -> None:
    """From any state of a valid case an ending is reachable, in exactly the steps progress promises."""
    remaining = engine.progress(case, state).remaining
    for _ in range(remaining):
        options = [
            engine.choose(case, state, state.current_node, choice.id)
            for choice in case.node(state.current_node).choices
        ]
        state = min(options, key=lambda option: engine.progress(case, option).remaining)
    assert state.ended
    check_invariants(case, state)


@PROFILE
@given(playable_graphs())
def test_the_maximum_score_is_the_best_simple_path(graph):
    assert engine.max_score(loaded(graph)) == brute_max_score(graph)


@PROFILE
@given(graphs() | nearly_playable_graphs())
def test_on_acyclic_graphs_the_maximum_is_the_best_simple_path_even_when_invalid(graph):
    if graph.start == NOWHERE or not is_acyclic(graph):
        return
    case, _ = parse_case(to_yaml(graph), "random.yaml")
    assert case is not None
    assert engine.max_score(case) == brute_max_score(graph)


@PROFILE
@given(playable_graphs())
def test_the_best_path_has_the_best_percent_and_the_fewest_steps_and_passes(graph):
    case = loaded(graph)
    best = engine.best_path(case)
    assert best is not None
    assert (best.percent, -len(best.steps)) == brute_best(graph)
    state = engine.replay(case, best.steps)
    assert (state.ending_node, engine.percent(case, state)) == (best.ending_node, best.percent)
    assert engine.passed(case, state)
