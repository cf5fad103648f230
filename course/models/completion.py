"""Completion records: written once when a learner meets the rule, never rewritten."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from course.database import Base, UTCDateTime, utcnow


class CompletionRecord(Base):
    """Who completed what, where, when, with which score, on which content versions.

    The learner's name and email are copied as they were at that moment, so later
    changes in the LMS never rewrite the evidence an auditor relies on.
    """

    __tablename__ = "completion_records"
    __table_args__ = (
        UniqueConstraint("user_id", "placement_id", "sequence"),
        # HR exports filter a tenant's records by date.
        Index("ix_completion_records_platform_id_completed_at", "platform_id", "completed_at"),
        CheckConstraint("status IN ('completed', 'passed', 'failed')", name="status"),
        CheckConstraint(
            "score_percent IS NULL OR (score_percent >= 0 AND score_percent <= 100)",
            name="score_percent",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(36), unique=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id", ondelete="RESTRICT"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    placement_id: Mapped[int | None] = mapped_column(
        ForeignKey("placements.id", ondelete="SET NULL")
    )
    # Retakes (recertification) add a record with the next sequence number.
    sequence: Mapped[int] = mapped_column(default=1)
    learner_sub: Mapped[str | None] = mapped_column(String(255))
    learner_name: Mapped[str | None] = mapped_column(String(300))
    learner_email: Mapped[str | None] = mapped_column(String(320))
    context_lms_id: Mapped[str] = mapped_column(String(255))
    context_title: Mapped[str | None] = mapped_column(String(500))
    resource_link_id: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(20))
    score_percent: Mapped[int | None]
    # Snapshots for the auditor: case attempts made and time spent when the record was earned.
    case_attempts: Mapped[int] = mapped_column(default=0)
    seconds_spent: Mapped[int] = mapped_column(default=0)
    completed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # End of validity when the placement asks for recertification; None means no expiry.
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    content_versions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    attested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attestation_text: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
