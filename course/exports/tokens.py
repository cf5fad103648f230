"""API tokens for HR systems: made once, stored only as a SHA-256, scoped to one tenant."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from course.models import ApiToken, Platform

TOKEN_PREFIX: Final = "rbt_"  # noqa: S105 - a marker that makes leaked tokens easy to spot
TOKEN_ROLES: Final = ("hr", "admin")


class TokenError(ValueError):
    """A token that cannot be used, with the reason to give the caller."""


@dataclass(frozen=True)
class TokenPrincipal:
    """Whoever a valid bearer token speaks for: one tenant, one role (flask-login's user)."""

    token_id: int
    name: str
    role: str
    platform_id: int

    is_authenticated: bool = True
    is_active: bool = True
    is_anonymous: bool = False

    def get_id(self) -> str:
        return f"token:{self.token_id}"


def hash_token(token: str) -> str:
    """The SHA-256 (hex) under which a token is stored and looked up."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session, *, platform: Platform, name: str, role: str, expires_days: int | None, now: datetime
) -> tuple[ApiToken, str]:
    """Make a token; returns the stored row and the token itself, which is never stored."""
    if role not in TOKEN_ROLES:
        raise TokenError(f"role must be one of {', '.join(TOKEN_ROLES)}")
    if not name.strip():
        raise TokenError("give the token a name that says who uses it, e.g. 'Workday sync'")
    if expires_days is not None and expires_days < 1:
        raise TokenError("--expires-days must be at least 1")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        platform_id=platform.id,
        name=name.strip()[:200],
        role=role,
        token_hash=hash_token(secret),
        prefix=secret[:12],
        created_at=now,
        expires_at=now + timedelta(days=expires_days) if expires_days else None,
    )
    session.add(token)
    session.flush()
    return token, secret


def authenticate_token(session: Session, secret: str, *, now: datetime) -> TokenPrincipal:
    """The principal of a presented token, recording its use; TokenError says why it is refused."""
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(secret)))
    if token is None:
        raise TokenError("This API token is not known. Check it was copied whole, or make a new one.")
    if token.revoked_at is not None:
        raise TokenError(f"This API token ({token.prefix}…) was revoked; ask the operator for a new one.")
    if token.expires_at is not None and token.expires_at <= now:
        raise TokenError(
            f"This API token ({token.prefix}…) expired on {token.expires_at.isoformat(timespec='seconds')}; "
            "ask the operator for a new one."
        )
    token.last_used_at = now
    session.flush()
    return TokenPrincipal(token.id, token.name, token.role, token.platform_id)


def revoke_token(session: Session, token_id: int, *, now: datetime) -> ApiToken:
    """Revoke a token at once (revoking twice keeps the first time)."""
    token = session.get(ApiToken, token_id)
    if token is None:
        raise TokenError(f"No API token has the id {token_id}; `rebound tokens list` shows them.")
    if token.revoked_at is None:
        token.revoked_at = now
        session.flush()
    return token


def list_tokens(session: Session) -> list[ApiToken]:
    """Every token, newest first."""
    return list(session.scalars(select(ApiToken).order_by(ApiToken.created_at.desc(), ApiToken.id.desc())))
