"""Playing a branching case: immutable attempt states and the scoring rules.

Pure: no Flask, no SQLAlchemy, no I/O. Every function takes the case it plays, so a state
is plain data that can be stored as its steps and rebuilt with `replay`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from quizzes.case_format import Case, Ending

RefusalKind = Literal[
    "wrong-case",
    "already-answered",
    "not-current",
    "unknown-choice",
    "ended",
    "back-not-allowed",
    "at-start",
    "inconsistent-history",
]


class StepRefused(Exception):
    """A step the rules do not allow; `kind` is for code, `reason` is for people."""

    def __init__(self, kind: RefusalKind, reason: str) -> None:
        super().__init__(reason)
        self.kind: RefusalKind = kind
        self.reason = reason


@dataclass(frozen=True)
class Step:
    """One choice taken: where, which, and the score it carried when taken."""

    node_id: str
    choice_id: str
    score: int


@dataclass(frozen=True)
class State:
    """Where an attempt stands; `path` holds the choices in effect (a step back removes one)."""

    case_id: str
    case_version: int
    path: tuple[Step, ...]
    current_node: str
    ended: bool
    ending_node: str | None


@dataclass(frozen=True)
class BestPath:
    """The best way through a case, for the debrief."""

    steps: tuple[Step, ...]
    ending_node: str
    percent: int


class Progress(NamedTuple):
    """Steps taken, and the fewest steps still needed to reach an ending."""

    taken: int
    remaining: int


def start(case: Case) -> State:
    """A fresh attempt at the start node."""
    return _at(case, case.start, ())


def choose(case: Case, state: State, node_id: str, choice_id: str, *, step: int | None = None) -> State:
    """Take a choice at the current node; refuses stale, repeated, foreign and finished steps.

    `step` is the number of choices that had been taken when the page was shown. Pass it
    from forms: on a loop the same node comes back, and only the step number tells a
    double submit from a new answer there.
    """
    _check_belongs(case, state)
    if step is not None and step != len(state.path):
        if step < len(state.path) and state.path[step].node_id == node_id:
            raise StepRefused("already-answered", "this step was already answered")
        raise StepRefused("not-current", f'"{node_id}" is not the current step')
    if state.ended or node_id != state.current_node:
        if any(taken.node_id == node_id for taken in state.path):
            raise StepRefused("already-answered", "this step was already answered")
        if state.ended:
            raise StepRefused("ended", "the attempt has ended")
        raise StepRefused("not-current", f'"{node_id}" is not the current step')
    choice = case.node(node_id).choice(choice_id)
    if choice is None:
        raise StepRefused("unknown-choice", f'"{choice_id}" is not one of the choices at "{node_id}"')
    return _at(case, choice.goto, (*state.path, Step(node_id, choice.id, choice.score)))


def back(case: Case, state: State) -> State:
    """Undo the last choice, where the case allows stepping back."""
    _check_belongs(case, state)
    if not case.navigation.allow_back:
        raise StepRefused("back-not-allowed", "this case does not allow going back")
    if state.ended:
        raise StepRefused("ended", "the attempt has ended")
    if not state.path:
        raise StepRefused("at-start", "this is the first step; there is nothing to go back to")
    return _at(case, state.path[-1].node_id, state.path[:-1])


def replay(case: Case, steps: Iterable[Step]) -> State:
    """Rebuild a state from stored steps, refusing a history this case could not produce."""
    state = start(case)
    for number, step in enumerate(steps, 1):
        try:
            state = choose(case, state, step.node_id, step.choice_id)
        except StepRefused as refusal:
            reason = f"step {number} cannot be replayed: {refusal.reason}"
            raise StepRefused("inconsistent-history", reason) from None
        now = state.path[-1].score
        if now != step.score:
            reason = f"step {number} was stored with score {step.score}, but the case now scores it {now}"
            raise StepRefused("inconsistent-history", reason)
    return state


def score(case: Case, state: State) -> int:
    """The path score: the sum of the scores of the choices in effect."""
    _check_belongs(case, state)
    return sum(step.score for step in state.path)


def percent(case: Case, state: State) -> int:
    """The attempt's result in percent (0-100); before the end, the share of the maximum so far."""
    points = score(case, state)
    top = max_score(case)
    ending = case.node(state.current_node).ending
    if not state.ended or ending is None:
        return _share(points, top) if top else 0
    return _ending_percent(ending, points, top)


def passed(case: Case, state: State) -> bool:
    """Whether the attempt reached a passing ending with at least the pass mark."""
    if not state.ended or state.ending_node is None:
        return False
    ending = case.node(state.ending_node).ending
    return ending is not None and ending.passes and percent(case, state) >= case.pass_mark


def max_score(case: Case) -> int:
    """The best path score over all ways from the start to an ending (never below 0)."""
    best = 0
    for layer in _best_walks(case):
        for node_id, walk in layer.items():
            if case.node(node_id).is_ending:
                best = max(best, walk.points)
    return best


def best_path(case: Case) -> BestPath | None:
    """The path with the highest percent among paths to passing endings (ties: fewest steps)."""
    top = max_score(case)
    best: tuple[int, str, _Walk] | None = None
    # Layers come in order of step count, so keeping the first of equal percents keeps the shortest.
    for layer in _best_walks(case):
        for node_id, walk in layer.items():
            node = case.node(node_id)
            if node.ending is None or not node.ending.passes:
                continue
            result = _ending_percent(node.ending, walk.points, top)
            if best is None or result > best[0]:
                best = (result, node_id, walk)
    if best is None:
        return None
    result, node_id, walk = best
    return BestPath(walk.steps, node_id, result)
    return best


def progress(case: Case, state: State) -> Progress:
    """Steps taken so far, and the fewest steps left to the nearest ending."""
    _check_belongs(case, state)
    if state.ended:
        return Progress(len(state.path), 0)
    return Progress(len(state.path), _steps_to_ending(case).get(state.current_node, 0))


def may_start_attempt(case: Case, attempts_started: int, *, unfinished: bool) -> bool:
    """Whether a learner may begin another attempt; abandoning an unfinished one needs allow_restart."""
    limit = case.navigation.max_attempts
    if limit is not None and attempts_started >= limit:
        return False
    return case.navigation.allow_restart or not unfinished


def counted_attempt(case: Case, percents: Sequence[int]) -> int | None:
    """The index of the finished attempt that counts toward the grade (best: the first highest)."""
    if not percents:
        return None
    if case.navigation.attempt_counts == "latest":
        return len(percents) - 1
    return max(range(len(percents)), key=lambda index: (percents[index], -index))


def _at(case: Case, node_id: str, path: tuple[Step, ...]) -> State:
    ended = case.node(node_id).is_ending
    return State(case.id, case.version, path, node_id, ended, node_id if ended else None)


def _check_belongs(case: Case, state: State) -> None:
    if (state.case_id, state.case_version) != (case.id, case.version):
        raise StepRefused(
            "wrong-case",
            f'this attempt belongs to case "{state.case_id}" version {state.case_version}, '
            f'not "{case.id}" version {case.version}',
        )


def _ending_percent(ending: Ending, points: int, top: int) -> int:
    if ending.rating is not None:
        return ending.rating
    if top == 0:
        return 100 if ending.passes else 0
    return _share(points, top)


def _share(points: int, top: int) -> int:
    """round(100 * clamp(points, 0, top) / top), with halves rounded up, in exact integers."""
    clamped = min(max(points, 0), top)
    return (200 * clamped + top) // (2 * top)


@dataclass(frozen=True)
class _Walk:
    """A way from the start, linked back through the walk it extends."""

    points: int
    last: Step | None = None
    before: _Walk | None = None

    @property
    def steps(self) -> tuple[Step, ...]:
        steps = []
        walk: _Walk | None = self
        while walk is not None and walk.last is not None:
            steps.append(walk.last)
            walk = walk.before
        return tuple(reversed(steps))


def _best_walks(case: Case) -> list[dict[str, _Walk]]:
    """For each step count k, the best-scoring walk of exactly k steps from the start to each node.

    Bellman-Ford in layers: with no positive-score loop (the validator's rule) a best path
    never repeats a node, so fewer layers than there are nodes are enough; the bound also
    keeps this finite on any case. Ties keep the walk found first, so results are stable.
    """
    if not case.has_node(case.start):
        return []
    layers = [{case.start: _Walk(0)}]
    for _ in range(len(case.graph_nodes) - 1):
        layer: dict[str, _Walk] = {}
        for node_id, walk in layers[-1].items():
            node = case.node(node_id)
            if node.is_ending:
                continue
            for choice in node.choices:
                points = walk.points + choice.score
                known = layer.get(choice.goto)
                if case.has_node(choice.goto) and (known is None or points > known.points):
                    layer[choice.goto] = _Walk(points, Step(node_id, choice.id, choice.score), walk)
        if not layer:
            break
        layers.append(layer)
    return layers


def _steps_to_ending(case: Case) -> dict[str, int]:
    """The fewest choices from each node to an ending (nodes that cannot reach one are absent)."""
    comes_from: dict[str, list[str]] = {node.id: [] for node in case.graph_nodes}
    for node in case.graph_nodes:
        if node.is_ending:
            continue
        for choice in node.choices:
            if choice.goto in comes_from:
                comes_from[choice.goto].append(node.id)
    distance = {node.id: 0 for node in case.graph_nodes if node.is_ending}
    queue = deque(distance)
    while queue:
        node_id = queue.popleft()
        for earlier in comes_from[node_id]:
            if earlier not in distance:
                distance[earlier] = distance[node_id] + 1
                queue.append(earlier)
    return distance
