"""What the validator reports, where, and in which words.

Each test breaks a valid case in one way and names the line the author has to fix.
"""

import re
from pathlib import Path
from textwrap import dedent

import pytest

import quizzes
from quizzes import engine
from quizzes.__main__ import main
from quizzes.case_format import (
    MAX_CHOICE_TEXT_CHARS,
    MAX_CONSEQUENCE_CHARS,
    MAX_DEBRIEF_CHARS,
    MAX_FILE_BYTES,
    MAX_NODE_TEXT_CHARS,
    MAX_NODES,
)
from quizzes.validator import CaseInvalid, Problem, check_case, load_case

ON_A_LOOP = "a choice on a loop may not score above 0, or it could be repeated for points"

VALID = dedent(
    """\
    id: airline-angry-passenger
    title: The passenger with a million followers
    module: recognise
    version: 1
    summary: A passenger's angry post is spreading fast.
    pass_mark: 60
    navigation:
      allow_back: true
      allow_restart: true
      max_attempts: null
      attempt_counts: best
    start: first-post
    nodes:
      - id: first-post
        title: A post at 7:42
        text: A passenger posts a photo of a broken seat.
        known:
          - The passenger has a million followers.
        choices:
          - id: reply-fast
            text: Reply within minutes and apologise.
            goto: second-node
            score: 10
            consequence: The passenger thanks you.
          - id: ignore
            text: Say nothing and hope it passes.
            goto: end-escalated
            score: -5
            consequence: The post spreads.
      - id: second-node
        title: The follow-up
        text: The passenger asks what you will do about it.
        choices:
          - id: fix-it
            text: Offer a concrete fix.
            goto: end-recovered
            score: 10
            consequence: The story turns positive.
          - id: deflect
            text: Blame the ground crew.
            goto: end-escalated
            consequence: Nobody believes it.
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
          principle: Own it early
          debrief: Silence made it worse.
    """
)


def problems_in(text: str) -> list[tuple[int, str]]:
    """The (line, message) pairs the validator reports for a file named airline.yaml."""
    case, problems = check_case(text, "airline.yaml")
    assert (case is None) == bool(problems)
    assert all(problem.file == "airline.yaml" for problem in problems)
    return [(problem.line, problem.message) for problem in problems]


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """The 1-based line holding the n-th occurrence of needle."""
    lines = [number for number, line in enumerate(text.splitlines(), 1) if needle in line]
    return lines[occurrence - 1]


def edited(old: str, new: str, text: str = VALID) -> str:
    """The text with the first occurrence of old replaced by new."""
    assert old in text
    return text.replace(old, new, 1)


def with_node(node_id: str, block: str, text: str = VALID) -> str:
    """The text with one node's whole entry replaced by block (given unindented)."""
    begin = text.index(f"  - id: {node_id}\n")
    next_node = text.find("\n  - id: ", begin)
    end = len(text) if next_node == -1 else next_node + 1
    return text[:begin] + indent_node(block) + text[end:]


def indent_node(block: str) -> str:
    """A node written flush left, indented to sit in the nodes list."""
    return "".join(f"  {line}" if line.strip() else line for line in dedent(block).splitlines(keepends=True))


def test_the_valid_case_has_no_problems():
    assert problems_in(VALID) == []
    assert load_case(VALID, "airline.yaml").id == "airline-angry-passenger"


def test_load_case_raises_with_every_problem():
    text = edited("goto: second-node", "goto: secnd-node", edited("passes: true", "passes: maybe"))
    with pytest.raises(CaseInvalid) as raised:
        load_case(text, "airline.yaml")
    assert raised.value.problems == tuple(check_case(text, "airline.yaml")[1])
    assert [problem.code for problem in raised.value.problems] == [
        "unknown-target",
        "unreachable",
        "unreachable",
        "invalid-value",
    ]
    assert all(isinstance(problem, Problem) for problem in raised.value.problems)


def test_check_case_returns_no_case_when_there_are_problems():
    assert check_case(edited("version: 1", "version: one"), "airline.yaml")[0] is None


def test_problems_are_listed_in_line_order_and_all_of_them_are_reported():
    text = edited("pass_mark: 60", "pass_mark: 160", edited("outcome: escalated", "outcome: exploded"))
    lines = [line for line, _ in problems_in(text)]
    assert lines == sorted(lines)
    assert lines == [line_of(text, "pass_mark"), line_of(text, "outcome: exploded")]


# --- Before and while parsing YAML -------------------------------------------------------


def test_a_file_over_the_size_limit_is_refused_before_parsing():
    text = VALID + "# " + "x" * MAX_FILE_BYTES + "\n[broken"
    assert problems_in(text) == [(1, f"the file is {len(text.encode()):,} bytes; the limit is {MAX_FILE_BYTES:,}")]


def test_malformed_yaml_names_the_parsers_line():
    text = edited("title: The follow-up", "title: [The follow-up")
    assert problems_in(text) == [
        (
            line_of(text, "text: The passenger asks"),
            "malformed YAML: expected ',' or ']', but got ':' "
            f"(while parsing a flow sequence on line {line_of(text, '[The follow-up')})",
        )
    ]


def test_a_bad_indent_is_malformed_yaml():
    text = edited("    title: The follow-up", "     title: The follow-up")
    assert problems_in(text) == [
        (line_of(text, "title: The follow-up"), "malformed YAML: mapping values are not allowed here")
    ]


def test_two_documents_in_one_file_are_malformed():
    assert problems_in(VALID + "---\nid: another\n") == [
        (
            line_of(VALID, "debrief: Silence") + 1,
            "malformed YAML: expected a single document in the stream, but found another document",
        )
    ]


def test_an_empty_file_says_so():
    assert problems_in("") == [(1, "the file is empty")]
    assert problems_in("# only a comment\n") == [(1, "the file is empty")]


def test_a_file_that_is_not_a_mapping_says_so():
    assert problems_in("- id: first-post\n") == [(1, "the case must be a mapping of fields, not a list")]


def test_deeply_nested_yaml_is_reported_not_raised():
    assert problems_in("[" * 5000) == [(1, "malformed YAML: the text is nested too deeply")]


def test_a_control_character_is_reported_on_its_line():
    text = edited("title: Recovered", "title: Recov\x07ered")
    assert problems_in(text) == [
        (line_of(text, "Recov"), "malformed YAML: the character U+0007 is not allowed in YAML")
    ]


# --- Fields ------------------------------------------------------------------------------


def test_a_missing_top_level_field_is_reported_on_line_1():
    assert problems_in(edited("summary: A passenger's angry post is spreading fast.\n", "")) == [
        (1, '"summary" is missing')
    ]


def test_an_unknown_key_suggests_the_key_meant():
    text = edited("pass_mark: 60", "pass-mark: 60")
    assert problems_in(text) == [
        (1, '"pass_mark" is missing'),
        (line_of(text, "pass-mark"), 'unknown key "pass-mark" (did you mean "pass_mark"?)'),
    ]


def test_an_unknown_key_in_a_node_names_the_node():
    text = edited("    known:", "    knowns:")
    assert (
        line_of(text, "knowns:"),
        'node "first-post": unknown key "knowns" (did you mean "known"?)',
    ) in problems_in(text)


def test_an_unknown_key_with_nothing_close_gets_no_suggestion():
    text = edited("    score: 10", "    colour: red")
    assert (line_of(text, "colour"), 'choice "reply-fast": unknown key "colour"') in problems_in(text)


def test_a_key_given_twice_is_reported_where_it_repeats():
    text = edited("title: Recovered\n", "title: Recovered\n    title: Saved\n")
    assert problems_in(text) == [
        (
            line_of(text, "title: Saved"),
            f'node "end-recovered": "title" appears twice (first on line {line_of(text, "title: Recovered")})',
        )
    ]


def test_a_missing_field_in_a_node_points_at_the_node():
    text = edited("    title: The follow-up\n", "")
    assert problems_in(text) == [(line_of(text, "id: second-node"), 'node "second-node": "title" is missing')]


def test_a_missing_field_in_a_choice_points_at_the_choice():
    text = edited("        consequence: Nobody believes it.\n", "")
    assert problems_in(text) == [(line_of(text, "id: deflect"), 'choice "deflect": "consequence" is missing')]


def test_a_missing_field_in_an_ending_points_at_the_ending():
    text = edited("      principle: Own it early\n      debrief: You owned it.\n", "      debrief: You owned it.\n")
    assert problems_in(text) == [
        (line_of(text, "outcome: recovered"), 'ending "end-recovered": "principle" is missing')
    ]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("version: 1", "version: one", 'version must be a whole number, not "one"'),
        ("version: 1", "version: 0", "version must be from 1 to 1000000, not 0"),
        ("pass_mark: 60", "pass_mark: 60.5", "pass_mark must be a whole number, not 60.5"),
        ("pass_mark: 60", "pass_mark: 101", "pass_mark must be from 0 to 100, not 101"),
        ("pass_mark: 60", "pass_mark: -1", "pass_mark must be from 0 to 100, not -1"),
        ("allow_back: true", "allow_back: 'yes'", 'navigation: allow_back must be true or false, not "yes"'),
        (
            "max_attempts: null",
            "max_attempts: 0",
            "navigation: max_attempts must be from 1 to 1000, or null, not 0",
        ),
        (
            "max_attempts: null",
            "max_attempts: lots",
            'navigation: max_attempts must be a whole number or null, not "lots"',
        ),
        (
            "attempt_counts: best",
            "attempt_counts: first",
            'navigation: attempt_counts must be one of best, latest, not "first"',
        ),
        (
            "module: recognise",
            "module: recognize",
            'module must be one of recognise, own, learn, not "recognize" (did you mean "recognise"?)',
        ),
        ("score: 10", "score: 1.5", 'choice "reply-fast": score must be a whole number, not 1.5'),
        ("score: 10", "score: 5000", 'choice "reply-fast": score must be from -1000 to 1000, not 5000'),
        (
            "passes: false",
            'passes: "false"',
            'ending "end-escalated": passes must be true or false, not "false"',
        ),
        (
            "outcome: recovered",
            "outcome: recoverd",
            'ending "end-recovered": outcome must be one of recovered, contained, escalated, not "recoverd" (did you mean "recovered"?)',
        ),
        (
            "principle: Own it early",
            "principle: [Own it early]",
            'ending "end-recovered": principle must be text, not a list',
        ),
        ("title: Recovered", "title: ~", 'node "end-recovered": title must not be empty'),
        ("title: Recovered", "title: '  '", 'node "end-recovered": title must not be empty'),
    ],
)
def test_a_field_of_the_wrong_type_or_value_is_reported_on_its_line(old, new, message):
    text = edited(old, new)
    assert problems_in(text) == [(line_of(text, new), message)]


def test_a_rating_outside_0_to_100_is_reported():
    text = edited("passes: false\n", "passes: false\n      rating: 120\n")
    assert problems_in(text) == [
        (
            line_of(text, "rating: 120"),
            'ending "end-escalated": rating must be from 0 to 100, or null, not 120',
        )
    ]


def test_nodes_must_be_a_list():
    text = VALID[: VALID.index("  - id: first-post")] + "  first-post: {}\n"
    assert problems_in(text) == [(line_of(text, "nodes:"), "nodes must be a list, not a mapping")]


def test_each_node_must_be_a_mapping():
    text = edited("  - id: end-escalated\n", "  - just a string\n  - id: end-escalated\n")
    assert problems_in(text) == [
        (line_of(text, "just a string"), 'node #4 must be a mapping of fields, not "just a string"')
    ]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "- id: second-node",
            "- id: Second_Node",
            'node "Second_Node": id "Second_Node" must be lowercase-kebab: a-z, 0-9 and single hyphens, like "reply-fast"',
        ),
        (
            "- id: deflect",
            "- id: blame crew",
            'choice "blame crew": id "blame crew" must be lowercase-kebab: a-z, 0-9 and single hyphens, like "reply-fast"',
        ),
        (
            "id: airline-angry-passenger",
            "id: airline--passenger",
            'id "airline--passenger" must be lowercase-kebab: a-z, 0-9 and single hyphens, like "reply-fast"',
        ),
    ],
)
def test_ids_must_be_lowercase_kebab(old, new, message):
    text = edited(old, new)
    assert (line_of(text, new), message) in problems_in(text)


@pytest.mark.parametrize(
    ("old", "limit", "message"),
    [
        (
            "text: The passenger asks what you will do about it.",
            MAX_NODE_TEXT_CHARS,
            'node "second-node": text is {length:,} characters long; the limit is {limit:,}',
        ),
        (
            "text: Blame the ground crew.",
            MAX_CHOICE_TEXT_CHARS,
            'choice "deflect": text is {length:,} characters long; the limit is {limit:,}',
        ),
        (
            "consequence: Nobody believes it.",
            MAX_CONSEQUENCE_CHARS,
            'choice "deflect": consequence is {length:,} characters long; the limit is {limit:,}',
        ),
        (
            "debrief: You owned it.",
            MAX_DEBRIEF_CHARS,
            'ending "end-recovered": debrief is {length:,} characters long; the limit is {limit:,}',
        ),
    ],
)
def test_text_over_its_length_limit_is_reported(old, limit, message):
    key = old.split(":")[0]
    text = edited(old, f"{key}: {'w' * (limit + 1)}")
    assert problems_in(text) == [(line_of(text, "w" * limit), message.format(length=limit + 1, limit=limit))]


def test_text_at_its_length_limit_is_fine():
    assert problems_in(edited("text: Blame the ground crew.", f"text: {'w' * MAX_CHOICE_TEXT_CHARS}")) == []


def test_too_many_known_items_are_reported():
    text = edited("      - The passenger has a million followers.\n", "      - fact\n" * 9)
    assert problems_in(text) == [(line_of(text, "known:"), 'node "first-post": known has 9 items; the limit is 8')]


def test_a_node_with_both_choices_and_an_ending_is_reported():
    text = edited("    ending:\n      outcome: recovered", "    choices: [a, b]\n    ending:\n      outcome: recovered")
    assert (
        line_of(text, "id: end-recovered"),
        'node "end-recovered": a node has either choices (a situation) or an ending, not both',
    ) in problems_in(text)


def test_every_problem_names_the_node_it_belongs_to():
    _, problems = check_case(edited("score: 10", "score: ten"), "airline.yaml")
    assert [problem.node_id for problem in problems] == ["first-post"]


# --- Dead ends and choice counts -----------------------------------------------------------


def test_a_node_with_neither_choices_nor_an_ending_is_a_dead_end():
    text = with_node("second-node", "- id: second-node\n  title: The follow-up\n  text: And then?\n")
    assert problems_in(text) == [
        (
            line_of(text, "id: second-node"),
            'node "second-node": dead end: the node has no choices and no ending',
        ),
        (
            line_of(text, "id: end-recovered"),
            'node "end-recovered" cannot be reached from the start node "first-post"',
        ),
    ]


def test_a_situation_with_no_choices_is_a_dead_end():
    text = with_node("second-node", "- id: second-node\n  title: The follow-up\n  text: And then?\n  choices: []\n")
    assert problems_in(text) == [
        (
            line_of(text, "choices: []"),
            'node "second-node": dead end: choices is empty; a situation needs 2 to 4 choices',
        ),
        (
            line_of(text, "id: end-recovered"),
            'node "end-recovered" cannot be reached from the start node "first-post"',
        ),
    ]


def test_a_situation_with_one_choice_is_a_dead_end():
    deflect = VALID.index("      - id: deflect")
    recovered = VALID.index("  - id: end-recovered")
    text = VALID[:deflect] + VALID[recovered:]
    assert problems_in(text) == [
        (
            line_of(text, "choices:", 2),
            'node "second-node": dead end: the node has only 1 choice; a situation needs 2 to 4',
        ),
    ]


def test_a_situation_with_five_choices_has_too_many():
    extra = "".join(
        f"      - id: extra-{n}\n        text: t\n        goto: end-escalated\n        consequence: c\n"
        for n in range(3)
    )
    text = edited("  - id: end-recovered\n", extra + "  - id: end-recovered\n")
    assert problems_in(text) == [
        (line_of(text, "choices:", 2), 'node "second-node": the node has 5 choices; a situation needs 2 to 4')
    ]


# --- The graph -----------------------------------------------------------------------------


def test_a_duplicate_node_id_is_reported_at_the_second_one():
    text = VALID + indent_node(
        """\
        - id: end-recovered
          title: Again
          text: A second node with the same id.
          ending: {outcome: recovered, passes: true, principle: p, debrief: d}
        """
    )
    first = line_of(text, "id: end-recovered")
    assert problems_in(text) == [
        (
            line_of(text, "id: end-recovered", 2),
            f'node id "end-recovered" is used twice (first on line {first})',
        ),
    ]


def test_a_duplicate_choice_id_in_one_node_is_reported():
    text = edited("- id: deflect", "- id: fix-it")
    assert problems_in(text) == [
        (
            line_of(text, "id: fix-it", 2),
            f'choice id "fix-it" is used twice in node "second-node" (first on line {line_of(text, "id: fix-it")})',
        ),
    ]


def test_the_same_choice_id_in_different_nodes_is_fine():
    assert problems_in(edited("- id: deflect", "- id: reply-fast")) == []


def test_a_choice_leading_to_an_unknown_node_is_reported_with_a_suggestion():
    text = edited("goto: second-node", "goto: secnd-node")
    assert problems_in(text) == [
        (
            line_of(text, "goto: secnd-node"),
            'choice "reply-fast" leads to unknown node "secnd-node" (did you mean "second-node"?)',
        ),
        (
            line_of(text, "id: second-node"),
            'node "second-node" cannot be reached from the start node "first-post"',
        ),
        (
            line_of(text, "id: end-recovered"),
            'node "end-recovered" cannot be reached from the start node "first-post"',
        ),
    ]


def test_an_unknown_start_is_reported():
    text = edited("start: first-post", "start: frist-post")
    assert problems_in(text) == [
        (
            line_of(text, "start: frist-post"),
            'start names unknown node "frist-post" (did you mean "first-post"?)',
        )
    ]


def test_a_start_that_is_an_ending_is_reported():
    text = edited("start: first-post", "start: end-recovered")
    assert problems_in(text) == [
        (
            line_of(text, "start: end-recovered"),
            'the start node "end-recovered" is an ending: a case needs at least one choice',
        )
    ]


def test_an_unreachable_node_is_reported_at_the_node():
    text = edited("goto: second-node", "goto: end-recovered")
    assert problems_in(text) == [
        (
            line_of(text, "id: second-node"),
            'node "second-node" cannot be reached from the start node "first-post"',
        )
    ]


def test_a_loop_that_can_be_entered_but_not_left_is_reported_once():
    loop = indent_node(
        """\
        - id: stuck
          title: Going round
          text: Every reply starts another argument.
          choices:
            - {id: argue, text: Argue back., goto: stuck-again, consequence: It goes on.}
            - {id: argue-more, text: Argue harder., goto: stuck, consequence: It goes on.}
        - id: stuck-again
          title: Still going
          text: And again.
          choices:
            - {id: argue, text: Argue back., goto: stuck, consequence: It goes on.}
            - {id: sulk, text: Sulk., goto: stuck, consequence: Nothing changes.}
        """
    )
    text = edited("goto: end-escalated\n        consequence: Nobody", "goto: stuck\n        consequence: Nobody")
    text += loop
    assert problems_in(text) == [
        (
            line_of(text, "id: stuck"),
            'nodes "stuck", "stuck-again" form a loop with no way out: no ending can be reached from them',
        ),
    ]


def test_a_node_looping_on_itself_with_no_way_out_is_reported():
    text = edited("goto: end-escalated\n        consequence: Nobody", "goto: second-node\n        consequence: Nobody")
    text = edited("goto: end-recovered", "goto: second-node", text)
    assert problems_in(text) == [
        (
            line_of(text, "id: second-node"),
            'node "second-node" loops back to itself with no way out: no ending can be reached from it',
        ),
        (
            line_of(text, "score: 10", 2),
            f'choice "fix-it" scores 10 but lies on a loop back to node "second-node"; {ON_A_LOOP}',
        ),
        (
            line_of(text, "id: end-recovered"),
            'node "end-recovered" cannot be reached from the start node "first-post"',
        ),
    ]


def test_a_loop_with_a_way_out_is_fine_when_it_does_not_score():
    text = edited("goto: end-escalated\n        consequence: Nobody", "goto: second-node\n        consequence: Nobody")
    assert problems_in(text) == []


def test_a_positive_score_on_a_loop_is_reported_at_the_score():
    text = edited(
        "goto: end-escalated\n        consequence: Nobody",
        "goto: first-post\n        score: 3\n        consequence: Nobody",
    )
    assert problems_in(text) == [
        (
            line_of(text, "score: 10"),
            f'choice "reply-fast" scores 10 but lies on a loop back to node "first-post"; {ON_A_LOOP}',
        ),
        (
            line_of(text, "score: 3"),
            f'choice "deflect" scores 3 but lies on a loop back to node "second-node"; {ON_A_LOOP}',
        ),
    ]


def test_a_case_without_endings_is_reported_once():
    text = VALID[: VALID.index("  - id: end-recovered")]
    text = text.replace("goto: end-recovered", "goto: first-post").replace("goto: end-escalated", "goto: second-node")
    text = text.replace("score: 10", "score: 0")
    assert problems_in(text) == [
        (line_of(text, "nodes:"), 'the case has no ending: at least one node needs an "ending"')
    ]


def test_endings_that_cannot_be_reached_are_reported_with_no_ending_reachable():
    text = VALID.replace("goto: end-recovered", "goto: first-post").replace("goto: end-escalated", "goto: second-node")
    text = text.replace("score: 10", "score: 0")
    assert problems_in(text) == [
        (line_of(text, "start: first-post"), 'no ending can be reached from the start node "first-post"'),
        (
            line_of(text, "id: end-recovered"),
            'node "end-recovered" cannot be reached from the start node "first-post"',
        ),
        (
            line_of(text, "id: end-escalated"),
            'node "end-escalated" cannot be reached from the start node "first-post"',
        ),
    ]


def test_a_pass_mark_above_the_best_path_is_reported():
    # The best score (30) is on a failing path, so the best passing path scores 20 of 30.
    text = edited("        consequence: Nobody", "        score: 20\n        consequence: Nobody")
    assert problems_in(text) == []
    text = edited("pass_mark: 60", "pass_mark: 80", text)
    assert problems_in(text) == [
        (
            line_of(text, "pass_mark"),
            "the pass mark of 80% cannot be reached: the best path to a passing ending scores 67%",
        ),
    ]


def test_a_passing_ending_rated_below_the_pass_mark_is_reported():
    text = edited("passes: true", "passes: true\n      rating: 50")
    assert problems_in(text) == [
        (
            line_of(text, "rating: 50"),
            'ending "end-recovered" passes, but its rating of 50% is below the pass mark of 60%, so reaching it never passes',
        ),
    ]


def test_a_case_whose_passing_endings_cannot_be_reached_cannot_be_passed():
    text = edited("passes: true", "passes: false")
    assert problems_in(text) == [
        (
            line_of(text, "pass_mark"),
            'the pass mark cannot be reached: no ending with "passes: true" can be reached',
        ),
    ]


def test_too_many_nodes_are_reported_and_the_graph_is_not_checked():
    # Each extra node is unreachable, which would be reported if the graph were checked.
    extra = "  - {id: n%d, title: t, text: x, ending: {outcome: recovered, passes: true, principle: p, debrief: d}}\n"
    text = VALID + "".join(extra % number for number in range(MAX_NODES))
    assert problems_in(text) == [
        (line_of(text, "nodes:"), f"the case has {MAX_NODES + 4} nodes; the limit is {MAX_NODES}")
    ]


# --- The authoring reference -----------------------------------------------------------------

FORMAT = (Path(quizzes.__file__).parent / "FORMAT.md").read_text()


def test_the_example_in_the_format_reference_is_valid_and_scores_as_it_says():
    example = re.search(r"```yaml\n(.*?)```", FORMAT, re.DOTALL).group(1)
    case = load_case(example, "FORMAT.md")
    assert engine.max_score(case) == 20
    deflected = engine.replay(
        case, [engine.Step("first-post", "reply-fast", 10), engine.Step("follow-up", "deflect", 0)]
    )
    assert (engine.percent(case, deflected), engine.passed(case, deflected)) == (50, False)


@pytest.mark.parametrize(
    "limit",
    [
        "256 KiB",
        "≤ 60",
        "≤ 120 chars",
        "≤ 500 chars",
        "≤ 4,000 chars",
        "≤ 300 chars",
        "≤ 1,500 chars",
        "≤ 200 chars",
    ],
)
def test_the_format_reference_states_the_limits(limit):
    assert limit in FORMAT


def test_the_format_reference_documents_every_problem_code_the_tests_meet():
    documented = set(re.findall(r"^\| `([a-z-]+)` \|", FORMAT, re.MULTILINE))
    texts = [
        VALID,
        "",
        "[",
        edited("goto: second-node", "goto: nowhere"),
        edited("pass_mark: 60", "pass_mark: x"),
    ]
    met = {problem.code for text in texts for problem in check_case(text, "a.yaml")[1]}
    assert met <= documented


# --- The command line ---------------------------------------------------------------------


def test_the_command_line_prints_problems_as_file_line_message_and_exits_1(tmp_path, capsys):
    broken = tmp_path / "airline.yaml"
    broken.write_text(edited("goto: second-node", "goto: secnd-node"))
    assert main(["validate", str(broken)]) == 1
    printed = capsys.readouterr()
    assert printed.out.splitlines()[0] == (
        f"{broken}:{line_of(VALID, 'goto: second-node')}: "
        'choice "reply-fast" leads to unknown node "secnd-node" (did you mean "second-node"?)'
    )
    assert printed.err == "1 case file(s) checked, 3 problem(s)\n"


def test_the_command_line_exits_0_for_valid_files_and_reads_folders(tmp_path, capsys):
    (tmp_path / "airline.yaml").write_text(VALID)
    (tmp_path / "notes.txt").write_text("not a case")
    assert main(["validate", str(tmp_path)]) == 0
    assert capsys.readouterr().out == ""


def test_the_command_line_reports_a_case_id_used_by_two_files(tmp_path, capsys):
    (tmp_path / "a.yaml").write_text(VALID)
    (tmp_path / "b.yaml").write_text(VALID)
    assert main(["validate", str(tmp_path)]) == 1
    assert capsys.readouterr().out == (
        f'{tmp_path / "b.yaml"}:1: case id "airline-angry-passenger" is also used by {tmp_path / "a.yaml"}; '
        "case ids must be unique\n"
    )


def test_the_command_line_reports_files_it_cannot_read(tmp_path, capsys):
    (tmp_path / "latin1.yaml").write_bytes(b"id: caf\xe9\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["validate", str(tmp_path / "latin1.yaml"), str(tmp_path / "missing.yaml"), str(empty)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{tmp_path / 'latin1.yaml'}:1: the file is not UTF-8 text"
    assert out[1].startswith(f"{tmp_path / 'missing.yaml'}:1: cannot read the file: ")
    assert out[2] == f"{empty}:1: no case files here (expected .yaml or .yml files)"
