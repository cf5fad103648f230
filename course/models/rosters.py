"""Course rosters from the LMS (NRPS): the people expected to take a placement's course,
so HR sees those who never started."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from course.database import Base, UTCDateTime, utcnow


class RosterMember(Base):
    """One member of an LMS context as NRPS last reported them."""

    __tablename__ = "roster_members"
    __table_args__ = (UniqueConstraint("context_id", "sub"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id", ondelete="CASCADE"))
    context_id: Mapped[int] = mapped_column(ForeignKey("contexts.id", ondelete="CASCADE"))
    sub: Mapped[str] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(300))
    email: Mapped[str | None] = mapped_column(String(320))
    lis_person_sourcedid: Mapped[str | None] = mapped_column(String(255))
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    # NRPS member status: Active, Inactive or Deleted (a member removed from the course).
    status: Mapped[str] = mapped_column(String(20), default="Active")
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
