"""Counting failed sign-ins in the database so every app process sees the same lockouts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from course.database import UTCDateTime
from course.models import LoginThrottle


@dataclass(frozen=True)
class ThrottlePolicy:
    """How many failures within `window` lock a key, and for how long."""

    max_failures: int
    window: timedelta
    lockout: timedelta


def locked_until(session: Session, key: str, now: datetime) -> datetime | None:
    """When the lock on `key` ends, or None if it isn't locked."""
    until = session.scalar(select(LoginThrottle.locked_until).where(LoginThrottle.key == key))
    return until if until is not None and until > now else None


def record_failure(
    session: Session, key: str, policy: ThrottlePolicy, now: datetime
) -> datetime | None:
    """Count one failure for `key` atomically; return the lock's end if this one locks it."""
    table = LoginThrottle.__table__
    insert = (postgresql if session.bind.dialect.name == "postgresql" else sqlite).insert  # type: ignore[union-attr]
    window_start = literal(now - policy.window, UTCDateTime)
    expired = table.c.window_started_at < window_start
    statement = (
        insert(table)
        .values(key=key, failures=1, window_started_at=now)
        .on_conflict_do_update(
            index_elements=[table.c.key],
            set_={
                "failures": case((expired, 1), else_=table.c.failures + 1),
                "window_started_at": case(
                    (expired, literal(now, UTCDateTime)), else_=table.c.window_started_at
                ),
            },
        )
        .returning(table.c.failures)
    )
    failures = session.execute(statement).scalar_one()
    if failures < policy.max_failures:
        return None
    until = now + policy.lockout
    session.execute(update(LoginThrottle).where(LoginThrottle.key == key).values(locked_until=until))
    return until


def clear(session: Session, key: str) -> None:
    """Forget the failures counted for `key` (after a successful sign-in)."""
    session.execute(delete(LoginThrottle).where(LoginThrottle.key == key))
