"""Queueing grades for the LMS: every score change becomes one outbox row, exactly once.

The outbox is the only way a grade leaves Rebound; the worker (plugin.outbox) delivers it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from course.models import GradeOutbox, Placement

ACTIVITY_PROGRESS = ("Initialized", "Started", "InProgress", "Submitted", "Completed")
GRADING_PROGRESS = ("FullyGraded", "Pending", "PendingManual", "Failed", "NotReady")


def queue_grade(
    session: Session,
    *,
    placement: Placement,
    user_id: int,
    change_key: str,
    score_given: float,
    score_maximum: float,
    activity_progress: str,
    grading_progress: str,
    now: datetime,
    comment: str | None = None,
) -> bool:
    """Queue one score for a learner's line item; the same `change_key` is queued once only.

    Returns False when the placement has no line item (the LMS offered no gradebook) or the
    change was queued before. `scored_at` never goes backwards for a learner and line item,
    because Moodle refuses a score older than the one it holds.
    """
    if not placement.lineitem_url:
        return False
    if activity_progress not in ACTIVITY_PROGRESS or grading_progress not in GRADING_PROGRESS:
        raise ValueError(f"unknown AGS progress {activity_progress!r}/{grading_progress!r}")
    latest = session.scalar(
        select(func.max(GradeOutbox.scored_at)).where(
            GradeOutbox.user_id == user_id, GradeOutbox.lineitem_url == placement.lineitem_url
        )
    )
    scored_at = now if latest is None or now > latest else latest + timedelta(milliseconds=1)
    insert = (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert
    result = session.execute(
        insert(GradeOutbox)
        .values(
            platform_id=placement.platform_id, user_id=user_id, placement_id=placement.id,
            lineitem_url=placement.lineitem_url, dedupe_key=change_key[:200], score_given=score_given,
            score_maximum=score_maximum, activity_progress=activity_progress,
            grading_progress=grading_progress, comment=comment, scored_at=scored_at, status="pending",
            attempts=0, next_attempt_at=now, created_at=now,
        )
        .on_conflict_do_nothing(index_elements=[GradeOutbox.dedupe_key])
        # RETURNING, not rowcount: psycopg reports a row for a skipped conflicting insert.
        .returning(GradeOutbox.id)
    )
    return result.first() is not None

