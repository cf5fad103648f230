"""How a case file reads into a Case: fields, defaults, line numbers."""

from dataclasses import replace
from textwrap import dedent

import pytest

from quizzes.case_format import (
    Case,
    CaseInvalid,
    Choice,
    Ending,
    Navigation,
    Node,
    Problem,
    parse_case,
)

CASE = dedent(
    """\
    id: airline-angry-passenger
    title: The passenger with a million followers
    module: recognise
    version: 3
    summary: A passenger's angry post is spreading fast.
    pass_mark: 60
    navigation:
      allow_back: false
      max_attempts: 2
      attempt_counts: latest
    start: first-post
    nodes:
      - id: first-post
        title: A post at 7:42
        text: |
          A passenger posts a photo
          of a broken seat.
        known:
          - The passenger has a million followers.
          - It is 7:42 in the morning.
        choices:
          - id: reply-fast
            text: Reply within minutes and apologise.
            goto: end-recovered
            score: 10
            consequence: The passenger thanks you.
          - id: ignore
            text: Say nothing.
            goto: end-escalated
            consequence: The post spreads.
      - id: end-recovered
        title: Recovered
        text: The story ends well.
        ending:
          outcome: recovered
          passes: true
          principle: Own it early
          debrief: You owned it.
      - id: end-escalated
        title: Escalated
        text: The story ends badly.
        ending:
          outcome: escalated
          passes: false
          rating: 20
          principle: Own it early
          debrief: Silence made it worse.
    """
)


def parsed(text: str = CASE) -> Case:
    case, problems = parse_case(text, "airline.yaml")
    assert problems == []
    assert case is not None
    return case


def test_top_level_fields_are_read():
    case = parsed()
    assert (case.id, case.title, case.module, case.version) == (
        "airline-angry-passenger",
        "The passenger with a million followers",
        "recognise",
        3,
    )
    assert case.summary == "A passenger's angry post is spreading fast."
    assert (case.pass_mark, case.start) == (60, "first-post")
    assert [node.id for node in case.nodes] == ["first-post", "end-recovered", "end-escalated"]


def test_navigation_fields_not_given_take_their_defaults():
    assert parsed().navigation == Navigation(
        allow_back=False, allow_restart=True, max_attempts=2, attempt_counts="latest"
    )


def test_a_case_without_navigation_gets_the_default_navigation():
    text = CASE.replace("navigation:\n  allow_back: false\n  max_attempts: 2\n  attempt_counts: latest\n", "")
    assert parsed(text).navigation == Navigation(
        allow_back=True, allow_restart=True, max_attempts=None, attempt_counts="best"
    )


def test_a_situation_reads_with_its_choices_and_what_is_known():
    node = parsed().node("first-post")
    assert node.text == "A passenger posts a photo\nof a broken seat.\n"
    assert node.known == ("The passenger has a million followers.", "It is 7:42 in the morning.")
    assert node.choices == (
        Choice(
            "reply-fast",
            "Reply within minutes and apologise.",
            "end-recovered",
            "The passenger thanks you.",
            10,
        ),
        Choice("ignore", "Say nothing.", "end-escalated", "The post spreads.", 0),
    )
    assert node.ending is None
    assert not node.is_ending


def test_a_choice_without_a_score_scores_zero():
    assert parsed().node("first-post").choice("ignore").score == 0


def test_an_ending_reads_with_its_rating_or_none():
    recovered = parsed().node("end-recovered")
    assert recovered.is_ending
    assert recovered.choices == ()
    assert recovered.ending == Ending("recovered", True, "Own it early", "You owned it.", None)
    assert parsed().node("end-escalated").ending.rating == 20


def test_text_fields_take_any_scalar_as_written():
    case = parsed(CASE.replace("title: Recovered", "title: 2024"))
    assert case.node("end-recovered").title == "2024"


def test_source_lines_point_at_each_key():
    case = parsed()
    assert case.source.line_of("pass_mark") == 6
    node = case.node("first-post")
    assert node.source.line == 13
    assert node.choices[0].source.line_of("goto") == 24
    assert node.choices[0].source.line_of("missing-key") == node.choices[0].source.line == 22


def test_line_numbers_are_not_part_of_equality():
    shifted = parsed("# a comment moves every line down\n" + CASE)
    assert shifted == parsed()
    assert shifted.node("first-post").source.line == 14


def test_parsed_cases_are_hashable_values():
    assert hash(parsed()) == hash(parsed())


def test_node_lookup_and_choice_lookup():
    case = parsed()
    assert case.has_node("end-recovered")
    assert not case.has_node("nowhere")
    with pytest.raises(KeyError):
        case.node("nowhere")
    assert case.node("first-post").choice("nowhere") is None


def test_the_first_of_two_nodes_with_one_id_is_the_one_a_goto_reaches():
    twice = (Node(id="a", title="first", text="x"), Node(id="a", title="second", text="y"))
    case = replace(parsed(), nodes=twice, start="a")
    assert case.node("a").title == "first"
    assert [node.title for node in case.graph_nodes] == ["first"]


def test_a_file_with_problems_still_parses_as_far_as_it_can():
    case, problems = parse_case(CASE.replace("score: 10", "score: ten"), "airline.yaml")
    assert [str(problem) for problem in problems] == [
        'airline.yaml:25: choice "reply-fast": score must be a whole number, not "ten"'
    ]
    assert case is not None
    assert case.node("first-post").choice("reply-fast").score == 0


def test_problems_print_as_file_line_message():
    problem = Problem("airline.yaml", 42, 'choice "reply-fast" leads to unknown node "secnd-node"', "first-post")
    assert str(problem) == 'airline.yaml:42: choice "reply-fast" leads to unknown node "secnd-node"'


def test_case_invalid_carries_every_problem():
    problems = [Problem("a.yaml", 1, "one"), Problem("a.yaml", 7, "two")]
    error = CaseInvalid(problems)
    assert error.problems == tuple(problems)
    assert str(error) == "a.yaml:1: one\na.yaml:7: two"
