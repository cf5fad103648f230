"""The completion rule, records and grades, as services (no HTTP)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from course import completion, statuses
from course.content import content_kinds, draft_for, import_shipped, publish_draft
from course.database import db, make_engine
from course.models import CompletionRecord, Context, GradeOutbox, Placement, Platform, User
from course.progress import complete_lesson, open_lesson
from quizzes import engine
from quizzes.attempts import answer, published_case, start_attempt

T0 = datetime(2027, 1, 10, 9, 0, tzinfo=UTC)
LINEITEM = "https://lms.example.edu/api/lineitems/7"
OWN_LESSONS = ("own-taking-responsibility-in-public", "own-apologizing-well", "own-owning-it-not-hiding")
OWN_CASES = ("ceo-spill-remark", "pizza-wrong-crust")


@dataclass
class World:
    session: Session
    platform: Platform
    context: Context
    learner: User

    def placement(self, kind: str = "module", ref: str | None = "own", settings: dict[str, Any] | None = None,
                  link: str = "link-1", lineitem: str | None = LINEITEM) -> Placement:
        placement = Placement(
            platform_id=self.platform.id, context_id=self.context.id, resource_link_id=link, title="Own it",
            target_kind=kind, target_ref=ref, lineitem_url=lineitem, settings=settings or {},
        )
        self.session.add(placement)
        self.session.flush()
        return placement


def _world(session: Session, platform: Platform) -> World:
    context = Context(platform_id=platform.id, deployment_id=platform.deployments[0].id, lms_context_id="course-7",
                      title="Social media at Acme")
    learner = User(platform_id=platform.id, sub="learner-1", name="Ada Lovelace", email="ada@example.com")
    session.add_all([context, learner])
    session.flush()
    return World(session, platform, context, learner)


@pytest.fixture
def world(app: Flask, make_platform: Callable[..., Platform], course_content: None) -> World:
    return _world(db.session, make_platform())


def read_lessons(w: World, placement: Placement, now: datetime, slugs: tuple[str, ...] | None = None) -> None:
    for entry in completion.scope_of(w.session, placement).lessons:
        if slugs is None or entry.slug in slugs:
            args = {"user_id": w.learner.id, "placement_id": placement.id, "slug": entry.slug,
                    "version_id": entry.version.id, "now": now}
            open_lesson(w.session, **args)
            complete_lesson(w.session, **args)


def _path(case: Any, accept: Callable[[engine.State], bool]) -> list[tuple[str, str]]:
    """A loop-free path through a case whose end state `accept` likes."""

    def walk(node_id: str, steps: tuple[engine.Step, ...]) -> list[tuple[str, str]] | None:
        node = case.node(node_id)
        if node.ending is not None:
            return [(s.node_id, s.choice_id) for s in steps] if accept(engine.replay(case, steps)) else None
        for choice in node.choices:
            if choice.goto not in {s.node_id for s in steps} | {node_id}:
                found = walk(choice.goto, (*steps, engine.Step(node_id, choice.id, choice.score)))
                if found is not None:
                    return found
        return None

    path = walk(case.start, ())
    assert path is not None, "the case has no such path"
    return path


def play(w: World, placement: Placement, slug: str, now: datetime, *, passing: bool = True,
         path: Callable[[Any], list[tuple[str, str]]] | None = None) -> Any:
    version, case = published_case(w.session, w.platform.id, slug)  # type: ignore[misc]
    attempt = start_attempt(w.session, user_id=w.learner.id, placement_id=placement.id, slug=slug, version=version,
                            case=case, restart=False, now=now)
    best = engine.best_path(case)
    assert best is not None
    if path is not None:
        steps = path(case)
    elif passing:
        steps = [(s.node_id, s.choice_id) for s in best.steps]
    else:
        steps = _path(case, lambda state: not engine.passed(case, state))
    for number, (node_id, choice_id) in enumerate(steps):
        answer(w.session, attempt, case, node_id=node_id, choice_id=choice_id, step=number, now=now)
    assert attempt.status == "ended" and bool(attempt.passed) is passing
    return attempt


def finish(w: World, placement: Placement, now: datetime) -> completion.Evaluation:
    read_lessons(w, placement, now)
    for slug in OWN_CASES:
        play(w, placement, slug, now)
    return completion.evaluate(w.session, user=w.learner, placement=placement, now=now)


def publish_tenant_copy(w: World, kind: str, slug: str, change: Callable[[str], str], now: datetime) -> None:
    draft = draft_for(w.session, w.platform.id, kind, slug, by="trainer", now=now)
    parsed, problems = content_kinds()[kind].parse(change(draft.source), f"{slug}.txt")
    assert parsed is not None, problems
    publish_draft(w.session, draft, parsed, expected_revision=draft.revision, by="trainer", now=now)


def outbox(w: World) -> list[GradeOutbox]:
    return list(w.session.scalars(select(GradeOutbox).where(GradeOutbox.user_id == w.learner.id).order_by(GradeOutbox.id)))


def test_meeting_the_default_rule_writes_one_passed_record_with_who_where_and_versions(world: World) -> None:
    placement = world.placement()
    result = finish(world, placement, T0)
    record = result.record
    assert result.created and record is not None
    assert record.status == statuses.PASSED and record.sequence == 1
    assert (record.learner_sub, record.learner_name, record.learner_email) == ("learner-1", "Ada Lovelace",
                                                                              "ada@example.com")
    assert (record.context_lms_id, record.context_title, record.resource_link_id) == ("course-7",
                                                                                      "Social media at Acme", "link-1")
    assert record.completed_at == T0 and record.valid_until is None
    assert record.content_versions == {**{f"lesson:{s}": 1 for s in OWN_LESSONS}, **{f"case:{s}": 1 for s in OWN_CASES}}
    assert record.score_percent == 100 and record.case_attempts == 2
    assert len(record.public_id) >= 32
    again = completion.evaluate(world.session, user=world.learner, placement=placement, now=T0 + timedelta(hours=1))
    assert not again.created and again.record is record
    assert world.session.scalar(select(func.count()).select_from(CompletionRecord)) == 1


def test_a_missing_lesson_or_an_unpassed_case_means_no_record(world: World) -> None:
    placement = world.placement()
    read_lessons(world, placement, T0, slugs=OWN_LESSONS[:2])
    for slug in OWN_CASES:
        play(world, placement, slug, T0)
    result = completion.evaluate(world.session, user=world.learner, placement=placement, now=T0)
    assert result.record is None and result.standing.status == statuses.IN_PROGRESS
    assert [lesson.slug for lesson in result.standing.lessons if not lesson.done] == [OWN_LESSONS[2]]

    other = world.placement(link="link-2")
    read_lessons(world, other, T0)
    play(world, other, OWN_CASES[0], T0, passing=False)
    play(world, other, OWN_CASES[1], T0)
    result = completion.evaluate(world.session, user=world.learner, placement=other, now=T0)
    assert result.record is None and result.standing.cases_passed == 1


def test_a_lessons_only_rule_completes_without_a_score(world: World) -> None:
    placement = world.placement(settings={"counted_cases": []})
    read_lessons(world, placement, T0)
    result = completion.evaluate(world.session, user=world.learner, placement=placement, now=T0)
    assert result.record is not None and result.record.status == statuses.COMPLETED
    assert result.record.score_percent is None
    assert set(result.record.content_versions) == {f"lesson:{s}" for s in OWN_LESSONS}


def test_trainers_choose_which_cases_count_and_their_pass_mark(world: World) -> None:
    placement = world.placement(
        settings={"counted_cases": ["pizza-wrong-crust"], "pass_marks": {"pizza-wrong-crust": 0}})
    read_lessons(world, placement, T0)
    attempt = play(world, placement, "pizza-wrong-crust", T0, passing=False)
    result = completion.evaluate(world.session, user=world.learner, placement=placement, now=T0)
    ending = completion.case_of(world.session.get(completion.ContentVersion, attempt.content_version_id)).node(
        attempt.ending_node).ending
    # A pass mark of 0 still needs a passing ending: a failing ending never passes.
    assert ending is not None and not ending.passes
    assert result.record is None
    play(world, placement, "pizza-wrong-crust", T0)
    result = completion.evaluate(world.session, user=world.learner, placement=placement, now=T0)
    assert result.record is not None and set(result.record.content_versions) >= {"case:pizza-wrong-crust"}
    assert "case:ceo-spill-remark" not in result.record.content_versions


def test_a_raised_pass_mark_refuses_a_pass_the_case_itself_accepts(world: World) -> None:
    placement = world.placement(kind="case", ref="pizza-wrong-crust",
                                settings={"pass_marks": {"pizza-wrong-crust": 100}})

    def modest_pass(case: Any) -> list[tuple[str, str]]:
        return _path(case, lambda state: engine.passed(case, state) and engine.percent(case, state) < 100)

    attempt = play(world, placement, "pizza-wrong-crust", T0, path=modest_pass)
    assert attempt.passed and attempt.percent < 100
    result = completion.evaluate(world.session, user=world.learner, placement=placement, now=T0)
    assert result.record is None and not result.standing.cases[0].passed
    assert result.standing.cases[0].pass_mark == 100
    play(world, placement, "pizza-wrong-crust", T0)
    assert completion.evaluate(world.session, user=world.learner, placement=placement, now=T0).record is not None


def test_the_deep_linking_pass_mark_applies_to_every_counted_case_unless_one_has_its_own(world: World) -> None:
    placement = world.placement(settings={"counted_cases": ["pizza-wrong-crust"], "pass_mark": 100,
                                                         "pass_marks": {"ceo-spill-remark": 10}})
    rule = completion.rule_of(placement)
    assert (rule.pass_mark_for("pizza-wrong-crust"), rule.pass_mark_for("ceo-spill-remark")) == (100, 10)
    found = completion.standing(world.session, user=world.learner, placement=placement, now=T0)
    assert [(case.slug, case.pass_mark) for case in found.cases] == [("pizza-wrong-crust", 100)]


def test_a_new_lesson_version_never_rewrites_the_record(world: World) -> None:
    placement = world.placement()
    record = finish(world, placement, T0).record
    assert record is not None
    publish_tenant_copy(world, "lesson", "own-apologizing-well", lambda text: text.replace("Apologizing well",
                                                                                            "Apologising well", 1), T0)
    world.session.expire_all()
    stored = world.session.get(CompletionRecord, record.id)
    assert stored is not None and stored.content_versions["lesson:own-apologizing-well"] == 1
    assert completion.scope_of(world.session, placement).lessons[1].version.number == 2
    result = completion.evaluate(world.session, user=world.learner, placement=placement, now=T0 + timedelta(days=1))
    assert not result.created and result.record is not None and result.record.id == record.id
    assert result.record.content_versions["lesson:own-apologizing-well"] == 1


def test_a_retake_after_expiry_creates_sequence_two_and_keeps_the_first(world: World) -> None:
    placement = world.placement(settings={"recertify_after_days": 365})
    first = finish(world, placement, T0).record
    assert first is not None and first.valid_until == T0 + timedelta(days=365)
    later = T0 + timedelta(days=400)
    expired = completion.evaluate(world.session, user=world.learner, placement=placement, now=later)
    assert expired.record is None and expired.standing.status == statuses.EXPIRED
    # Last year's reading doesn't renew it: the lessons must be read again and the cases passed again.
    assert expired.standing.lessons_done == 0 and expired.standing.cases_passed == 0
    read_lessons(world, placement, later)
    for slug in OWN_CASES:
        play(world, placement, slug, later)
    renewed = completion.evaluate(world.session, user=world.learner, placement=placement, now=later)
    assert renewed.created and renewed.record is not None
    assert renewed.record.sequence == 2 and renewed.record.valid_until == later + timedelta(days=365)
    assert renewed.record.status == statuses.PASSED and renewed.standing.status == statuses.EXPIRED
    records = completion.records_of(world.session, user_id=world.learner.id, placement_id=placement.id)
    assert [(r.sequence, r.completed_at) for r in records] == [(1, T0), (2, later)]


def test_no_attempts_left_and_never_passed_writes_a_failed_record(world: World) -> None:
    publish_tenant_copy(world, "case", "pizza-wrong-crust",
                        lambda text: text.replace("max_attempts: null", "max_attempts: 1"), T0)
    placement = world.placement(kind="case", ref="pizza-wrong-crust")
    play(world, placement, "pizza-wrong-crust", T0, passing=False)
    result = completion.evaluate(world.session, user=world.learner, placement=placement, now=T0)
    assert result.created and result.record is not None
    assert result.record.status == statuses.FAILED and result.standing.cases[0].attempts_left == 0
    assert result.record.content_versions == {"case:pizza-wrong-crust": 2}
    graded = outbox(world)[-1]
    assert (graded.activity_progress, graded.grading_progress) == ("Completed", "FullyGraded")


def test_attestation_is_required_and_recorded_with_the_text(world: World) -> None:
    statement = "I have read and understood the social media policy."
    placement = world.placement(kind="lesson", ref="own-apologizing-well",
                                settings={"attestation": statement})
    read_lessons(world, placement, T0)
    waiting = completion.evaluate(world.session, user=world.learner, placement=placement, now=T0)
    assert waiting.record is None and waiting.standing.needs_attestation
    assert outbox(world)[-1].grading_progress == "Pending"
    attested = completion.evaluate(world.session, user=world.learner, placement=placement, now=T0, attested=True)
    assert attested.record is not None and attested.record.status == statuses.COMPLETED
    assert attested.record.attested_at == T0 and attested.record.attestation_text == statement
    assert attested.record.content_versions == {"lesson:own-apologizing-well": 1}


def test_past_the_due_date_without_a_record_is_overdue(world: World) -> None:
    placement = world.placement(settings={"due_at": "2027-01-31T17:00:00+01:00"})
    read_lessons(world, placement, T0, slugs=OWN_LESSONS[:1])
    before = completion.standing(world.session, user=world.learner, placement=placement, now=T0)
    assert before.status == statuses.IN_PROGRESS
    after = completion.standing(world.session, user=world.learner, placement=placement, now=datetime(2027, 1, 31, 16, 0,
                                                                                                       tzinfo=UTC))
    assert after.status == statuses.OVERDUE and after.rule.due_at == datetime(2027, 1, 31, 16, 0, tzinfo=UTC)


def test_progress_and_completion_queue_one_grade_per_change(world: World) -> None:
    placement = world.placement(settings={"counted_cases": []})
    read_lessons(world, placement, T0, slugs=OWN_LESSONS[:1])
    completion.evaluate(world.session, user=world.learner, placement=placement, now=T0)
    completion.evaluate(world.session, user=world.learner, placement=placement, now=T0 + timedelta(seconds=5))
    rows = outbox(world)
    assert [(r.activity_progress, r.grading_progress, r.score_given) for r in rows] == [("InProgress", "Pending", 33.0)]
    read_lessons(world, placement, T0 + timedelta(minutes=1))
    done = completion.evaluate(world.session, user=world.learner, placement=placement, now=T0 + timedelta(minutes=1))
    completion.evaluate(world.session, user=world.learner, placement=placement, now=T0 + timedelta(minutes=2))
    rows = outbox(world)
    assert [(r.activity_progress, r.grading_progress, r.score_given) for r in rows][1:] == [
        ("Completed", "FullyGraded", 100.0)]
    assert done.record is not None and rows[-1].dedupe_key == f"{placement.id}:{world.learner.id}:record:{done.record.id}"


def test_a_placement_without_a_line_item_still_records_completion(world: World) -> None:
    placement = world.placement(lineitem=None, settings={"counted_cases": []})
    read_lessons(world, placement, T0)
    assert completion.evaluate(world.session, user=world.learner, placement=placement, now=T0).record is not None
    assert outbox(world) == []


@pytest.mark.parametrize(("settings", "problem_key", "words"), [
    ({"due_at": "31/01/2027"}, "due_at", "ISO 8601"),
    ({"due_at": "2027-02-30T10:00"}, "due_at", "ISO 8601"),
    ({"counted_cases": ["no-such-case"]}, "counted_cases", "unknown case id 'no-such-case'"),
    ({"pass_marks": {"pizza-wrong-crust": 101}}, "pass_marks", "from 0 to 100"),
    ({"pass_marks": {"no-such-case": 50}}, "pass_marks", "unknown case id 'no-such-case'"),
    ({"pass_mark": -1}, "pass_mark", "from 0 to 100"),
    ({"pass_mark": True}, "pass_mark", "from 0 to 100"),
    ({"recertify_after_days": 0}, "recertify_after_days", "from 1 to"),
    ({"attestation": "x" * 5000}, "attestation", "at most"),
])
def test_invalid_rule_settings_are_refused_with_what_is_wrong(settings: dict[str, Any], problem_key: str,
                                                                 words: str) -> None:
    with pytest.raises(completion.RuleError) as refused:
        completion.rule_from_settings(settings, case_ids=["pizza-wrong-crust"])
    assert words in refused.value.problems[problem_key]


def test_a_stored_setting_that_no_longer_validates_falls_back_to_the_default(world: World) -> None:
    placement = world.placement(settings={"due_at": "soon", "recertify_after_days": 30})
    rule = completion.rule_of(placement)
    assert rule.due_at is None and rule.recertify_after_days == 30


# Two tabs finishing at once: each needs its own connection, so these tests use their own database.

@pytest.fixture
def own_database(app: Flask, empty_database_url: str) -> Iterator[Callable[[], Session]]:
    from course import migrate

    engine = make_engine(empty_database_url)
    migrate.upgrade(engine)
    with Session(engine) as session:
        import_shipped(session, list(content_kinds(app).values()), T0)
        platform = Platform(name="LMS", issuer="https://lms.example.edu", client_id="c1",
                            auth_login_url="https://lms.example.edu/a", auth_token_url="https://lms.example.edu/t",
                            jwks_url="https://lms.example.edu/j")
        from course.models import Deployment

        platform.deployments.append(Deployment(deployment_id="d1"))
        session.add(platform)
        session.flush()
        w = _world(session, platform)
        placement = w.placement(settings={"counted_cases": []})
        read_lessons(w, placement, T0)
        session.commit()
    yield lambda: Session(engine, expire_on_commit=False)
    engine.dispose()


def _load(session: Session) -> tuple[User, Placement]:
    user = session.scalars(select(User)).one()
    placement = session.scalars(select(Placement)).one()
    return user, placement


def test_two_tabs_that_raced_to_finish_get_one_record_and_one_grade(own_database: Callable[[], Session]) -> None:
    with own_database() as tab_one, own_database() as tab_two:
        user_one, placement_one = _load(tab_one)
        stale = completion.standing(tab_one, user=user_one, placement=placement_one, now=T0)
        tab_one.commit()  # the page was computed before the other tab wrote its record
        user_two, placement_two = _load(tab_two)
        winner = completion.evaluate(tab_two, user=user_two, placement=placement_two, now=T0)
        tab_two.commit()
        loser = completion.record_completion(tab_one, stale, user=user_one, placement=placement_one, now=T0,
                                             attested=False)
        tab_one.commit()
        assert winner.created and not loser.created
        assert loser.record is not None and winner.record is not None and loser.record.id == winner.record.id
    with own_database() as check:
        assert check.scalar(select(func.count()).select_from(CompletionRecord)) == 1
        assert check.scalar(select(func.count()).select_from(GradeOutbox)) == 1


def test_two_threads_finishing_at_the_same_moment_get_one_record(own_database: Callable[[], Session],
                                                                   backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has one writer at a time; the race is only real on PostgreSQL")
    barrier = threading.Barrier(2, timeout=10)
    results: list[completion.Evaluation] = []
    errors: list[BaseException] = []

    def tab() -> None:
        try:
            with own_database() as session:
                user, placement = _load(session)
                found = completion.standing(session, user=user, placement=placement, now=T0)
                barrier.wait()  # both tabs have seen "not complete yet"
                results.append(completion.record_completion(session, found, user=user, placement=placement, now=T0,
                                                            attested=False))
                session.commit()
        except BaseException as error:  # reported to the test thread below
            errors.append(error)

    threads = [threading.Thread(target=tab) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert sorted(r.created for r in results) == [False, True]
    assert len({r.record.id for r in results if r.record}) == 1
    with own_database() as check:
        assert check.scalar(select(func.count()).select_from(CompletionRecord)) == 1
        assert check.scalar(select(func.count()).select_from(GradeOutbox)) == 1
