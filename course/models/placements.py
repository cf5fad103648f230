"""Where the course is used: LMS contexts (courses) and resource-link placements in them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from course.database import Base, UTCDateTime, utcnow
from course.models.tenants import Deployment, Platform

TARGET_KINDS = ("course", "module", "lesson", "case")


class Context(Base):
    """An LMS course (the LTI context) within one deployment."""

    __tablename__ = "contexts"
    # LTI promises a context id unique within its deployment, not across the platform.
    __table_args__ = (UniqueConstraint("deployment_id", "lms_context_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id", ondelete="CASCADE"))
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    lms_context_id: Mapped[str] = mapped_column(String(255))
    title: Mapped[str | None] = mapped_column(String(500))
    label: Mapped[str | None] = mapped_column(String(200))
    memberships_url: Mapped[str | None] = mapped_column(String(1000))
    # NRPS `rel="differences"` link from the last sync, to fetch only changes next time.
    roster_differences_url: Mapped[str | None] = mapped_column(String(2000))
    roster_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    platform: Mapped[Platform] = relationship()
    deployment: Mapped[Deployment] = relationship()


class Placement(Base):
    """A resource link: one place in an LMS course where Rebound (or part of it) is launched."""

    __tablename__ = "placements"
    __table_args__ = (
        UniqueConstraint("context_id", "resource_link_id"),
        CheckConstraint(
            "target_kind IN ('course', 'module', 'lesson', 'case')", name="target_kind"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id", ondelete="CASCADE"))
    context_id: Mapped[int] = mapped_column(ForeignKey("contexts.id", ondelete="CASCADE"))
    resource_link_id: Mapped[str] = mapped_column(String(255))
    title: Mapped[str | None] = mapped_column(String(500))
    target_kind: Mapped[str] = mapped_column(String(20), default="course")
    target_ref: Mapped[str | None] = mapped_column(String(100))
    lineitem_url: Mapped[str | None] = mapped_column(String(1000))
    lineitems_url: Mapped[str | None] = mapped_column(String(1000))
    # Completion rule, due date, recertification period, attestation: see the README.
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    context: Mapped[Context] = relationship()
