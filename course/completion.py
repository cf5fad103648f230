"""Completion: a per-placement rule, a learner's standing against it, and the records it earns.

The rule lives in `Placement.settings` (keys below; Deep Linking can set them when a
trainer places the course). When a learner meets it, `evaluate`
writes one immutable `CompletionRecord` naming the content versions it was earned on; a
record is never rewritten, and a retake after a record expires adds the next `sequence`.
Grades for the LMS are queued through `course.grades.queue_grade`, once per change.

Settings keys (all optional):
- `counted_cases`: the case ids that count (absent: every case the placement covers);
- `pass_mark`: 0-100, overriding the pass mark of every counted case;
- `pass_marks`: `{case_id: 0-100}` overriding one case's pass mark (wins over `pass_mark`);
- `due_at`: an ISO 8601 date-time with offset (a learner past it without a record is overdue);
- `recertify_after_days`: a record stays valid this many days, then the learner is expired;
- `attestation`: a statement the learner must confirm ("I have read and understood").
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from course import statuses
from course.content import PublishedVersion
from course.grades import queue_grade
from course.models import CaseAttempt, CompletionRecord, ContentVersion, Context, Placement, User
from course.progress import progress_rows
from lessons.outline import LessonEntry, in_scope, lessons_for
from quizzes.attempts import attempts_in_placement, case_of, counted, published_cases
from quizzes.case_format import Case

logger = logging.getLogger("rebound.completion")

SETTING_KEYS = ("counted_cases", "pass_mark", "pass_marks", "due_at", "recertify_after_days", "attestation")
MAX_RECERTIFY_DAYS = 3650
MAX_ATTESTATION_CHARS = 2000


class RuleError(ValueError):
    """A completion rule was refused; `problems` maps each setting to what is wrong with it."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{key}: {message}" for key, message in problems.items()))
        self.problems = dict(problems)


@dataclass(frozen=True)
class Rule:
    """What a learner must do in a placement to complete it, and when."""

    counted_cases: tuple[str, ...] | None = None  # None: every case in the placement's scope
    pass_mark: int | None = None  # for every counted case
    pass_marks: Mapping[str, int] = field(default_factory=dict)  # per case, winning over `pass_mark`
    due_at: datetime | None = None
    recertify_after_days: int | None = None
    attestation: str | None = None

    def pass_mark_for(self, case_id: str) -> int | None:
        """The placement's pass mark for a case, or None to keep the case's own."""
        return self.pass_marks.get(case_id, self.pass_mark)


def _mark_ok(mark: object) -> bool:
    return isinstance(mark, int) and not isinstance(mark, bool) and 0 <= mark <= 100


def parse_due_at(text: str) -> datetime:
    """An ISO 8601 date-time, in UTC (no offset means UTC; a date alone means the end of that day, UTC)."""
    value = text.strip()
    if not value:
        raise ValueError("Give a date and time, for example 2027-03-31T17:00+01:00.")
    try:
        if len(value) == 10:
            day = datetime.fromisoformat(value).date()
            return datetime.combine(day, time(23, 59, 59), tzinfo=UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a date and time Rebound can read; write it as ISO 8601, "
            "for example 2027-03-31T17:00+01:00 (or 2027-03-31 for the end of that day, UTC)."
        ) from None
    if parsed.year < 2000 or parsed.year > 2999:
        raise ValueError(f"{value!r} is outside the years 2000-2999; check the year.")
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def rule_from_settings(settings: Mapping[str, Any], *, case_ids: Iterable[str] | None = None) -> Rule:
    """Validate a placement's completion settings; raises RuleError naming each problem.

    With `case_ids` (the cases the placement covers), counted cases and pass marks must name them.
    """
    problems: dict[str, str] = {}
    known = set(case_ids) if case_ids is not None else None
    counted_cases: tuple[str, ...] | None = None
    raw_cases = settings.get("counted_cases")
    if raw_cases is not None:
        if not isinstance(raw_cases, list) or not all(isinstance(c, str) for c in raw_cases):
            problems["counted_cases"] = "must be a list of case ids"
        else:
            unknown = [c for c in raw_cases if known is not None and c not in known]
            if unknown:
                problems["counted_cases"] = f"unknown case id {unknown[0]!r}: this placement covers " + (
                    ", ".join(sorted(known or ())) or "no cases"
                )
            counted_cases = tuple(dict.fromkeys(raw_cases))
    pass_mark = settings.get("pass_mark")
    if pass_mark is not None and not _mark_ok(pass_mark):
        problems["pass_mark"] = "must be a whole number from 0 to 100"  # noqa: S105 (a mark, not a password)
    pass_marks: dict[str, int] = {}
    raw_marks = settings.get("pass_marks") or {}
    if not isinstance(raw_marks, dict):
        problems["pass_marks"] = "must map case ids to a pass mark from 0 to 100"  # noqa: S105 (a mark, not a password)
    else:
        for slug, mark in raw_marks.items():
            if known is not None and slug not in known:
                problems["pass_marks"] = f"unknown case id {slug!r}"
            elif not _mark_ok(mark):
                problems["pass_marks"] = f"the pass mark of {slug!r} must be a whole number from 0 to 100"
            else:
                pass_marks[slug] = mark
    due_at = None
    if settings.get("due_at") not in (None, ""):
        try:
            due_at = parse_due_at(str(settings["due_at"]))
        except ValueError as error:
            problems["due_at"] = str(error)
    days = settings.get("recertify_after_days")
    whole = isinstance(days, int) and not isinstance(days, bool)
    if days is not None and (not whole or not 1 <= days <= MAX_RECERTIFY_DAYS):
        problems["recertify_after_days"] = f"must be a whole number of days from 1 to {MAX_RECERTIFY_DAYS}"
        days = None
    attestation = settings.get("attestation")
    if attestation is not None and (not isinstance(attestation, str) or len(attestation) > MAX_ATTESTATION_CHARS):
        problems["attestation"] = f"must be text of at most {MAX_ATTESTATION_CHARS} characters"
        attestation = None
    if problems:
        raise RuleError(problems)
    return Rule(counted_cases, pass_mark if _mark_ok(pass_mark) else None, pass_marks, due_at, days,
                (attestation or "").strip() or None)


def rule_of(placement: Placement) -> Rule:
    """The placement's rule; a stored setting that no longer validates falls back to its default."""
    settings = {k: v for k, v in (placement.settings or {}).items() if k in SETTING_KEYS}
    try:
        return rule_from_settings(settings)
    except RuleError as error:
        logger.warning("ignoring invalid completion settings",
                       extra={"placement_id": placement.id, "problems": error.problems})
        return rule_from_settings({k: v for k, v in settings.items() if k not in error.problems})


def rule_settings(rule: Rule) -> dict[str, Any]:
    """The rule as the JSON kept in `Placement.settings` (unset keys left out)."""
    values: dict[str, Any] = {
        "counted_cases": list(rule.counted_cases) if rule.counted_cases is not None else None,
        "pass_mark": rule.pass_mark,
        "pass_marks": dict(rule.pass_marks) or None,
        "due_at": rule.due_at.isoformat() if rule.due_at else None,
        "recertify_after_days": rule.recertify_after_days,
        "attestation": rule.attestation,
    }
    return {key: value for key, value in values.items() if value is not None}


def save_rule(session: Session, placement: Placement, rule: Rule) -> None:
    """Store a rule in the placement's settings, keeping any other settings it holds."""
    others = {k: v for k, v in (placement.settings or {}).items() if k not in SETTING_KEYS}
    placement.settings = {**others, **rule_settings(rule)}
    session.flush()


@dataclass(frozen=True)
class Scope:
    """The lessons and cases a placement covers, as its tenant's learners see them now."""

    lessons: list[LessonEntry]
    cases: list[tuple[PublishedVersion, Case]]


def _case_in_scope(placement: Placement, case: Case) -> bool:
    # Imported here: the case player calls `evaluate`, so a module-level import would be circular.
    from quizzes.player import in_scope as case_in_scope

    return case_in_scope(placement, case)


def scope_of(session: Session, placement: Placement) -> Scope:
    """What a placement covers: all, one module's, one lesson, or one case."""
    lessons = in_scope(placement, lessons_for(session, placement.platform_id))
    cases = sorted(
        ((v, c) for v, c in published_cases(session, placement.platform_id) if _case_in_scope(placement, c)),
        key=lambda vc: vc[1].title,
    )
    return Scope(lessons, cases)


@dataclass(frozen=True)
class LessonResult:
    slug: str
    title: str
    done: bool
    version: int


@dataclass(frozen=True)
class CaseResult:
    slug: str
    title: str
    pass_mark: int
    attempts: int
    attempts_left: int | None  # None: unlimited
    percent: int | None  # the counted attempt's
    passed: bool
    exhausted: bool  # no attempts left and never passed
    version: int | None  # of the counted attempt


@dataclass(frozen=True)
class Standing:
    """A learner against a placement's rule: what is done, what is missing, and their status."""

    rule: Rule
    status: str
    lessons: list[LessonResult]
    cases: list[CaseResult]
    latest: CompletionRecord | None  # their latest record, current or not
    current: CompletionRecord | None  # a record still in force (passed/completed unexpired, or failed)
    started: bool
    seconds_spent: int

    @property
    def lessons_done(self) -> int:
        return sum(1 for lesson in self.lessons if lesson.done)

    @property
    def cases_passed(self) -> int:
        return sum(1 for case in self.cases if case.passed)

    @property
    def requirements_met(self) -> bool:
        """Every lesson done and every counted case passed (attestation aside)."""
        return all(lesson.done for lesson in self.lessons) and all(case.passed for case in self.cases)

    @property
    def failed(self) -> bool:
        return any(case.exhausted for case in self.cases)

    @property
    def needs_attestation(self) -> bool:
        return self.current is None and self.requirements_met and self.rule.attestation is not None

    @property
    def score_percent(self) -> int | None:
        """The mean of the counted cases' results (a case not yet played counts 0); None without cases."""
        if not self.cases:
            return None
        return round(sum(case.percent or 0 for case in self.cases) / len(self.cases))

    @property
    def progress_percent(self) -> int:
        """How much of the rule is met so far, for progress grades."""
        if self.cases:
            return self.score_percent or 0
        if not self.lessons:
            return 0
        return round(100 * self.lessons_done / len(self.lessons))

    @property
    def content_versions(self) -> dict[str, int]:
        versions = {f"lesson:{lesson.slug}": lesson.version for lesson in self.lessons}
        versions.update({f"case:{case.slug}": case.version for case in self.cases if case.version is not None})
        return versions

    @property
    def summary(self) -> str:
        parts = []
        if self.lessons:
            parts.append(f"{self.lessons_done} of {len(self.lessons)} lessons completed")
        if self.cases:
            parts.append(f"{self.cases_passed} of {len(self.cases)} cases passed")
        return ", ".join(parts) or "nothing to complete"


def records_of(session: Session, *, user_id: int, placement_id: int) -> list[CompletionRecord]:
    """A learner's completion records in a placement, oldest first."""
    return list(
        session.scalars(
            select(CompletionRecord)
            .where(CompletionRecord.user_id == user_id, CompletionRecord.placement_id == placement_id)
            .order_by(CompletionRecord.sequence)
        )
    )


def _expired(record: CompletionRecord, now: datetime) -> bool:
    return record.valid_until is not None and record.valid_until <= now


def _version_numbers(session: Session, ids: Iterable[int | None]) -> dict[int, int]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = session.execute(select(ContentVersion.id, ContentVersion.number).where(ContentVersion.id.in_(wanted)))
    return {version_id: number for version_id, number in rows}


def _passes(session: Session, attempt: CaseAttempt, mark: int | None) -> bool:
    if attempt.status != "ended":
        return False
    if mark is None:
        return bool(attempt.passed)
    version = session.get(ContentVersion, attempt.content_version_id)
    if version is None or attempt.ending_node is None:
        return False
    ending = case_of(version).node(attempt.ending_node).ending
    return ending is not None and ending.passes and (attempt.percent or 0) >= mark


def _case_result(
    session: Session, rule: Rule, case: Case, attempts: Sequence[CaseAttempt], since: datetime | None,
    versions: Mapping[int, int],
) -> CaseResult:
    in_cycle = [a for a in attempts if since is None or a.started_at > since]
    mark = rule.pass_mark_for(case.id)
    chosen = counted(case, in_cycle)
    passed = chosen is not None and _passes(session, chosen, mark)
    limit = case.navigation.max_attempts
    left = None if limit is None else max(0, limit - len(attempts))
    unfinished = any(a.status == "active" for a in attempts)
    # Failure is final only when it happened in this cycle: a retake isn't failed by last year's attempts.
    exhausted = (
        left == 0 and not unfinished and bool(in_cycle) and not any(_passes(session, a, mark) for a in in_cycle)
    )
    return CaseResult(
        slug=case.id, title=case.title, pass_mark=case.pass_mark if mark is None else mark, attempts=len(in_cycle),
        attempts_left=left, percent=chosen.percent if chosen else None, passed=passed, exhausted=exhausted,
        version=versions.get(chosen.content_version_id) if chosen else None,
    )


def standing(session: Session, *, user: User, placement: Placement, now: datetime) -> Standing:
    """Where a learner stands against the placement's rule; reads only."""
    rule = rule_of(placement)
    scope = scope_of(session, placement)
    records = records_of(session, user_id=user.id, placement_id=placement.id)
    latest = records[-1] if records else None
    current = latest if latest is not None and not _expired(latest, now) else None
    # After a record expires, a retake counts what is done again since that record.
    since = latest.completed_at if latest is not None and current is None else None

    progress = {p.lesson_slug: p for p in progress_rows(session, user_id=user.id, placement_id=placement.id)}
    attempts = attempts_in_placement(session, user_id=user.id, placement_id=placement.id)
    versions = _version_numbers(
        session,
        [p.completed_version_id for p in progress.values()]
        + [a.content_version_id for group in attempts.values() for a in group],
    )

    lessons = []
    for entry in scope.lessons:
        p = progress.get(entry.slug)
        done = p is not None and p.completed_at is not None and (
            since is None or max(p.completed_at, p.last_opened_at) > since
        )
        completed_on = versions.get(p.completed_version_id) if p and p.completed_version_id and since is None else None
        lessons.append(LessonResult(entry.slug, entry.title, done, completed_on or entry.version.number))

    counting = set(rule.counted_cases) if rule.counted_cases is not None else None
    cases = [
        _case_result(session, rule, case, attempts.get(case.id, []), since, versions)
        for _, case in scope.cases
        if counting is None or case.id in counting
    ]
    seconds = sum(p.seconds_spent for p in progress.values()) + sum(
        a.seconds_spent for group in attempts.values() for a in group
    )
    started = bool(progress) or bool(attempts)
    status = statuses.learner_status(
        record_status=latest.status if latest else None,
        record_valid_until=latest.valid_until if latest else None,
        started=started, due_at=rule.due_at, now=now,
    )
    return Standing(rule, status, lessons, cases, latest, current, started, seconds)


@dataclass(frozen=True)
class Evaluation:
    """What `evaluate` found and did."""

    standing: Standing
    record: CompletionRecord | None  # the record in force after evaluating, if any
    created: bool  # whether this call wrote it


def evaluate(
    session: Session, *, user: User, placement: Placement, now: datetime, attested: bool = False
) -> Evaluation:
    """Write the learner's completion record when they meet the rule (or fail it), and queue
    their grade; calling it again changes nothing. `attested` is the learner confirming the
    placement's attestation now."""
    found = standing(session, user=user, placement=placement, now=now)
    if found.current is not None:
        return Evaluation(found, found.current, created=False)
    if found.requirements_met and (found.rule.attestation is None or attested):
        return record_completion(session, found, user=user, placement=placement, now=now, attested=attested)
    if found.failed:
        return record_completion(session, found, user=user, placement=placement, now=now, attested=False)
    if found.started:
        _queue_progress(session, found, user=user, placement=placement, now=now)
    return Evaluation(found, None, created=False)


def record_completion(
    session: Session, found: Standing, *, user: User, placement: Placement, now: datetime, attested: bool
) -> Evaluation:
    """Write the record `found` earns (passed, completed or failed), once even if two requests race.

    The unique (user, placement, sequence) decides a race: the loser's insert fails inside a
    savepoint, and it returns the winner's record instead.
    """
    if found.requirements_met:
        status = statuses.PASSED if found.cases else statuses.COMPLETED
    elif found.failed:
        status = statuses.FAILED
    else:
        raise ValueError("the learner has not met the rule, nor failed it")
    context = session.get(Context, placement.context_id)
    assert context is not None
    days = found.rule.recertify_after_days
    attestation = found.rule.attestation if attested and status != statuses.FAILED else None
    record = CompletionRecord(
        public_id=secrets.token_urlsafe(24), platform_id=placement.platform_id, user_id=user.id,
        placement_id=placement.id, sequence=(found.latest.sequence + 1) if found.latest else 1,
        learner_sub=user.sub, learner_name=user.name, learner_email=user.email,
        context_lms_id=context.lms_context_id, context_title=context.title,
        resource_link_id=placement.resource_link_id, status=status, score_percent=found.score_percent,
        case_attempts=sum(case.attempts for case in found.cases), seconds_spent=found.seconds_spent,
        completed_at=now, valid_until=now + timedelta(days=days) if days and status != statuses.FAILED else None,
        content_versions=found.content_versions, attested_at=now if attestation else None,
        attestation_text=attestation, created_at=now,
    )
    try:
        with session.begin_nested():
            session.add(record)
    except IntegrityError:
        winner = session.scalar(
            select(CompletionRecord).where(
                CompletionRecord.user_id == user.id, CompletionRecord.placement_id == placement.id,
                CompletionRecord.sequence == record.sequence,
            ).execution_options(populate_existing=True)
        )
        logger.info("completion recorded by a concurrent request", extra={"placement_id": placement.id})
        return Evaluation(found, winner, created=False)
    score = record.score_percent if record.score_percent is not None else 100
    queue_grade(
        session, placement=placement, user_id=user.id, change_key=f"{placement.id}:{user.id}:record:{record.id}",
        score_given=float(score), score_maximum=100.0, activity_progress="Completed",
        grading_progress="FullyGraded", now=now, comment=f"{status.capitalize()}: {found.summary}.",
    )
    logger.info("completion recorded", extra={"placement_id": placement.id, "record_id": record.id, "status": status})
    return Evaluation(found, record, created=True)


def _queue_progress(session: Session, found: Standing, *, user: User, placement: Placement, now: datetime) -> None:
    sequence = (found.latest.sequence + 1) if found.latest else 1
    fingerprint = f"{found.lessons_done}/{len(found.lessons)}:{found.cases_passed}/{len(found.cases)}"
    queue_grade(
        session, placement=placement, user_id=user.id,
        change_key=f"{placement.id}:{user.id}:progress:{sequence}:{fingerprint}:{found.progress_percent}",
        score_given=float(found.progress_percent), score_maximum=100.0, activity_progress="InProgress",
        grading_progress="Pending", now=now, comment=f"In progress: {found.summary}.",
    )


def record_by_public_id(session: Session, public_id: str) -> CompletionRecord | None:
    """The record a verification link names, or None."""
    if not public_id or len(public_id) > 64:
        return None
    return session.scalar(select(CompletionRecord).where(CompletionRecord.public_id == public_id))


def record_as_dict(record: CompletionRecord, *, verify_url: str) -> dict[str, Any]:
    """A record as the learner downloads it (JSON)."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": record.id, "public_id": record.public_id, "sequence": record.sequence, "status": record.status,
        "learner": {"sub": record.learner_sub, "name": record.learner_name, "email": record.learner_email},
        "context": {"id": record.context_lms_id, "title": record.context_title},
        "resource_link_id": record.resource_link_id, "completed_at": iso(record.completed_at),
        "valid_until": iso(record.valid_until), "score_percent": record.score_percent,
        "case_attempts": record.case_attempts, "seconds_spent": record.seconds_spent,
        "content_versions": dict(record.content_versions),
        "attestation": {"text": record.attestation_text, "attested_at": iso(record.attested_at)}
        if record.attested_at else None,
        "verification_url": verify_url,
    }
