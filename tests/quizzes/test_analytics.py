"""Choice analytics: what learners chose at each node, where they ended, stopped and failed; CSV and charts."""

import ast
import csv
import io
import math
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from textwrap import dedent

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import quizzes
from quizzes import engine
from quizzes.analytics import (
    CSV_HEADER,
    NOT_IN_VERSION,
    AttemptRecord,
    ChoiceCount,
    ChoiceStats,
    DropOff,
    NodeStats,
    PathCount,
    StepRecord,
    analyse,
    analytics_csv_rows,
    bar_chart_svg,
    csv_cell,
    write_csv,
)
from quizzes.case_format import Case
from quizzes.validator import load_case

SVG = "{http://www.w3.org/2000/svg}"
SHIPPED = sorted((Path(quizzes.__file__).parent / "cases").glob("*.yaml"))

# first-post --reply-fast(+10)--> follow-up --fix-it(+10)--> end-recovered (passes)
#      |                             |--ask-again(0)--> follow-up (a loop)
#      |                             '--deflect(0)----> end-escalated (fails)
#      '--ignore(-5)--> end-escalated
CASE = load_case(
    dedent(
        """\
        id: airline-angry-passenger
        title: The passenger with a million followers
        module: recognise
        version: 2
        summary: A passenger's angry post is spreading fast.
        pass_mark: 60
        start: first-post
        nodes:
          - id: first-post
            title: A post at 7:42
            text: A passenger posts a photo of a broken seat.
            choices:
              - id: reply-fast
                text: >-
                  Reply within minutes
                  and apologise.
                goto: follow-up
                score: 10
                consequence: Thanks.
              - {id: ignore, text: Say nothing., goto: end-escalated, score: -5, consequence: It spreads.}
          - id: follow-up
            title: The follow-up
            text: The passenger asks what you will do.
            choices:
              - {id: fix-it, text: Fix it., goto: end-recovered, score: 10, consequence: Praise.}
              - {id: ask-again, text: Ask for details., goto: follow-up, consequence: More photos.}
              - {id: deflect, text: Blame the contractor., goto: end-escalated, consequence: Nobody believes it.}
          - id: end-recovered
            title: Recovered
            text: Good service.
            ending: {outcome: recovered, passes: true, principle: Own it early, debrief: Well done.}
          - id: end-escalated
            title: Escalated
            text: It grows for days.
            ending: {outcome: escalated, passes: false, principle: Own it early, debrief: Silence reads badly.}
        """
    ),
    "airline-angry-passenger.yaml",
)

FIXED = ("first-post", "reply-fast"), ("follow-up", "fix-it")
LOOPED = ("first-post", "reply-fast"), ("follow-up", "ask-again"), ("follow-up", "ask-again"), ("follow-up", "fix-it")
DEFLECTED = ("first-post", "reply-fast"), ("follow-up", "deflect")
IGNORED = (("first-post", "ignore"),)


def attempt(
    number: int,
    steps: tuple[tuple[str, str], ...],
    *,
    ending: str | None = None,
    percent: int | None = None,
    passed: bool | None = None,
    status: str | None = None,
    withdrawn: tuple[tuple[int, str, str], ...] = (),
    version: int = 2,
    current_node: str | None = None,
) -> AttemptRecord:
    """An attempt record; `withdrawn` adds (position, node, choice) steps taken back, numbered among the others."""
    taken_back = {position: (node_id, choice_id) for position, node_id, choice_id in withdrawn}
    records, taken = [], iter(steps)
    for position in range(len(steps) + len(withdrawn)):
        if position in taken_back:
            records.append(StepRecord(position, *taken_back[position], withdrawn=True))
        else:
            records.append(StepRecord(position, *next(taken)))
    return AttemptRecord(
        attempt_id=number,
        learner_key=f"learner-{number}",
        case_version=version,
        steps=tuple(records),
        ending_node=ending,
        percent=percent,
        passed=passed,
        status=status or ("ended" if ending else "active"),
        current_node=current_node,
    )


def passed_fix(number: int) -> AttemptRecord:
    return attempt(number, FIXED, ending="end-recovered", percent=100, passed=True)


def failed_deflect(number: int) -> AttemptRecord:
    return attempt(number, DEFLECTED, ending="end-escalated", percent=50, passed=False)


def failed_ignore(number: int) -> AttemptRecord:
    return attempt(number, IGNORED, ending="end-escalated", percent=0, passed=False)


def choice(stats: NodeStats, choice_id: str) -> ChoiceStats:
    (found,) = [item for item in stats.choices if item.choice_id == choice_id]
    return found


def test_each_choice_is_counted_with_its_share_of_the_choices_made_at_its_node() -> None:
    result = analyse(CASE, [passed_fix(1), passed_fix(2), failed_deflect(3), failed_ignore(4)])
    first = result.node("first-post")
    assert [(item.choice_id, item.count, item.share, item.percent) for item in first.choices] == [
        ("reply-fast", 3, 0.75, 75),
        ("ignore", 1, 0.25, 25),
    ]
    assert first.reached == 4
    follow_up = result.node("follow-up")
    assert [(item.choice_id, item.count) for item in follow_up.choices] == [
        ("fix-it", 2),
        ("ask-again", 0),
        ("deflect", 1),
    ]
    assert math.isclose(sum(item.share for item in follow_up.choices), 1.0)
    assert follow_up.reached == 3


def test_choices_keep_their_text_as_one_line_of_plain_text() -> None:
    first = analyse(CASE, []).node("first-post")
    assert choice(first, "reply-fast").text == "Reply within minutes and apologise."


def test_whole_percents_add_up_to_exactly_100() -> None:
    thirds = [passed_fix(1), failed_deflect(2), attempt(3, LOOPED[:2], status="active")]
    follow_up = analyse(CASE, thirds).node("follow-up")
    assert [item.percent for item in follow_up.choices] == [34, 33, 33]
    assert [round(item.share, 4) for item in follow_up.choices] == [0.3333, 0.3333, 0.3333]


def test_a_loop_counts_every_choice_made_but_reaches_the_node_only_once_per_attempt() -> None:
    looped = attempt(1, LOOPED, ending="end-recovered", percent=100, passed=True)
    follow_up = analyse(CASE, [looped]).node("follow-up")
    assert follow_up.reached == 1
    assert choice(follow_up, "ask-again").count == 2
    assert choice(follow_up, "fix-it").count == 1
    assert follow_up.made == 3


def test_withdrawn_steps_count_as_withdrawn_and_not_as_chosen() -> None:
    # The learner chose "ignore", stepped back, then replied fast.
    changed_mind = attempt(
        1, FIXED, ending="end-recovered", percent=100, passed=True, withdrawn=((0, "first-post", "ignore"),)
    )
    first = analyse(CASE, [changed_mind]).node("first-post")
    assert (choice(first, "ignore").count, choice(first, "ignore").withdrawn) == (0, 1)
    assert (choice(first, "reply-fast").count, choice(first, "reply-fast").withdrawn) == (1, 0)
    assert first.reached == 1


def test_a_node_left_only_by_a_withdrawn_step_is_not_reached_by_that_attempt() -> None:
    # reply-fast, then back to the start, then ignore: the follow-up is not on the final path.
    back_out = attempt(
        1, IGNORED, ending="end-escalated", percent=0, passed=False, withdrawn=((0, "first-post", "reply-fast"),)
    )
    result = analyse(CASE, [back_out])
    assert result.node("follow-up").reached == 0
    assert choice(result.node("first-post"), "reply-fast").withdrawn == 1


def test_a_node_nobody_reached_has_zero_counts_and_zero_shares() -> None:
    follow_up = analyse(CASE, [failed_ignore(1)]).node("follow-up")
    assert follow_up.reached == 0
    assert all((item.count, item.share, item.percent) == (0, 0.0, 0) for item in follow_up.choices)


def test_totals_pass_rate_and_average_percent_are_over_finished_attempts() -> None:
    records = [passed_fix(1), failed_deflect(2), failed_ignore(3), attempt(4, FIXED[:1], status="abandoned")]
    result = analyse(CASE, records)
    assert (result.attempts, result.finished, result.passed) == (4, 3, 1)
    assert result.pass_rate == pytest.approx(1 / 3)
    assert result.average_percent == pytest.approx(50.0)


def test_without_attempts_everything_is_zero_and_rates_are_none() -> None:
    result = analyse(CASE, [])
    assert (result.attempts, result.finished, result.passed) == (0, 0, 0)
    assert result.pass_rate is None and result.average_percent is None
    assert result.common_paths == () and result.drop_off == () and result.where_learners_fail == ()
    assert [node.node_id for node in result.nodes] == ["first-post", "follow-up"]


def test_endings_show_how_often_they_were_reached_their_share_and_whether_they_pass() -> None:
    result = analyse(CASE, [passed_fix(1), failed_deflect(2), failed_ignore(3), attempt(4, FIXED[:1])])
    recovered, escalated = result.ending("end-recovered"), result.ending("end-escalated")
    assert (recovered.reached, recovered.percent, recovered.passes, recovered.passed) == (1, 33, True, 1)
    assert (escalated.reached, escalated.percent, escalated.passes, escalated.passed) == (2, 67, False, 0)
    assert escalated.outcome == "escalated"
    assert math.isclose(recovered.share + escalated.share, 1.0)


def test_common_paths_are_the_most_frequent_node_sequences_of_finished_attempts() -> None:
    records = [
        passed_fix(1),
        failed_ignore(2),
        passed_fix(3),
        failed_deflect(4),
        failed_ignore(5),
        passed_fix(6),
        attempt(7, LOOPED, ending="end-recovered", percent=100, passed=True),
        attempt(8, IGNORED[:0], status="abandoned"),
    ]
    result = analyse(CASE, records, top_paths=3)
    assert result.common_paths == (
        PathCount(("first-post", "follow-up", "end-recovered"), 3, 3 / 7),
        PathCount(("first-post", "end-escalated"), 2, 2 / 7),
        # Equal counts come in a fixed order (by the sequence), not in the order attempts arrived.
        PathCount(("first-post", "follow-up", "end-escalated"), 1, 1 / 7),
    )
    assert len(analyse(CASE, records).common_paths) == 4


def test_drop_off_counts_where_unfinished_attempts_stand() -> None:
    records = [
        attempt(1, (), status="abandoned"),  # never chose: stands at the start
        attempt(2, FIXED[:1], status="abandoned"),  # stands at the follow-up, worked out from its last step
        attempt(3, LOOPED[:3], status="active"),
        attempt(4, (), status="active", current_node="follow-up"),  # as recorded
        passed_fix(5),
    ]
    assert analyse(CASE, records).drop_off == (
        DropOff("follow-up", "The follow-up", 3, 1, 0.75),
        DropOff("first-post", "A post at 7:42", 1, 1, 0.25),
    )


def test_where_learners_fail_lists_the_choices_failing_attempts_took_on_the_way() -> None:
    records = [failed_deflect(1), failed_deflect(2), failed_ignore(3), passed_fix(4)]
    (escalated,) = analyse(CASE, records).where_learners_fail
    assert (escalated.node_id, escalated.attempts) == ("end-escalated", 3)
    assert escalated.choices == (
        ChoiceCount("first-post", "reply-fast", "Reply within minutes and apologise.", 2),
        ChoiceCount("follow-up", "deflect", "Blame the contractor.", 2),
        ChoiceCount("first-post", "ignore", "Say nothing.", 1),
    )


def test_a_failing_attempt_counts_a_choice_once_even_if_a_loop_repeats_it() -> None:
    looped_then_deflected = attempt(
        1, (*LOOPED[:3], ("follow-up", "deflect")), ending="end-escalated", percent=50, passed=False
    )
    (escalated,) = analyse(CASE, [looped_then_deflected]).where_learners_fail
    assert ChoiceCount("follow-up", "ask-again", "Ask for details.", 1) in escalated.choices


def test_an_attempt_that_reaches_a_passing_ending_below_the_pass_mark_fails_there() -> None:
    # A path that scored too little fails even at an ending that can pass.
    short = attempt(1, FIXED, ending="end-recovered", percent=40, passed=False)
    (recovered,) = analyse(CASE, [short]).where_learners_fail
    assert (recovered.node_id, recovered.attempts) == ("end-recovered", 1)


def test_nodes_choices_and_endings_of_older_versions_are_kept_under_their_ids() -> None:
    old = attempt(
        1,
        (("first-post", "call-them"), ("phone-call", "promise")),
        ending="end-promised",
        percent=80,
        passed=True,
        version=1,
    )
    result = analyse(CASE, [old, passed_fix(2)])
    retired = choice(result.node("first-post"), "call-them")
    assert (retired.text, retired.count, retired.in_version) == (NOT_IN_VERSION, 1, False)
    assert [item.choice_id for item in result.node("first-post").choices] == ["reply-fast", "ignore", "call-them"]
    phone = result.node("phone-call")
    assert (phone.title, phone.reached, phone.in_version) == (NOT_IN_VERSION, 1, False)
    assert choice(phone, "promise").text == NOT_IN_VERSION
    promised = result.ending("end-promised")
    assert (promised.title, promised.passes, promised.reached, promised.passed) == (NOT_IN_VERSION, None, 1, 1)
    assert result.node("first-post").reached == 2


def csv_text(rows: list[list[str]]) -> str:
    stream = io.StringIO(newline="")
    write_csv(rows, stream)
    return stream.getvalue()


def test_csv_has_a_header_and_one_row_per_choice_and_parses_back() -> None:
    result = analyse(CASE, [passed_fix(1), failed_deflect(2), failed_ignore(3)])
    parsed = list(csv.reader(io.StringIO(csv_text(list(analytics_csv_rows(CASE, result))))))
    assert parsed[0] == list(CSV_HEADER)
    assert len(parsed) == 1 + 5
    assert parsed[1] == [
        "first-post",
        "A post at 7:42",
        "reply-fast",
        "Reply within minutes and apologise.",
        "2",
        "67",
        "0",
        "3",
    ]
    assert parsed[4] == ["follow-up", "The follow-up", "ask-again", "Ask for details.", "0", "0", "0", "2"]


def test_csv_rows_refuse_analytics_of_another_case() -> None:
    other = replace(CASE, id="someone-else")
    with pytest.raises(ValueError, match="someone-else"):
        analytics_csv_rows(other, analyse(CASE, []))


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r", "\0"])
def test_a_text_cell_that_a_spreadsheet_would_run_gets_a_leading_apostrophe(start: str) -> None:
    assert csv_cell(f'{start}HYPERLINK("http://x")') == f'\'{start}HYPERLINK("http://x")'


@pytest.mark.parametrize(("value", "shown"), [(-5, "-5"), (2.5, "2.5"), ("-5", "-5"), ("+3.25", "+3.25"), (0, "0")])
def test_numbers_stay_numbers(value: object, shown: str) -> None:
    assert csv_cell(value) == shown


@pytest.mark.parametrize("value", ["-1+2", "+cmd|' /C calc'!A0", "-", "@SUM(A1)", "=1"])
def test_text_that_only_starts_like_a_number_is_still_neutralised(value: str) -> None:
    assert csv_cell(value) == "'" + value


def test_csv_from_hostile_ids_and_titles_opens_as_text_and_round_trips() -> None:
    hostile = replace(CASE, nodes=(replace(CASE.nodes[0], title='=HYPERLINK("http://evil","x")'), *CASE.nodes[1:]))
    old = attempt(1, (("first-post", "@SUM(1+1)"), ("-2+3", 'a,"b"\nc')), status="abandoned", version=1)
    text = csv_text(list(analytics_csv_rows(hostile, analyse(hostile, [old]))))
    rows = list(csv.reader(io.StringIO(text)))
    cells = [cell for row in rows[1:] for cell in row]
    assert not [cell for cell in cells if cell[:1] in {"=", "+", "@", "\t", "\r", "\0"}]
    assert '\'=HYPERLINK("http://evil","x")' in cells
    assert "'@SUM(1+1)" in cells
    assert ["'-2+3", NOT_IN_VERSION, 'a,"b"\nc', NOT_IN_VERSION, "1", "100", "0", "1"] in rows


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 - our own output, parsed to prove it is well-formed


def test_bar_chart_has_one_labelled_bar_per_choice_that_does_not_rely_on_colour() -> None:
    follow_up = analyse(CASE, [passed_fix(1), passed_fix(2), failed_deflect(3)]).node("follow-up")
    root = parse(bar_chart_svg(follow_up))
    bars = [group for group in root.iter(f"{SVG}g") if group.get("class") == "bar"]
    labels = [["".join(text.itertext()) for text in bar.iter(f"{SVG}text")] for bar in bars]
    assert labels == [["fix-it", "2 (67%)"], ["ask-again", "0 (0%)"], ["deflect", "1 (33%)"]]
    assert bars[0].find(f"{SVG}title").text == "fix-it: Fix it."  # type: ignore[union-attr]


def test_bar_chart_is_labelled_and_describes_every_value() -> None:
    changed_mind = attempt(1, FIXED, ending="end-recovered", passed=True, withdrawn=((0, "first-post", "ignore"),))
    root = parse(bar_chart_svg(analyse(CASE, [changed_mind]).node("first-post"), width=600))
    assert root.get("role") == "img"
    title_id, desc_id = root.get("aria-labelledby", "").split()
    assert {element.get("id") for element in root if element.tag in {f"{SVG}title", f"{SVG}desc"}} == {
        title_id,
        desc_id,
    }
    assert root.find(f"{SVG}title").text == "Choices at “first-post”: A post at 7:42"  # type: ignore[union-attr]
    desc = root.find(f"{SVG}desc").text  # type: ignore[union-attr]
    assert desc == "1 attempt reached this node; 1 choice made. reply-fast: 1 (100%); ignore: 0 (0%), 1 withdrawn."
    assert (root.get("width"), root.get("viewBox", "").split()[2]) == ("600", "600")


def test_bar_chart_escapes_hostile_ids_and_text() -> None:
    hostile = NodeStats(
        node_id='"><script>x</script>',
        title="</title><script>alert(1)</script>",
        reached=1,
        choices=(ChoiceStats('<b onclick="x">', "& <i>", 1, 1.0, 100, 0, in_version=False),),
        in_version=False,
    )
    svg = bar_chart_svg(hostile)
    root = parse(svg)
    assert "<script" not in svg and "<b " not in svg
    assert not [element for element in root.iter() if any(name.startswith("on") for name in element.attrib)]
    assert root.find(f"{SVG}title").text == 'Choices at “"><script>x</script>”: </title><script>alert(1)</script>'  # type: ignore[union-attr]


def test_bar_chart_of_a_node_without_choices_says_so() -> None:
    root = parse(bar_chart_svg(NodeStats("lonely", "Lonely", 0, ())))
    assert "No choices recorded." in "".join(root.itertext())


@st.composite
def played(draw: st.DrawFn, case: Case, number: int) -> AttemptRecord:
    """An attempt played by the engine's rules: random choices, random steps back, finished or not."""
    state, steps = engine.start(case), []
    for _ in range(draw(st.integers(0, 14))):
        if state.ended:
            break
        if state.path and draw(st.integers(0, 3)) == 0:
            last = max(index for index, step in enumerate(steps) if not step.withdrawn)
            steps[last] = replace(steps[last], withdrawn=True)
            state = engine.back(case, state)
            continue
        node = case.node(state.current_node)
        picked = draw(st.sampled_from(node.choices))
        steps.append(StepRecord(len(steps), node.id, picked.id))
        state = engine.choose(case, state, node.id, picked.id)
    return AttemptRecord(
        attempt_id=number,
        learner_key=f"learner-{number}",
        case_version=case.version,
        steps=tuple(steps),
        ending_node=state.ending_node,
        percent=engine.percent(case, state) if state.ended else None,
        passed=engine.passed(case, state) if state.ended else None,
        status="ended" if state.ended else draw(st.sampled_from(["active", "abandoned"])),
        current_node=None if state.ended else draw(st.sampled_from([None, state.current_node])),
    )


@st.composite
def case_and_attempts(draw: st.DrawFn) -> tuple[Case, list[AttemptRecord]]:
    path = draw(st.sampled_from(SHIPPED))
    case = load_case(path.read_text(encoding="utf-8"), path.name)
    count = draw(st.integers(0, 25))
    return case, [draw(played(case, number)) for number in range(count)]


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(case_and_attempts())
def test_for_any_attempts_at_a_shipped_case_shares_add_up_and_reached_never_exceeds_attempts(
    generated: tuple[Case, list[AttemptRecord]],
) -> None:
    case, records = generated
    result = analyse(case, records)
    for node in result.nodes:
        assert node.reached <= result.attempts
        assert all(item.in_version for item in node.choices)
        if node.made:
            assert math.isclose(sum(item.share for item in node.choices), 1.0)
            assert sum(item.percent for item in node.choices) == 100
            # Every choice made here was made after reaching the node.
            assert node.reached >= 1
        else:
            assert all(item.share == 0 for item in node.choices)
    withdrawn = sum(step.withdrawn for record in records for step in record.steps)
    assert sum(item.withdrawn for node in result.nodes for item in node.choices) == withdrawn
    assert sum(ending.reached for ending in result.endings) == result.finished
    assert sum(path.count for path in result.common_paths) <= result.finished
    assert sum(stop.count for stop in result.drop_off) == result.attempts - result.finished
    assert result.passed == sum(record.passed is True for record in records)


def test_the_module_is_pure_and_imports_neither_flask_nor_sqlalchemy_nor_the_app() -> None:
    tree = ast.parse((Path(quizzes.__file__).parent / "analytics.py").read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not {name.split(".")[0] for name in imported} & {"flask", "sqlalchemy", "flask_sqlalchemy", "course"}
