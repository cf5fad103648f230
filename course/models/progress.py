"""What each learner has done in each placement: lessons read and case attempts step by step."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from course.database import Base, UTCDateTime, utcnow

ATTEMPT_STATUSES = ("active", "ended", "abandoned")


class LessonProgress(Base):
    """One learner's reading of one lesson in one placement."""

    __tablename__ = "lesson_progress"
    __table_args__ = (
        UniqueConstraint("user_id", "placement_id", "lesson_slug"),
        CheckConstraint("seconds_spent >= 0", name="seconds_spent_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    placement_id: Mapped[int] = mapped_column(ForeignKey("placements.id", ondelete="CASCADE"))
    lesson_slug: Mapped[str] = mapped_column(String(100))
    content_version_id: Mapped[int] = mapped_column(
        ForeignKey("content_versions.id", ondelete="RESTRICT")
    )
    first_opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the server last saw the learner active on this lesson; time is credited from it.
    last_active_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("content_versions.id", ondelete="RESTRICT")
    )
    seconds_spent: Mapped[int] = mapped_column(default=0)


class CaseAttempt(Base):
    """One play of a case by a learner; replays are new attempts with the next number."""

    __tablename__ = "case_attempts"
    __table_args__ = (
        UniqueConstraint("user_id", "placement_id", "case_slug", "number"),
        CheckConstraint("status IN ('active', 'ended', 'abandoned')", name="status"),
        CheckConstraint("number >= 1", name="number_positive"),
        CheckConstraint("percent IS NULL OR (percent >= 0 AND percent <= 100)", name="percent"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    placement_id: Mapped[int] = mapped_column(ForeignKey("placements.id", ondelete="CASCADE"))
    case_slug: Mapped[str] = mapped_column(String(100))
    content_version_id: Mapped[int] = mapped_column(
        ForeignKey("content_versions.id", ondelete="RESTRICT")
    )
    number: Mapped[int]
    status: Mapped[str] = mapped_column(String(20), default="active")
    current_node: Mapped[str | None] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_step_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ending_node: Mapped[str | None] = mapped_column(String(100))
    score: Mapped[int] = mapped_column(default=0)
    percent: Mapped[int | None]
    passed: Mapped[bool | None]
    seconds_spent: Mapped[int] = mapped_column(default=0)

    steps: Mapped[list[CaseStep]] = relationship(
        back_populates="attempt", order_by="CaseStep.position", cascade="all, delete-orphan"
    )


class CaseStep(Base):
    """One answered node; (attempt, position) is unique so a double submit records once."""

    __tablename__ = "case_steps"
    __table_args__ = (
        UniqueConstraint("attempt_id", "position"),
        CheckConstraint("position >= 1", name="position_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("case_attempts.id", ondelete="CASCADE"))
    position: Mapped[int]
    node_id: Mapped[str] = mapped_column(String(100))
    choice_id: Mapped[str] = mapped_column(String(100))
    score: Mapped[int] = mapped_column(default=0)
    # A step the learner took back stays in the record, marked, so analytics see it.
    withdrawn: Mapped[bool] = mapped_column(default=False)
    answered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    attempt: Mapped[CaseAttempt] = relationship(back_populates="steps")
