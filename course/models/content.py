"""Versioned content: lessons and cases, their immutable published versions and their drafts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from course.database import Base, UTCDateTime, utcnow

CONTENT_KINDS = ("lesson", "case")


class ContentItem(Base):
    """A lesson or case, identified by the id in its front matter or YAML (its slug).

    `platform_id` is NULL for the shipped course, which every platform sees until its
    trainers publish their own version.
    """

    __tablename__ = "content_items"
    __table_args__ = (
        CheckConstraint("kind IN ('lesson', 'case')", name="kind"),
        # NULL never equals NULL in a UNIQUE constraint, so the shipped library needs its own index.
        Index(
            "uq_content_items_shipped_kind_slug",
            "kind",
            "slug",
            unique=True,
            sqlite_where=text("platform_id IS NULL"),
            postgresql_where=text("platform_id IS NULL"),
        ),
        Index(
            "uq_content_items_platform_kind_slug",
            "platform_id",
            "kind",
            "slug",
            unique=True,
            sqlite_where=text("platform_id IS NOT NULL"),
            postgresql_where=text("platform_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    platform_id: Mapped[int | None] = mapped_column(
        ForeignKey("platforms.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(10))
    slug: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    versions: Mapped[list[ContentVersion]] = relationship(
        back_populates="item", order_by="ContentVersion.number"
    )


class ContentVersion(Base):
    """A published, immutable version of a lesson or case; progress names the one it was on."""

    __tablename__ = "content_versions"
    __table_args__ = (
        UniqueConstraint("item_id", "number"),
        CheckConstraint("number >= 1", name="number_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("content_items.id", ondelete="RESTRICT"))
    number: Mapped[int]
    title: Mapped[str] = mapped_column(String(300))
    source: Mapped[str] = mapped_column(Text)
    checksum: Mapped[str] = mapped_column(String(64))
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_by: Mapped[str | None] = mapped_column(String(300))

    item: Mapped[ContentItem] = relationship(back_populates="versions")


class ContentDraft(Base):
    """The one working copy of an item; `revision` refuses stale saves instead of overwriting."""

    __tablename__ = "content_drafts"

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(
        ForeignKey("content_items.id", ondelete="CASCADE"), unique=True
    )
    source: Mapped[str] = mapped_column(Text)
    revision: Mapped[int] = mapped_column(default=1)
    based_on_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("content_versions.id", ondelete="SET NULL")
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(300))

    item: Mapped[ContentItem] = relationship()
