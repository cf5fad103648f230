"""The grade-passback outbox: every score change for the LMS waits here until it is delivered."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from course.database import Base, UTCDateTime, utcnow

OUTBOX_STATUSES = ("pending", "sent", "failed")


class GradeOutbox(Base):
    """One score to send through AGS; `dedupe_key` makes the same change impossible to queue twice."""

    __tablename__ = "grade_outbox"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sent', 'failed')", name="status"),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        Index("ix_grade_outbox_due", "status", "next_attempt_at"),
        # queue_grade's newest-timestamp lookup and the worker's one-in-flight check.
        Index("ix_grade_outbox_user_id_lineitem_url_scored_at", "user_id", "lineitem_url", "scored_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    placement_id: Mapped[int] = mapped_column(ForeignKey("placements.id", ondelete="CASCADE"))
    lineitem_url: Mapped[str] = mapped_column(String(1000))
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    score_given: Mapped[float]
    score_maximum: Mapped[float]
    activity_progress: Mapped[str] = mapped_column(String(30))
    grading_progress: Mapped[str] = mapped_column(String(30))
    comment: Mapped[str | None] = mapped_column(Text)
    # The AGS timestamp; it must increase for each learner and line item (Moodle refuses older).
    scored_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
