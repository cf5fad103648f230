"""Case attempts in the database: started, answered step by step, resumed, ended.

The rules are the engine's; this module stores what the engine decides. A step is written
the moment it is answered, with a position unique per attempt, so a double submit, a back
button re-post or fifty simultaneous submissions record it once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from course.content import PublishedVersion, effective_versions, published_version, remembered, version_cache
from course.models import CaseAttempt, CaseStep, ContentVersion
from quizzes import engine
from quizzes.case_format import Case
from quizzes.engine import State, Step, StepRefused
from quizzes.validator import load_case

CASE_CACHE_SIZE = 256


class AttemptError(Exception):
    """An attempt action was refused; `status` is the HTTP status a page should carry."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def case_of(version: ContentVersion | PublishedVersion) -> Case:
    """The case a published version holds, parsed and validated once per version and app."""
    # Published versions never change, so a parsed case can be kept per version id.
    return version_cache("quizzes.cases", CASE_CACHE_SIZE).get(
        version.id, lambda: load_case(version.source, f"version-{version.id}.yaml")
    )


def published_case(session: Session, platform_id: int | None, slug: str) -> tuple[PublishedVersion, Case] | None:
    """The version of a case a tenant's learners play now, or None if there is none."""
    version = published_version(session, platform_id, "case", slug)
    return (version, case_of(version)) if version is not None else None


def published_cases(session: Session, platform_id: int | None) -> list[tuple[PublishedVersion, Case]]:
    """Every case a tenant's learners can play."""
    return [(v, case_of(v)) for v in effective_versions(session, platform_id, "case")]


def attempts_of(session: Session, *, user_id: int, placement_id: int, slug: str) -> list[CaseAttempt]:
    """A learner's attempts at a case in a placement, oldest first."""
    return list(
        session.scalars(
            select(CaseAttempt)
            .where(CaseAttempt.user_id == user_id, CaseAttempt.placement_id == placement_id,
                   CaseAttempt.case_slug == slug)
            .order_by(CaseAttempt.number)
        )
    )


def attempts_in_placement(session: Session, *, user_id: int, placement_id: int) -> dict[str, list[CaseAttempt]]:
    """A learner's attempts in a placement by case, oldest first (read once per transaction)."""
    attempts = remembered(
        session, ("case_attempts", user_id, placement_id),
        lambda: list(session.scalars(
            select(CaseAttempt)
            .where(CaseAttempt.user_id == user_id, CaseAttempt.placement_id == placement_id)
            .order_by(CaseAttempt.case_slug, CaseAttempt.number)
        )),
    )
    by_case: dict[str, list[CaseAttempt]] = {}
    for attempt in attempts:
        by_case.setdefault(attempt.case_slug, []).append(attempt)
    return by_case


def _steps(session: Session, attempt: CaseAttempt) -> list[CaseStep]:
    return list(
        session.scalars(select(CaseStep).where(CaseStep.attempt_id == attempt.id).order_by(CaseStep.position))
    )


def state_of(session: Session, attempt: CaseAttempt, case: Case) -> State:
    """Rebuild the engine state from the steps in effect (a step taken back is withdrawn)."""
    return _replay(case, _steps(session, attempt))


def _replay(case: Case, steps: list[CaseStep]) -> State:
    return engine.replay(case, [Step(s.node_id, s.choice_id, s.score) for s in steps if not s.withdrawn])


def start_attempt(
    session: Session, *, user_id: int, placement_id: int, slug: str, version: PublishedVersion, case: Case,
    restart: bool, now: datetime,
) -> CaseAttempt:
    """Resume the active attempt, or start the next one where the case's rules allow it.

    Starts by locking the learner's attempts at the case, as `lock_learners_attempt` does one attempt:
    on SQLite that waits for the write lock even when there is no attempt yet; on PostgreSQL a
    first start has no row to lock, and the unique attempt number settles a race instead.
    """
    session.execute(
        update(CaseAttempt)
        .where(CaseAttempt.user_id == user_id, CaseAttempt.placement_id == placement_id, CaseAttempt.case_slug == slug)
        .values(status=CaseAttempt.status)
        .execution_options(synchronize_session=False)
    )
    attempts = attempts_of(session, user_id=user_id, placement_id=placement_id, slug=slug)
    active = next((a for a in attempts if a.status == "active"), None)
    if active is not None and not restart:
        return active
    if not engine.may_start_attempt(case, len(attempts), unfinished=active is not None):
        # An unfinished attempt is the thing to act on, whatever the limit: say how to go on.
        if active is not None and not case.navigation.allow_restart:
            raise AttemptError("This case can't be restarted; finish the attempt you started.", 409)
        limit = case.navigation.max_attempts
        if limit is not None and len(attempts) >= limit:
            raise AttemptError(f"You have used all {limit} attempts at this case.", 409)
        raise AttemptError("This case can't be restarted; finish the attempt you started.", 409)
    if active is not None:
        active.status, active.ended_at = "abandoned", now
    attempt = CaseAttempt(
        user_id=user_id, placement_id=placement_id, case_slug=slug, content_version_id=version.id,
        number=(attempts[-1].number + 1) if attempts else 1, status="active", current_node=case.start,
        started_at=now, last_step_at=now, score=0, percent=None, passed=None,
    )
    try:
        # Added inside the savepoint: begin_nested() flushes what is pending before it starts.
        with session.begin_nested():
            session.add(attempt)
            session.flush()
    except IntegrityError:
        # Two tabs started at once; the other one's attempt is this learner's attempt. (Rolling
        # back the savepoint already took the unsaved attempt out of the session.)
        return attempts_of(session, user_id=user_id, placement_id=placement_id, slug=slug)[-1]
    return attempt


@dataclass(frozen=True)
class Answered:
    """What an answer changed: the new state and whether this call recorded it."""

    state: State
    recorded: bool


def _sync(attempt: CaseAttempt, case: Case, state: State, now: datetime) -> None:
    attempt.current_node = state.current_node
    attempt.score = engine.score(case, state)
    attempt.last_step_at = now
    if state.ended:
        attempt.status = "ended"
        attempt.ended_at = now
        attempt.ending_node = state.ending_node
        attempt.percent = engine.percent(case, state)
        attempt.passed = engine.passed(case, state)


def lock_learners_attempt(
    session: Session, attempt_id: int, *, user_id: int, placement_id: int, slug: str
) -> CaseAttempt | None:
    """Wait for the attempt's lock, then read it afresh: answers to one attempt run one at a time.

    None if it is not this learner's attempt at this case here (someone else's is simply not
    found, and not locked either). A no-op UPDATE rather than SELECT ... FOR UPDATE, because
    SQLite has no row locks (there sessions take the database's write lock when they begin,
    course/database.py). Take it before anything else is read of the attempt or its steps in
    the transaction: on PostgreSQL each later statement then sees what the answer before
    committed. RETURNING reads the row in the same round trip (populate_existing overwrites
    what the session held).
    """
    return session.execute(
        update(CaseAttempt)
        .where(CaseAttempt.id == attempt_id, CaseAttempt.user_id == user_id,
               CaseAttempt.placement_id == placement_id, CaseAttempt.case_slug == slug)
        .values(last_step_at=CaseAttempt.last_step_at)
        .returning(CaseAttempt)
        .execution_options(synchronize_session=False, populate_existing=True)
    ).scalar_one_or_none()


def abandon(session: Session, attempt: CaseAttempt, now: datetime) -> None:
    """End an unfinished attempt without an ending; its steps stay as they were."""
    if attempt.status == "active":
        attempt.status, attempt.ended_at = "abandoned", now
        session.flush()


def answer(
    session: Session, attempt: CaseAttempt, case: Case, *, node_id: str, choice_id: str, step: int | None,
    now: datetime,
) -> Answered:
    """Record one answer; a repeat of an answered step records nothing and is not an error.

    Concurrent answers need the attempt locked first in the transaction (`lock_learners_attempt`)."""
    if attempt.status == "abandoned":
        raise AttemptError("This attempt is closed (a newer one replaced it, or the case was withdrawn); "
                           "its answers are kept. Start again from the case page.", 409)
    if not case.has_node(node_id):
        raise AttemptError("That answer is for a step that isn't part of this case, so nothing was recorded.", 400)
    taken_steps = _steps(session, attempt)
    state = _replay(case, taken_steps)
    try:
        new_state = engine.choose(case, state, node_id, choice_id, step=step)
    except StepRefused as refusal:
        if refusal.kind == "already-answered":
            return Answered(state, recorded=False)
        if refusal.kind == "ended":
            raise AttemptError("This attempt has ended; its answers can't change. Start a new attempt.", 409) from None
        if refusal.kind == "not-current":
            raise AttemptError("That isn't the step you're on; here is where you are.", 409) from None
        raise AttemptError("That choice isn't one of this step's choices.", 400) from None
    # The steps were read under the attempt's lock, withdrawn ones included, so their highest
    # position is the stored one.
    position = max((s.position for s in taken_steps), default=0) + 1
    taken = new_state.path[-1]
    steps = CaseStep.__table__
    insert = (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert
    # One round trip where a savepoint, an INSERT and a release took three (bench/case_step_bench.py).
    recorded = session.execute(
        insert(steps)
        .values(attempt_id=attempt.id, position=position, node_id=taken.node_id, choice_id=taken.choice_id,
                score=taken.score, withdrawn=False, answered_at=now)
        .on_conflict_do_nothing(index_elements=[steps.c.attempt_id, steps.c.position])
        .returning(steps.c.id)
    ).first()
    if recorded is None:
        # Another request recorded this position first: the same answer submitted twice.
        session.refresh(attempt)
        return Answered(state_of(session, attempt, case), recorded=False)
    _sync(attempt, case, new_state, now)
    session.flush()
    return Answered(new_state, recorded=True)


def go_back(session: Session, attempt: CaseAttempt, case: Case, now: datetime) -> State:
    """Take the last answer back (kept in the record as withdrawn, for analytics); lock the
    attempt first, as for `answer`."""
    if attempt.status == "abandoned":
        raise AttemptError("This attempt is closed; its answers are kept. Start again from the case page.", 409)
    taken_steps = _steps(session, attempt)
    state = _replay(case, taken_steps)
    try:
        new_state = engine.back(case, state)
    except StepRefused as refusal:
        raise AttemptError(refusal.reason[0].upper() + refusal.reason[1:] + ".", 409) from None
    last = next(s for s in reversed(taken_steps) if not s.withdrawn)
    last.withdrawn = True
    _sync(attempt, case, new_state, now)
    session.flush()
    return new_state


def counted(case: Case, attempts: list[CaseAttempt]) -> CaseAttempt | None:
    """The finished attempt that counts (best or latest, as the case says)."""
    finished = [a for a in attempts if a.status == "ended" and a.percent is not None]
    index = engine.counted_attempt(case, [a.percent or 0 for a in finished])
    return finished[index] if index is not None else None
