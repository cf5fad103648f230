"""The LTI plugin's own tables: the tool's keys, login states, used nonces, platform key
caches and launches waiting to be completed. All shared through the database, so any
app process can finish what another started."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from course.database import Base, UTCDateTime, utcnow


class ToolKeyRecord(Base):
    """One of the tool's RSA keys; the private half is stored encrypted (PKCS#8)."""

    __tablename__ = "tool_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    kid: Mapped[str] = mapped_column(String(64), unique=True)
    private_key_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    activated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    retire_after: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LoginState(Base):
    """An OIDC login in flight: the state and nonce we sent, and where it started."""

    __tablename__ = "lti_login_states"

    state: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64))
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id", ondelete="CASCADE"))
    target_link_uri: Mapped[str] = mapped_column(String(2000))
    # The LMS frame offering platform storage, when it offered one.
    storage_target: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class UsedNonce(Base):
    """A nonce that has been used once and may never be used again."""

    __tablename__ = "lti_nonces"
    __table_args__ = (UniqueConstraint("issuer", "nonce"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    issuer: Mapped[str] = mapped_column(String(500))
    nonce: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class JwksCacheEntry(Base):
    """A platform's key set as last fetched, and when a fetch was last tried."""

    __tablename__ = "jwks_cache"

    jwks_url: Mapped[str] = mapped_column(String(1000), primary_key=True)
    jwks_json: Mapped[str | None] = mapped_column(Text)
    fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Launch(Base):
    """A validated launch: the token to land with, or to finish in a new window."""

    __tablename__ = "lti_launches"
    __table_args__ = (Index("ix_lti_launches_expires_at", "expires_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # Only a hash is kept; the token itself travels once, in the landing URL.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    placement_id: Mapped[int | None] = mapped_column(
        ForeignKey("placements.id", ondelete="CASCADE")
    )
    message_type: Mapped[str] = mapped_column(String(60))
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    # What the session needs (deep-linking settings, return URL, AGS/NRPS endpoints).
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(64))
    browser_bound: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ServiceAccessToken(Base):
    """An OAuth2 access token for a platform's LTI Advantage services, shared by all processes.

    Cached per (platform, scopes) until shortly before it expires, so each worker and app
    process does not ask the LMS for a token on every grade or roster call.
    """

    __tablename__ = "lti_service_tokens"

    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id", ondelete="CASCADE"), primary_key=True)
    scopes: Mapped[str] = mapped_column(String(1000), primary_key=True)
    access_token: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
