"""Learner progress per placement: lessons opened, read and completed, and time spent.

Time is measured by the server: a page view starts the clock, heartbeats from a visible
page and the "mark complete" action credit the time since the last sign of activity, with
caps, so an open tab left overnight counts as a few minutes, never as hours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from course.content import remembered
from course.models import LessonProgress

HEARTBEAT_CREDIT_CAP = timedelta(seconds=60)
IDLE_AFTER = timedelta(minutes=2)
# Without heartbeats (no JavaScript), completing credits the reading time, up to this.
COMPLETE_CREDIT_CAP = timedelta(minutes=15)


def _insert(session: Session):  # type: ignore[no-untyped-def]
    return (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert


def open_lesson(
    session: Session, *, user_id: int, placement_id: int, slug: str, version_id: int, now: datetime
) -> LessonProgress:
    """Record a view of a lesson; reloads and double clicks only move `last_opened_at`."""
    # One round trip: the upsert locks the row and RETURNING reads it (populate_existing, since
    # the statement bypasses the identity map), where an upsert and a SELECT took two.
    statement = (
        _insert(session)(LessonProgress)
        .values(
            user_id=user_id, placement_id=placement_id, lesson_slug=slug, content_version_id=version_id,
            first_opened_at=now, last_opened_at=now, last_active_at=now, seconds_spent=0,
        )
        .on_conflict_do_update(
            index_elements=[LessonProgress.user_id, LessonProgress.placement_id, LessonProgress.lesson_slug],
            set_={"last_opened_at": now, "last_active_at": now},
        )
        .returning(LessonProgress)
    )
    return session.scalars(statement, execution_options={"populate_existing": True}).one()


def _progress(session: Session, user_id: int, placement_id: int, slug: str) -> LessonProgress | None:
    # populate_existing: an upsert may have bypassed the identity map, so reload the row.
    return session.scalar(
        select(LessonProgress)
        .where(
            LessonProgress.user_id == user_id,
            LessonProgress.placement_id == placement_id,
            LessonProgress.lesson_slug == slug,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def _credit(progress: LessonProgress, now: datetime, cap: timedelta) -> None:
    elapsed = now - progress.last_active_at
    if timedelta(0) < elapsed:
        progress.seconds_spent += int(min(elapsed, cap).total_seconds())
    progress.last_active_at = now


def heartbeat(session: Session, *, user_id: int, placement_id: int, slug: str, now: datetime) -> LessonProgress | None:
    """A visible page says the learner is still reading: credit up to a minute, none if idle."""
    progress = _progress(session, user_id, placement_id, slug)
    if progress is None:
        return None
    if now - progress.last_active_at > IDLE_AFTER:
        progress.last_active_at = now  # back from a break: the clock restarts, the break isn't counted
    else:
        _credit(progress, now, HEARTBEAT_CREDIT_CAP)
    session.flush()
    return progress


def complete_lesson(
    session: Session, *, user_id: int, placement_id: int, slug: str, version_id: int, now: datetime
) -> LessonProgress:
    """Mark a lesson complete once; later clicks change nothing."""
    progress = _progress(session, user_id, placement_id, slug)
    if progress is None:
        progress = open_lesson(
            session, user_id=user_id, placement_id=placement_id, slug=slug, version_id=version_id, now=now
        )
    if progress.completed_at is None:
        heartbeats_seen = progress.last_active_at > progress.last_opened_at
        _credit(progress, now, HEARTBEAT_CREDIT_CAP if heartbeats_seen else COMPLETE_CREDIT_CAP)
        progress.completed_at = now
        progress.completed_version_id = version_id
    session.flush()
    return progress


@dataclass(frozen=True)
class LessonStatus:
    """One lesson's state for one learner, as pages and the JSON show it."""

    slug: str
    first_opened_at: datetime | None
    last_opened_at: datetime | None
    completed_at: datetime | None
    seconds_spent: int
    version_id: int | None
    completed_version_id: int | None

    @property
    def state(self) -> str:
        if self.completed_at is not None:
            return "completed"
        return "in progress" if self.first_opened_at is not None else "not started"


def progress_rows(session: Session, *, user_id: int, placement_id: int) -> list[LessonProgress]:
    """A learner's lesson progress rows in a placement (read once per transaction)."""
    return remembered(
        session, ("lesson_progress", user_id, placement_id),
        lambda: list(session.scalars(
            select(LessonProgress).where(LessonProgress.user_id == user_id, LessonProgress.placement_id == placement_id)
        )),
    )


def lesson_statuses(session: Session, *, user_id: int, placement_id: int, slugs: Sequence[str]) -> list[LessonStatus]:
    """Every listed lesson's status for a learner in a placement, in the order given."""
    rows = {p.lesson_slug: p for p in progress_rows(session, user_id=user_id, placement_id=placement_id)}
    statuses = []
    for slug in slugs:
        p = rows.get(slug)
        statuses.append(
            LessonStatus(
                slug=slug,
                first_opened_at=p.first_opened_at if p else None,
                last_opened_at=p.last_opened_at if p else None,
                completed_at=p.completed_at if p else None,
                seconds_spent=p.seconds_spent if p else 0,
                version_id=p.content_version_id if p else None,
                completed_version_id=p.completed_version_id if p else None,
            )
        )
    return statuses


def resume_point(statuses: Sequence[LessonStatus]) -> str | None:
    """Where "continue" leads: the lesson last opened and not finished, else the first not done."""
    unfinished = [s for s in statuses if s.completed_at is None]
    opened = [s for s in unfinished if s.last_opened_at is not None]
    if opened:
        return max(opened, key=lambda s: s.last_opened_at or datetime.min).slug
    return unfinished[0].slug if unfinished else None
