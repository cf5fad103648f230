"""A learner's data on request: everything Rebound holds about them, and its erasure.

Erasing removes what identifies a person (name, email, SIS id, the LMS `sub`, roster
entries) and keeps the facts an auditor relies on (who completed what, when, with which
score and content version), under a pseudonym. The pseudonym is an HMAC of the platform
and `sub` keyed with the installation's secret, so it is stable (erasing twice finds the
same person, and changes nothing) but cannot be worked back from a guessable `sub`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from course.models import (
    CaseAttempt,
    CaseStep,
    CompletionRecord,
    Context,
    GradeOutbox,
    LessonProgress,
    Placement,
    Platform,
    RosterMember,
    User,
)

PSEUDONYM_PREFIX = "erased-"


class PrivacyError(Exception):
    """A privacy request that cannot be carried out; the message says why."""


def pseudonym(platform_id: int, sub: str, *, key: str) -> str:
    """The stable stand-in for an erased learner's `sub` on one platform."""
    digest = hmac.new(key.encode(), f"{platform_id}\x00{sub}".encode(), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:24]


def find_learner(session: Session, platform: Platform, sub: str, *, key: str) -> User:
    """The learner with this `sub` on this platform, erased or not; PrivacyError if none."""
    user = None
    # The live account first: a learner erased earlier who launched again is a new user.
    for candidate in (sub, pseudonym(platform.id, sub, key=key)):
        user = user or session.scalar(select(User).where(User.platform_id == platform.id, User.sub == candidate))
    if user is None:
        raise PrivacyError(
            f"No learner with sub {sub!r} on platform {platform.name!r} (id {platform.id}). The sub is the "
            "LMS's user id for the person (the `sub` of their launches), not their name or email."
        )
    return user


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _placements(session: Session, ids: Iterable[int | None]) -> dict[int, dict[str, Any]]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = session.execute(
        select(Placement, Context).join(Context, Placement.context_id == Context.id).where(Placement.id.in_(wanted))
    )
    return {
        placement.id: {
            "placement_id": placement.id,
            "context_id": context.lms_context_id,
            "context_title": context.title,
            "resource_link_id": placement.resource_link_id,
            "title": placement.title,
        }
        for placement, context in rows
    }


def export_learner(session: Session, user: User, *, now: datetime) -> dict[str, Any]:
    """Everything Rebound holds about a learner, as JSON-ready data."""
    platform = session.get(Platform, user.platform_id)
    assert platform is not None  # the foreign key
    progress = list(
        session.scalars(select(LessonProgress).where(LessonProgress.user_id == user.id).order_by(LessonProgress.id))
    )
    attempts = list(
        session.scalars(select(CaseAttempt).where(CaseAttempt.user_id == user.id).order_by(CaseAttempt.id))
    )
    steps: dict[int, list[CaseStep]] = {}
    if attempts:
        for step in session.scalars(
            select(CaseStep).where(CaseStep.attempt_id.in_([a.id for a in attempts])).order_by(CaseStep.position)
        ):
            steps.setdefault(step.attempt_id, []).append(step)
    records = list(
        session.scalars(
            select(CompletionRecord).where(CompletionRecord.user_id == user.id).order_by(CompletionRecord.id)
        )
    )
    roster = session.execute(
        select(RosterMember, Context)
        .join(Context, RosterMember.context_id == Context.id)
        .where(RosterMember.platform_id == user.platform_id, RosterMember.sub == user.sub)
        .order_by(RosterMember.id)
    ).all()
    grades = list(session.scalars(select(GradeOutbox).where(GradeOutbox.user_id == user.id).order_by(GradeOutbox.id)))
    where = _placements(
        session, [p.placement_id for p in progress] + [a.placement_id for a in attempts]
        + [r.placement_id for r in records] + [g.placement_id for g in grades]
    )
    return {
        "exported_at": now.isoformat(),
        "platform": {"id": platform.id, "name": platform.name, "issuer": platform.issuer},
        "user": {
            "sub": user.sub,
            "name": user.name,
            "given_name": user.given_name,
            "family_name": user.family_name,
            "email": user.email,
            "lis_person_sourcedid": user.lis_person_sourcedid,
            "created_at": _iso(user.created_at),
            "last_launch_at": _iso(user.last_launch_at),
            "erased_at": _iso(user.erased_at),
        },
        "placements": [where[key] for key in sorted(where)],
        "lesson_progress": [
            {
                "placement_id": p.placement_id,
                "lesson": p.lesson_slug,
                "content_version_id": p.content_version_id,
                "first_opened_at": _iso(p.first_opened_at),
                "last_opened_at": _iso(p.last_opened_at),
                "completed_at": _iso(p.completed_at),
                "completed_version_id": p.completed_version_id,
                "seconds_spent": p.seconds_spent,
            }
            for p in progress
        ],
        "case_attempts": [
            {
                "placement_id": a.placement_id,
                "case": a.case_slug,
                "content_version_id": a.content_version_id,
                "number": a.number,
                "status": a.status,
                "started_at": _iso(a.started_at),
                "ended_at": _iso(a.ended_at),
                "ending": a.ending_node,
                "score": a.score,
                "percent": a.percent,
                "passed": a.passed,
                "seconds_spent": a.seconds_spent,
                "steps": [
                    {"position": s.position, "node": s.node_id, "choice": s.choice_id, "score": s.score,
                     "withdrawn": s.withdrawn, "answered_at": _iso(s.answered_at)}
                    for s in steps.get(a.id, [])
                ],
            }
            for a in attempts
        ],
        "completion_records": [
            {
                "id": r.public_id,
                "placement_id": r.placement_id,
                "sequence": r.sequence,
                "learner_sub": r.learner_sub,
                "learner_name": r.learner_name,
                "learner_email": r.learner_email,
                "context_id": r.context_lms_id,
                "context_title": r.context_title,
                "resource_link_id": r.resource_link_id,
                "status": r.status,
                "score_percent": r.score_percent,
                "case_attempts": r.case_attempts,
                "seconds_spent": r.seconds_spent,
                "completed_at": _iso(r.completed_at),
                "valid_until": _iso(r.valid_until),
                "content_versions": r.content_versions,
                "attested_at": _iso(r.attested_at),
                "attestation_text": r.attestation_text,
            }
            for r in records
        ],
        "roster_memberships": [
            {"context_id": context.lms_context_id, "context_title": context.title, "name": member.name,
             "email": member.email, "lis_person_sourcedid": member.lis_person_sourcedid, "roles": member.roles,
             "status": member.status, "first_seen_at": _iso(member.first_seen_at),
             "last_seen_at": _iso(member.last_seen_at)}
            for member, context in roster
        ],
        "grades_sent_to_the_lms": [
            {"placement_id": g.placement_id, "score_given": g.score_given, "score_maximum": g.score_maximum,
             "activity_progress": g.activity_progress, "grading_progress": g.grading_progress,
             "scored_at": _iso(g.scored_at), "status": g.status}
            for g in grades
        ],
    }


@dataclass(frozen=True)
class Erasure:
    """What erasing a learner changed (all zero when they were erased before)."""

    user_id: int
    pseudonym: str
    already_erased: bool
    records_anonymised: int
    roster_entries_removed: int


def erase_learner(session: Session, user: User, *, key: str, now: datetime) -> Erasure:
    """Remove what identifies a learner and keep the facts under a pseudonym; safe to repeat."""
    already = user.erased_at is not None
    original_sub = user.sub
    alias = original_sub if already else pseudonym(user.platform_id, original_sub, key=key)
    # Bulk statements: completion records are never rewritten through the ORM, and this is
    # the one sanctioned change to them (the person, never the facts).
    records = session.execute(
        update(CompletionRecord)
        .where(
            CompletionRecord.platform_id == user.platform_id,
            or_(CompletionRecord.user_id == user.id, CompletionRecord.learner_sub == original_sub),
            or_(CompletionRecord.learner_sub.is_distinct_from(alias), CompletionRecord.learner_name.is_not(None),
                CompletionRecord.learner_email.is_not(None)),
        )
        .values(learner_sub=alias, learner_name=None, learner_email=None)
        .execution_options(synchronize_session="fetch")
    ).rowcount  # type: ignore[attr-defined]
    roster = session.execute(
        delete(RosterMember).where(
            RosterMember.platform_id == user.platform_id, RosterMember.sub.in_({original_sub, alias})
        )
    ).rowcount  # type: ignore[attr-defined]
    if not already:
        user.sub = alias
        user.name = user.given_name = user.family_name = user.email = user.lis_person_sourcedid = None
        user.erased_at = now
    session.flush()
    return Erasure(user.id, alias, already, records, roster)


def last_activity(session: Session, user: User) -> datetime:
    """The learner's latest sign of life: a launch, a lesson, a case step or a completion."""
    candidates = [
        user.last_launch_at,
        user.created_at,
        session.scalar(select(func.max(LessonProgress.last_active_at)).where(LessonProgress.user_id == user.id)),
        session.scalar(select(func.max(CaseAttempt.last_step_at)).where(CaseAttempt.user_id == user.id)),
        session.scalar(select(func.max(CompletionRecord.completed_at)).where(CompletionRecord.user_id == user.id)),
    ]
    return max(moment for moment in candidates if moment is not None)


def expired_learners(session: Session, *, retention_days: int, now: datetime) -> list[User]:
    """Learners not erased yet whose last activity is more than `retention_days` ago."""
    cutoff = now - timedelta(days=retention_days)
    # One query, whatever the number of learners: no launch and no activity since the cutoff.
    recent_lesson = select(LessonProgress.id).where(
        LessonProgress.user_id == User.id, LessonProgress.last_active_at >= cutoff)
    recent_step = select(CaseAttempt.id).where(CaseAttempt.user_id == User.id, CaseAttempt.last_step_at >= cutoff)
    recent_record = select(CompletionRecord.id).where(
        CompletionRecord.user_id == User.id, CompletionRecord.completed_at >= cutoff)
    return list(
        session.scalars(
            select(User)
            .where(
                User.erased_at.is_(None),
                User.created_at < cutoff,
                or_(User.last_launch_at.is_(None), User.last_launch_at < cutoff),
                ~recent_lesson.exists(),
                ~recent_step.exists(),
                ~recent_record.exists(),
            )
            .order_by(User.id)
        )
    )


def purge_expired(
    session: Session, *, retention_days: int, key: str, now: datetime, dry_run: bool
) -> list[tuple[User, datetime]]:
    """Erase every learner past the retention period (or, with `dry_run`, only list them)."""
    expired = [(user, last_activity(session, user)) for user in expired_learners(
        session, retention_days=retention_days, now=now)]
    if not dry_run:
        for user, _ in expired:
            erase_learner(session, user, key=key, now=now)
    return expired
