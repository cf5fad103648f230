"""LMS platforms (each one a tenant) and their deployments."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from course.database import Base, UTCDateTime, utcnow

REGISTRATION_KINDS = ("static", "dynamic", "development")


class Platform(Base):
    """An LMS registration (issuer + client id): the tenant boundary for all data."""

    __tablename__ = "platforms"
    __table_args__ = (
        UniqueConstraint("issuer", "client_id"),
        CheckConstraint(
            "registration IN ('static', 'dynamic', 'development')", name="registration_kind"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    issuer: Mapped[str] = mapped_column(String(500))
    client_id: Mapped[str] = mapped_column(String(255))
    auth_login_url: Mapped[str] = mapped_column(String(1000))
    auth_token_url: Mapped[str] = mapped_column(String(1000))
    # D2L and some others expect a client-assertion audience other than the token URL.
    auth_token_audience: Mapped[str | None] = mapped_column(String(1000))
    jwks_url: Mapped[str] = mapped_column(String(1000))
    registration: Mapped[str] = mapped_column(String(20), default="static")
    role_overrides: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Pages allowed to frame Rebound (CSP frame-ancestors): configured, and learned from
    # launches (Canvas customers' hosts differ from the shared issuer).
    frame_origins: Mapped[list[str]] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # Health, shown to admins: what an LMS administrator needs to debug a registration.
    last_launch_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    clock_skew_seconds: Mapped[int | None]
    keys_status: Mapped[str | None] = mapped_column(String(300))
    keys_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    deployments: Mapped[list[Deployment]] = relationship(
        back_populates="platform", cascade="all, delete-orphan"
    )

    def __repr__(self) -> str:
        return f"<Platform {self.id} {self.issuer} client={self.client_id}>"


class Deployment(Base):
    """One placement of the tool inside a platform, as named by `deployment_id`."""

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("platform_id", "deployment_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id", ondelete="CASCADE"))
    deployment_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    platform: Mapped[Platform] = relationship(back_populates="deployments")
