"""People: LMS users, staff accounts that sign in locally, API tokens, and sign-in throttles."""

from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from course.database import Base, UTCDateTime, utcnow
from course.models.tenants import Platform

LOCAL_ROLES = ("hr", "trainer", "admin")


class User(Base, UserMixin):
    """A person as one platform knows them (keyed by the LTI `sub`)."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("platform_id", "sub"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id", ondelete="CASCADE"))
    sub: Mapped[str] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(300))
    given_name: Mapped[str | None] = mapped_column(String(200))
    family_name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    lis_person_sourcedid: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    last_launch_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set by `rebound learners erase`: identifying fields are gone, the facts stay.
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    platform: Mapped[Platform] = relationship()

    def get_id(self) -> str:
        return f"lti:{self.id}"


class LocalAccount(Base, UserMixin):
    """A trainer, HR or admin who signs in with a password, outside any LMS."""

    __tablename__ = "local_accounts"
    __table_args__ = (
        CheckConstraint("role IN ('hr', 'trainer', 'admin')", name="role"),
        # Only admins work across tenants; everyone else belongs to one platform.
        CheckConstraint("role = 'admin' OR platform_id IS NOT NULL", name="tenant_required"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(20))
    platform_id: Mapped[int | None] = mapped_column(
        ForeignKey("platforms.id", ondelete="CASCADE")
    )
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    platform: Mapped[Platform | None] = relationship()

    def get_id(self) -> str:
        return f"local:{self.id}"

    @property
    def is_active(self) -> bool:  # type: ignore[override]
        return self.active


class ApiToken(Base):
    """A bearer token for HR systems; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"
    __table_args__ = (CheckConstraint("role IN ('hr', 'admin')", name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20), default="hr")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters, shown in listings so operators can tell tokens apart.
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    platform: Mapped[Platform] = relationship()


class LoginThrottle(Base):
    """Failed sign-ins counted per key (an account or an address), shared by all processes."""

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    window_started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
