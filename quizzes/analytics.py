"""Which choices learners make in a case: counts per node and ending, common paths, where they stop.

Pure: no Flask, no SQLAlchemy, no I/O. The input is plain records of attempts (the caller
reads them from the database); the output is plain data, a CSV and small SVG bar charts.
Attempts may come from older versions of the case: their nodes and choices are kept under
their ids, with the text "(not in this version)".
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from quizzes.case_format import Case
from quizzes.graph import plural, shorten, svg_document, xml_escape

__all__ = [
    "CSV_HEADER",
    "NOT_IN_VERSION",
    "AttemptRecord",
    "CaseAnalytics",
    "ChoiceCount",
    "ChoiceStats",
    "DropOff",
    "EndingStats",
    "FailingEnding",
    "NodeStats",
    "PathCount",
    "StepRecord",
    "analyse",
    "analytics_csv_rows",
    "bar_chart_svg",
    "csv_cell",
    "write_csv",
]

NOT_IN_VERSION: Final = "(not in this version)"
FINISHED: Final = "ended"  # the status quizzes.attempts gives an attempt that reached an ending
ABANDONED: Final = "abandoned"
CSV_HEADER: Final = (
    "node_id",
    "node_title",
    "choice_id",
    "choice_text",
    "count",
    "share_percent",
    "withdrawn",
    "reached_node",
)


@dataclass(frozen=True)
class StepRecord:
    """One recorded choice; a withdrawn one was taken back and is not on the final path."""

    position: int
    node_id: str
    choice_id: str
    withdrawn: bool = False


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt as stored; `current_node` is where an unfinished attempt stands, if known."""

    attempt_id: int
    learner_key: str
    case_version: int
    steps: tuple[StepRecord, ...]
    ending_node: str | None
    percent: int | None
    passed: bool | None
    status: str
    current_node: str | None = None

    @property
    def finished(self) -> bool:
        """Whether the attempt reached an ending."""
        return self.status == FINISHED and self.ending_node is not None

    @property
    def path(self) -> tuple[StepRecord, ...]:
        """The steps in effect, in order."""
        return tuple(step for step in sorted(self.steps, key=lambda step: step.position) if not step.withdrawn)


@dataclass(frozen=True)
class ChoiceStats:
    """How often one choice was taken at its node; `share` is of all choices made there."""

    choice_id: str
    text: str
    count: int
    share: float
    percent: int
    withdrawn: int
    in_version: bool = True


@dataclass(frozen=True)
class NodeStats:
    """A situation: how many attempts reached it and what they chose there."""

    node_id: str
    title: str
    reached: int
    choices: tuple[ChoiceStats, ...]
    in_version: bool = True

    @property
    def made(self) -> int:
        """The number of choices made here (a loop can bring one attempt back more than once)."""
        return sum(choice.count for choice in self.choices)


@dataclass(frozen=True)
class EndingStats:
    """An ending: how many finished attempts reached it, and how many of those passed."""

    node_id: str
    title: str
    outcome: str | None
    passes: bool | None  # None for an ending not in this version
    reached: int
    share: float
    percent: int
    passed: int


@dataclass(frozen=True)
class PathCount:
    """A sequence of nodes from the start to an ending, and how many finished attempts took it."""

    nodes: tuple[str, ...]
    count: int
    share: float


@dataclass(frozen=True)
class DropOff:
    """A node where unfinished attempts stand: `abandoned` gave up, the rest are still active."""

    node_id: str
    title: str
    count: int
    abandoned: int
    share: float


@dataclass(frozen=True)
class ChoiceCount:
    """A choice at a node, and how many attempts took it."""

    node_id: str
    choice_id: str
    text: str
    count: int


@dataclass(frozen=True)
class FailingEnding:
    """An ending where attempts failed, and the choices most of them took on the way."""

    node_id: str
    title: str
    attempts: int
    choices: tuple[ChoiceCount, ...]


@dataclass(frozen=True)
class CaseAnalytics:
    """Everything `analyse` finds about one case's attempts."""

    case_id: str
    case_version: int
    attempts: int
    finished: int
    passed: int
    pass_rate: float | None  # of finished attempts; None when none finished
    average_percent: float | None
    nodes: tuple[NodeStats, ...]
    endings: tuple[EndingStats, ...]
    common_paths: tuple[PathCount, ...]
    drop_off: tuple[DropOff, ...]
    where_learners_fail: tuple[FailingEnding, ...]

    def node(self, node_id: str) -> NodeStats:
        """The statistics of one situation (KeyError if no attempt or version has it)."""
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(node_id)

    def ending(self, node_id: str) -> EndingStats:
        """The statistics of one ending (KeyError if no attempt or version has it)."""
        for ending in self.endings:
            if ending.node_id == node_id:
                return ending
        raise KeyError(node_id)


def analyse(case: Case, attempts: Iterable[AttemptRecord], *, top_paths: int = 5) -> CaseAnalytics:
    """Choice analytics for a case from its recorded attempts (of any version)."""
    records = list(attempts)
    finished = [record for record in records if record.finished]
    passed = sum(1 for record in finished if _passed(record))
    percents = [record.percent for record in finished if record.percent is not None]
    return CaseAnalytics(
        case_id=case.id,
        case_version=case.version,
        attempts=len(records),
        finished=len(finished),
        passed=passed,
        pass_rate=passed / len(finished) if finished else None,
        average_percent=sum(percents) / len(percents) if percents else None,
        nodes=_node_stats(case, records),
        endings=_ending_stats(case, finished),
        common_paths=_common_paths(case, finished, top_paths),
        drop_off=_drop_off(case, [record for record in records if not record.finished]),
        where_learners_fail=_where_learners_fail(case, [record for record in finished if not _passed(record)]),
    )


def analytics_csv_rows(case: Case, analytics: CaseAnalytics) -> Iterator[list[str]]:
    """A header, then one row per choice at each situation, as plain text."""
    # Checked here rather than inside the generator, so that a mix-up fails before any row is sent.
    if analytics.case_id != case.id:
        raise ValueError(f'these analytics are for case "{analytics.case_id}", not "{case.id}"')
    return _csv_rows(analytics)


def _csv_rows(analytics: CaseAnalytics) -> Iterator[list[str]]:
    yield list(CSV_HEADER)
    for node in analytics.nodes:
        for choice in node.choices:
            yield [
                node.node_id,
                _plain(node.title),
                choice.choice_id,
                _plain(choice.text),
                str(choice.count),
                str(choice.percent),
                str(choice.withdrawn),
                str(node.reached),
            ]


class _Writable(Protocol):
    def write(self, text: str, /) -> object: ...


def write_csv(rows: Iterable[Sequence[object]], stream: _Writable) -> None:
    """Write rows as CSV, with every text cell made safe to open in a spreadsheet."""
    # csv.writer quotes and escapes; it never interprets, so each cell is neutralised first.
    writer = csv.writer(stream)
    for row in rows:
        writer.writerow([csv_cell(value) for value in row])


def csv_cell(value: object) -> str:
    """A cell's text; text a spreadsheet would run as a formula gets a leading apostrophe."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        text = "" if value is None else str(value)
        if text.startswith(_FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(text):
            return "'" + text
        return text
    return str(value)


def bar_chart_svg(node_analytics: NodeStats, *, width: int = 480) -> str:
    """A horizontal bar per choice at a node, each labelled with its id and "n (p%)"."""
    width = max(width, _CHART_MIN_WIDTH)
    node = node_analytics
    heading = f"Choices at “{node.node_id}”: {node.title}"
    seed = repr(("bar-chart", node, width))
    if not node.choices:
        body = [f'<text x="{_CHART_MARGIN}" y="{_CHART_MARGIN + 14}" fill="{_INK}">No choices recorded.</text>']
        desc = f"{plural(node.reached, 'attempt')} reached this node; no choices recorded."
        return svg_document(body, width=width, height=2 * _CHART_MARGIN + 20, title=heading, desc=desc, seed=seed)
    label_width = round(width * 0.3)
    bar_room = width - 2 * _CHART_MARGIN - label_width - _VALUE_WIDTH
    rows = [_bar_row(choice, number, label_width, bar_room) for number, choice in enumerate(node.choices)]
    height = 2 * _CHART_MARGIN + len(node.choices) * _BAR_ROW - (_BAR_ROW - _BAR_HEIGHT)
    summary = "; ".join(f"{choice.choice_id}: {_value_text(choice)}" for choice in node.choices)
    desc = f"{plural(node.reached, 'attempt')} reached this node; {plural(node.made, 'choice')} made. {summary}."
    return svg_document(rows, width=width, height=height, title=heading, desc=desc, seed=seed)


_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r", "\0")
# A plain number is never run as a formula, so "-5" may stay as it is.
_PLAIN_NUMBER: Final = re.compile(r"[+-]?\d+(?:\.\d+)?")

_CHART_MIN_WIDTH: Final = 320
_CHART_MARGIN: Final = 12
_BAR_ROW: Final = 26
_BAR_HEIGHT: Final = 18
_INK: Final = "#1f2933"
_BAR: Final = "#3b6ea5"
_LABEL_CHARS: Final = 22
_VALUE_WIDTH: Final = 150  # room after the longest bar for "n (p%), k withdrawn"


def _passed(record: AttemptRecord) -> bool:
    # A finished attempt without a recorded verdict is not counted as passed: passing is never guessed.
    return record.passed is True


def _plain(text: str) -> str:
    return " ".join(text.split())


def _visited(case: Case, record: AttemptRecord) -> list[str]:
    """The nodes an attempt's final path went through, in order, ending where it ended or stands."""
    last = record.ending_node if record.finished and record.ending_node else _stop_node(case, record)
    return [*(step.node_id for step in record.path), last]


def _stop_node(case: Case, record: AttemptRecord) -> str:
    """Where an unfinished attempt stands: as recorded, else worked out from its last step in this version."""
    if record.current_node is not None:
        return record.current_node
    path = record.path
    if not path:
        return case.start
    last = path[-1]
    choice = case.node(last.node_id).choice(last.choice_id) if case.has_node(last.node_id) else None
    # A step this version cannot follow leaves the last node known to have been reached.
    return choice.goto if choice is not None else last.node_id


def _node_order(case: Case) -> tuple[dict[str, int], int]:
    """Each node's place in the file, and the place after them all (for nodes not in this version)."""
    rank = {node.id: number for number, node in enumerate(case.graph_nodes)}
    return rank, len(rank)


def _title(case: Case, node_id: str) -> str:
    return case.node(node_id).title if case.has_node(node_id) else NOT_IN_VERSION


def _node_stats(case: Case, records: Sequence[AttemptRecord]) -> tuple[NodeStats, ...]:
    reached: Counter[str] = Counter()
    taken: dict[str, Counter[str]] = {}
    withdrawn: dict[str, Counter[str]] = {}
    for record in records:
        # A loop can bring an attempt back to a node; it still reached it once.
        reached.update(set(_visited(case, record)))
        for step in record.steps:
            counts = withdrawn if step.withdrawn else taken
            counts.setdefault(step.node_id, Counter())[step.choice_id] += 1
    situations = [node.id for node in case.graph_nodes if not node.is_ending]
    extra = sorted((set(taken) | set(withdrawn)) - set(situations))
    return tuple(
        _one_node(case, node_id, reached[node_id], taken.get(node_id, Counter()), withdrawn.get(node_id, Counter()))
        for node_id in [*situations, *extra]
    )


def _one_node(case: Case, node_id: str, reached: int, taken: Counter[str], withdrawn: Counter[str]) -> NodeStats:
    in_version = case.has_node(node_id)
    known = [choice.id for choice in case.node(node_id).choices] if in_version else []
    ids = [*known, *sorted((set(taken) | set(withdrawn)) - set(known))]
    counts = [taken[choice_id] for choice_id in ids]
    shares = _shares(counts)
    percents = _whole_percents(counts)
    choices = tuple(
        ChoiceStats(
            choice_id=choice_id,
            text=_choice_text(case, node_id, choice_id),
            count=count,
            share=share,
            percent=percent,
            withdrawn=withdrawn[choice_id],
            in_version=choice_id in known,
        )
        for choice_id, count, share, percent in zip(ids, counts, shares, percents, strict=True)
    )
    return NodeStats(node_id, _title(case, node_id), reached, choices, in_version)


def _choice_text(case: Case, node_id: str, choice_id: str) -> str:
    choice = case.node(node_id).choice(choice_id) if case.has_node(node_id) else None
    return _plain(choice.text) if choice is not None else NOT_IN_VERSION


def _shares(counts: Sequence[int]) -> list[float]:
    total = sum(counts)
    return [count / total if total else 0.0 for count in counts]


def _whole_percents(counts: Sequence[int]) -> list[int]:
    """Whole percents that add up to exactly 100 (largest remainders get the spare points)."""
    total = sum(counts)
    if not total:
        return [0] * len(counts)
    floors = [100 * count // total for count in counts]
    spare = 100 - sum(floors)
    # Ties go to the earlier entry, so the result does not depend on anything but the counts.
    by_remainder = sorted(range(len(counts)), key=lambda index: (-(100 * counts[index] % total), index))
    for index in by_remainder[:spare]:
        floors[index] += 1
    return floors


def _ending_stats(case: Case, finished: Sequence[AttemptRecord]) -> tuple[EndingStats, ...]:
    reached = Counter(record.ending_node for record in finished if record.ending_node is not None)
    passed = Counter(record.ending_node for record in finished if _passed(record))
    known = [node.id for node in case.graph_nodes if node.is_ending]
    ids = [*known, *sorted(set(reached) - set(known))]
    counts = [reached[node_id] for node_id in ids]
    stats = []
    for node_id, count, share, percent in zip(ids, counts, _shares(counts), _whole_percents(counts), strict=True):
        ending = case.node(node_id).ending if case.has_node(node_id) else None
        outcome = ending.outcome if ending else None
        passes = ending.passes if ending else None
        stats.append(
            EndingStats(node_id, _title(case, node_id), outcome, passes, count, share, percent, passed[node_id])
        )
    return tuple(stats)


def _common_paths(case: Case, finished: Sequence[AttemptRecord], top: int) -> tuple[PathCount, ...]:
    paths = Counter(tuple(_visited(case, record)) for record in finished)
    # Most common first; equal counts in a fixed order, so the same attempts always give the same list.
    ranked = sorted(paths.items(), key=lambda item: (-item[1], item[0]))[: max(top, 0)]
    return tuple(PathCount(nodes, count, count / len(finished)) for nodes, count in ranked)


def _drop_off(case: Case, unfinished: Sequence[AttemptRecord]) -> tuple[DropOff, ...]:
    stops: Counter[str] = Counter()
    abandoned: Counter[str] = Counter()
    for record in unfinished:
        node_id = _stop_node(case, record)
        stops[node_id] += 1
        abandoned[node_id] += record.status == ABANDONED
    rank, unknown = _node_order(case)
    ranked = sorted(stops.items(), key=lambda item: (-item[1], rank.get(item[0], unknown), item[0]))
    return tuple(
        DropOff(node_id, _title(case, node_id), count, abandoned[node_id], count / len(unfinished))
        for node_id, count in ranked
    )


def _where_learners_fail(case: Case, failed: Sequence[AttemptRecord]) -> tuple[FailingEnding, ...]:
    by_ending: dict[str, list[AttemptRecord]] = {}
    for record in failed:
        by_ending.setdefault(record.ending_node or "", []).append(record)
    rank, unknown = _node_order(case)
    ordered = sorted(by_ending.items(), key=lambda item: (-len(item[1]), rank.get(item[0], unknown), item[0]))
    return tuple(
        FailingEnding(ending_id, _title(case, ending_id), len(records), _choices_on_the_way(case, records))
        for ending_id, records in ordered
    )


def _choices_on_the_way(case: Case, records: Sequence[AttemptRecord]) -> tuple[ChoiceCount, ...]:
    """The choices these attempts took, each counted once per attempt, most common first."""
    counts: Counter[tuple[str, str]] = Counter()
    for record in records:
        counts.update({(step.node_id, step.choice_id) for step in record.path})
    rank, unknown = _node_order(case)

    def order(item: tuple[tuple[str, str], int]) -> tuple[int, int, str, int, str]:
        (node_id, choice_id), count = item
        choices = [choice.id for choice in case.node(node_id).choices] if case.has_node(node_id) else []
        position = choices.index(choice_id) if choice_id in choices else len(choices)
        return -count, rank.get(node_id, unknown), node_id, position, choice_id

    return tuple(
        ChoiceCount(node_id, choice_id, _choice_text(case, node_id, choice_id), count)
        for (node_id, choice_id), count in sorted(counts.items(), key=order)
    )


def _value_text(choice: ChoiceStats) -> str:
    text = f"{choice.count} ({choice.percent}%)"
    return f"{text}, {choice.withdrawn} withdrawn" if choice.withdrawn else text


def _bar_row(choice: ChoiceStats, number: int, label_width: int, bar_room: int) -> str:
    """One choice: its id, a bar as long as its share, and its count and percent as text."""
    y = _CHART_MARGIN + number * _BAR_ROW
    bar_x = _CHART_MARGIN + label_width
    bar_length = bar_room * choice.share
    text_y = y + _BAR_HEIGHT - 5
    tooltip = f"{choice.choice_id}: {choice.text}"
    return (
        f'<g class="bar" data-choice-id="{xml_escape(choice.choice_id)}">'
        f"<title>{xml_escape(tooltip)}</title>"
        f'<text class="bar-label" x="{bar_x - 8}" y="{text_y}" text-anchor="end" fill="{_INK}">'
        f"{xml_escape(shorten(choice.choice_id, _LABEL_CHARS))}</text>"
        f'<rect x="{bar_x}" y="{y}" width="{bar_length:.1f}" height="{_BAR_HEIGHT}" fill="{_BAR}"/>'
        f'<text class="bar-value" x="{bar_x + bar_length + 6:.1f}" y="{text_y}" fill="{_INK}">'
        f"{xml_escape(_value_text(choice))}</text>"
        "</g>"
    )
