"""The export log: every HR export, who asked, with which filters, and how it ended."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from course.database import Base, UTCDateTime, utcnow


class ExportRun(Base):
    """One export; a file that could not be finished stays `failed`, never `complete`."""

    __tablename__ = "export_runs"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'complete', 'failed')", name="status"),
        CheckConstraint("channel IN ('web', 'cli', 'api')", name="channel"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # None for a cross-tenant admin export.
    platform_id: Mapped[int | None] = mapped_column(ForeignKey("platforms.id", ondelete="SET NULL"))
    requested_by: Mapped[str] = mapped_column(String(300))
    channel: Mapped[str] = mapped_column(String(10))
    format: Mapped[str] = mapped_column(String(10))
    filters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="running")
    row_count: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
