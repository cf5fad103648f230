"""The rules of playing a case: steps, refusals, going back, scoring, the best path, resuming."""

import ast
from dataclasses import replace
from pathlib import Path
from textwrap import dedent

import pytest

import quizzes
from quizzes import engine
from quizzes.case_format import Case, Navigation
from quizzes.engine import BestPath, Progress, State, Step, StepRefused
from quizzes.validator import load_case

# first-post --reply-fast(+10)--> follow-up --fix-it(+10)--> end-recovered (passes)
#            |                            |--ask-again(0)--> follow-up (a loop with a way out)
#            |                            '--deflect(0)----> end-escalated (fails)
#            '--ignore(-5)-------> end-escalated
#            '--hold-statement(+5)--> end-contained (passes)
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
              - {id: reply-fast, text: Reply and apologise., goto: follow-up, score: 10, consequence: Thanks.}
              - {id: ignore, text: Say nothing., goto: end-escalated, score: -5, consequence: It spreads.}
              - {id: hold-statement, text: Post a holding statement., goto: end-contained, score: 5, consequence: Calmer.}
          - id: follow-up
            title: The follow-up
            text: The passenger asks what you will do.
            choices:
              - {id: fix-it, text: Offer a fix., goto: end-recovered, score: 10, consequence: Good.}
              - {id: ask-again, text: Ask for details., goto: follow-up, consequence: More details.}
              - {id: deflect, text: Blame the crew., goto: end-escalated, consequence: Nobody buys it.}
          - id: end-recovered
            title: Recovered
            text: It ends well.
            ending: {outcome: recovered, passes: true, principle: Own it early, debrief: You owned it.}
          - id: end-contained
            title: Contained
            text: It calms down.
            ending: {outcome: contained, passes: true, principle: Own it early, debrief: Half way.}
          - id: end-escalated
            title: Escalated
            text: It ends badly.
            ending: {outcome: escalated, passes: false, principle: Own it early, debrief: Silence hurt.}
        """
    ),
    "airline.yaml",
)


def play(case: Case, *choices: tuple[str, str]) -> State:
    state = engine.start(case)
    for node_id, choice_id in choices:
        state = engine.choose(case, state, node_id, choice_id)
    return state


def refusal(action, *arguments, **keywords) -> StepRefused:
    with pytest.raises(StepRefused) as raised:
        action(*arguments, **keywords)
    return raised.value


def with_ending(case: Case, node_id: str, **changes) -> Case:
    nodes = tuple(
        replace(node, ending=replace(node.ending, **changes)) if node.id == node_id else node for node in case.nodes
    )
    return replace(case, nodes=nodes)


def with_scores(case: Case, **scores: int) -> Case:
    """The case with some choices (named by id, dashes as underscores) rescored."""

    def rescored(choice):
        key = choice.id.replace("-", "_")
        return replace(choice, score=scores[key]) if key in scores else choice

    nodes = tuple(replace(node, choices=tuple(rescored(choice) for choice in node.choices)) for node in case.nodes)
    return replace(case, nodes=nodes)


# --- Playing ------------------------------------------------------------------------------


def test_an_attempt_starts_at_the_start_node_with_an_empty_path():
    assert engine.start(CASE) == State("airline-angry-passenger", 2, (), "first-post", False, None)


def test_a_choice_moves_to_its_target_and_records_the_step_with_its_score():
    state = play(CASE, ("first-post", "reply-fast"))
    assert state.current_node == "follow-up"
    assert state.path == (Step("first-post", "reply-fast", 10),)
    assert not state.ended


def test_reaching_an_ending_ends_the_attempt():
    state = play(CASE, ("first-post", "reply-fast"), ("follow-up", "fix-it"))
    assert (state.ended, state.ending_node, state.current_node) == (True, "end-recovered", "end-recovered")


def test_states_are_immutable_values():
    first = engine.start(CASE)
    engine.choose(CASE, first, "first-post", "reply-fast")
    assert first == engine.start(CASE)
    with pytest.raises(AttributeError):
        first.current_node = "elsewhere"


def test_a_loop_can_be_taken_again_and_again():
    state = play(CASE, ("first-post", "reply-fast"), ("follow-up", "ask-again"), ("follow-up", "ask-again"))
    assert state.current_node == "follow-up"
    assert len(state.path) == 3


# --- Refusals -----------------------------------------------------------------------------


def test_answering_a_step_twice_is_refused_as_already_answered():
    state = play(CASE, ("first-post", "reply-fast"))
    refused = refusal(engine.choose, CASE, state, "first-post", "ignore")
    assert (refused.kind, refused.reason) == ("already-answered", "this step was already answered")


def test_answering_a_step_that_is_not_current_is_refused():
    refused = refusal(engine.choose, CASE, engine.start(CASE), "follow-up", "fix-it")
    assert (refused.kind, refused.reason) == ("not-current", '"follow-up" is not the current step')


def test_a_choice_that_is_not_the_nodes_is_refused():
    refused = refusal(engine.choose, CASE, engine.start(CASE), "first-post", "fix-it")
    assert (refused.kind, refused.reason) == (
        "unknown-choice",
        '"fix-it" is not one of the choices at "first-post"',
    )


def test_choosing_after_the_end_is_refused():
    state = play(CASE, ("first-post", "ignore"))
    refused = refusal(engine.choose, CASE, state, "end-escalated", "anything")
    assert (refused.kind, refused.reason) == ("ended", "the attempt has ended")


def test_a_double_submit_of_the_last_choice_is_refused_as_already_answered():
    state = play(CASE, ("first-post", "ignore"))
    assert refusal(engine.choose, CASE, state, "first-post", "ignore").kind == "already-answered"


def test_on_a_loop_only_the_step_number_tells_a_double_submit_from_a_new_answer():
    state = play(CASE, ("first-post", "reply-fast"), ("follow-up", "ask-again"))
    assert state.current_node == "follow-up"
    refused = refusal(engine.choose, CASE, state, "follow-up", "ask-again", step=1)
    assert (refused.kind, refused.reason) == ("already-answered", "this step was already answered")
    assert engine.choose(CASE, state, "follow-up", "fix-it", step=2).ended


def test_a_step_number_from_before_going_back_is_not_current():
    state = engine.back(CASE, play(CASE, ("first-post", "reply-fast"), ("follow-up", "ask-again")))
    refused = refusal(engine.choose, CASE, state, "follow-up", "fix-it", step=2)
    assert (refused.kind, refused.reason) == ("not-current", '"follow-up" is not the current step')


def test_a_state_from_another_case_version_is_refused():
    refused = refusal(engine.choose, replace(CASE, version=3), engine.start(CASE), "first-post", "ignore")
    assert refused.kind == "wrong-case"
    assert (
        refused.reason
        == 'this attempt belongs to case "airline-angry-passenger" version 2, not "airline-angry-passenger" version 3'
    )


# --- Going back ---------------------------------------------------------------------------


def test_back_undoes_the_last_choice():
    state = play(CASE, ("first-post", "reply-fast"), ("follow-up", "ask-again"))
    assert engine.back(CASE, state) == play(CASE, ("first-post", "reply-fast"))
    assert engine.back(CASE, engine.back(CASE, state)) == engine.start(CASE)


def test_back_at_the_start_is_refused():
    assert refusal(engine.back, CASE, engine.start(CASE)).kind == "at-start"


def test_back_after_the_end_is_refused():
    assert refusal(engine.back, CASE, play(CASE, ("first-post", "ignore"))).kind == "ended"


def test_back_is_refused_when_the_case_does_not_allow_it():
    case = replace(CASE, navigation=Navigation(allow_back=False))
    refused = refusal(engine.back, case, play(case, ("first-post", "reply-fast")))
    assert (refused.kind, refused.reason) == ("back-not-allowed", "this case does not allow going back")


# --- Scoring ------------------------------------------------------------------------------


def test_the_maximum_is_the_best_path_to_any_ending_and_ignores_loops():
    assert engine.max_score(CASE) == 20


def test_the_path_score_is_the_sum_of_the_choices_taken():
    assert engine.score(CASE, play(CASE, ("first-post", "reply-fast"), ("follow-up", "deflect"))) == 10


def test_the_best_path_scores_100_percent_and_passes():
    state = play(CASE, ("first-post", "reply-fast"), ("follow-up", "fix-it"))
    assert (engine.percent(CASE, state), engine.passed(CASE, state)) == (100, True)


def test_a_passing_ending_below_the_pass_mark_does_not_pass():
    state = play(CASE, ("first-post", "hold-statement"))
    assert (engine.percent(CASE, state), engine.passed(CASE, state)) == (25, False)


def test_a_failing_ending_never_passes_whatever_the_percent():
    case = replace(CASE, pass_mark=0)
    assert not engine.passed(case, play(case, ("first-post", "reply-fast"), ("follow-up", "deflect")))


def test_a_negative_path_score_counts_as_zero_percent():
    state = play(CASE, ("first-post", "ignore"))
    assert (engine.score(CASE, state), engine.percent(CASE, state)) == (-5, 0)


def test_an_endings_rating_replaces_the_path_percent():
    case = with_ending(CASE, "end-contained", rating=75)
    state = play(case, ("first-post", "hold-statement"))
    assert (engine.percent(case, state), engine.passed(case, state)) == (75, True)


def test_percent_rounds_halves_up():
    case = with_scores(CASE, reply_fast=1, fix_it=7, hold_statement=1)
    assert engine.percent(case, play(case, ("first-post", "hold-statement"))) == 13  # 12.5%


def test_with_a_maximum_of_zero_a_passing_ending_is_100_percent_and_a_failing_one_0():
    case = with_scores(CASE, reply_fast=0, fix_it=0, hold_statement=0, ignore=0)
    assert engine.max_score(case) == 0
    assert engine.percent(case, play(case, ("first-post", "hold-statement"))) == 100
    assert engine.percent(case, play(case, ("first-post", "ignore"))) == 0


def test_an_unfinished_attempt_has_not_passed_and_shows_its_share_so_far():
    state = play(CASE, ("first-post", "reply-fast"))
    assert (engine.percent(CASE, state), engine.passed(CASE, state)) == (50, False)


# --- The best path ------------------------------------------------------------------------


def test_the_best_path_is_the_highest_percent_to_a_passing_ending():
    assert engine.best_path(CASE) == BestPath(
        (Step("first-post", "reply-fast", 10), Step("follow-up", "fix-it", 10)), "end-recovered", 100
    )


def test_between_equal_percents_the_best_path_is_the_shortest():
    case = with_ending(CASE, "end-contained", rating=100)
    assert engine.best_path(case) == BestPath((Step("first-post", "hold-statement", 5),), "end-contained", 100)


def test_a_case_with_no_passing_ending_has_no_best_path():
    case = with_ending(with_ending(CASE, "end-recovered", passes=False), "end-contained", passes=False)
    assert engine.best_path(case) is None


# --- Progress -----------------------------------------------------------------------------


def test_progress_counts_steps_taken_and_the_fewest_left():
    assert engine.progress(CASE, engine.start(CASE)) == Progress(taken=0, remaining=1)
    assert engine.progress(CASE, play(CASE, ("first-post", "reply-fast"), ("follow-up", "ask-again"))) == Progress(2, 1)
    assert engine.progress(CASE, play(CASE, ("first-post", "ignore"))) == Progress(1, 0)


# --- Resuming -----------------------------------------------------------------------------


def test_replay_rebuilds_the_state_from_its_steps():
    state = play(CASE, ("first-post", "reply-fast"), ("follow-up", "ask-again"), ("follow-up", "fix-it"))
    assert engine.replay(CASE, state.path) == state


def test_replay_refuses_a_step_the_case_does_not_have():
    steps = [Step("first-post", "reply-fast", 10), Step("follow-up", "shout", 0)]
    refused = refusal(engine.replay, CASE, steps)
    assert refused.kind == "inconsistent-history"
    assert refused.reason == 'step 2 cannot be replayed: "shout" is not one of the choices at "follow-up"'


def test_replay_refuses_steps_out_of_order():
    steps = [Step("follow-up", "fix-it", 10)]
    assert (
        refusal(engine.replay, CASE, steps).reason == 'step 1 cannot be replayed: "follow-up" is not the current step'
    )


def test_replay_refuses_a_history_whose_scores_have_changed():
    refused = refusal(engine.replay, CASE, [Step("first-post", "reply-fast", 3)])
    assert refused.reason == "step 1 was stored with score 3, but the case now scores it 10"


def test_replay_refuses_steps_after_the_end():
    steps = [Step("first-post", "ignore", -5), Step("end-escalated", "more", 0)]
    assert refusal(engine.replay, CASE, steps).reason == "step 2 cannot be replayed: the attempt has ended"


# --- Attempts -----------------------------------------------------------------------------


def test_attempts_are_limited_by_max_attempts():
    case = replace(CASE, navigation=Navigation(max_attempts=2))
    assert engine.may_start_attempt(case, 1, unfinished=False)
    assert not engine.may_start_attempt(case, 2, unfinished=False)
    assert engine.may_start_attempt(CASE, 500, unfinished=False)


def test_an_unfinished_attempt_may_be_abandoned_only_if_restarts_are_allowed():
    assert engine.may_start_attempt(CASE, 1, unfinished=True)
    case = replace(CASE, navigation=Navigation(allow_restart=False))
    assert not engine.may_start_attempt(case, 1, unfinished=True)
    assert engine.may_start_attempt(case, 1, unfinished=False)


def test_the_attempt_that_counts_is_the_first_best_or_the_latest():
    assert engine.counted_attempt(CASE, [40, 90, 90, 10]) == 1
    latest = replace(CASE, navigation=Navigation(attempt_counts="latest"))
    assert engine.counted_attempt(latest, [40, 90, 10]) == 2
    assert engine.counted_attempt(CASE, []) is None


# --- Purity -------------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["engine.py", "case_format.py", "validator.py"])
def test_the_core_imports_neither_flask_nor_sqlalchemy(module):
    tree = ast.parse((Path(quizzes.__file__).parent / module).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not {name.split(".")[0] for name in imported} & {"flask", "sqlalchemy", "flask_sqlalchemy"}
