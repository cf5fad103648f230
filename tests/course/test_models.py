"""The schema itself enforces the rules: uniqueness, foreign keys, checks, UTC timestamps."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, StatementError

from course.database import db
from course.models import Deployment, LocalAccount, Platform, User


def test_same_issuer_and_client_id_cannot_be_registered_twice(
    make_platform: Callable[..., Platform],
) -> None:
    make_platform(issuer="https://canvas.instructure.com", client_id="1000")
    make_platform(issuer="https://canvas.instructure.com", client_id="2000")
    with pytest.raises(IntegrityError):
        make_platform(issuer="https://canvas.instructure.com", client_id="1000")


def test_foreign_keys_are_enforced_by_the_database(app: Flask) -> None:
    db.session.add(Deployment(platform_id=987654, deployment_id="orphan"))
    with pytest.raises(IntegrityError):
        db.session.flush()


def test_a_user_is_unique_per_platform_and_subject(make_platform: Callable[..., Platform]) -> None:
    one, two = make_platform(), make_platform()
    db.session.add_all([User(platform_id=one.id, sub="u1"), User(platform_id=two.id, sub="u1")])
    db.session.flush()
    db.session.add(User(platform_id=one.id, sub="u1"))
    with pytest.raises(IntegrityError):
        db.session.flush()


def test_staff_other_than_admins_must_belong_to_a_platform(app: Flask) -> None:
    db.session.add(LocalAccount(username="hr", role="hr", password_hash="x"))
    with pytest.raises(IntegrityError):
        db.session.flush()


def test_unknown_roles_are_refused_by_the_database(app: Flask) -> None:
    db.session.add(LocalAccount(username="boss", role="superuser", password_hash="x"))
    with pytest.raises(IntegrityError):
        db.session.flush()


def test_timestamps_come_back_in_utc_whatever_zone_went_in(
    make_platform: Callable[..., Platform],
) -> None:
    platform = make_platform()
    paris = timezone(timedelta(hours=1))
    user = User(platform_id=platform.id, sub="tz", last_launch_at=datetime(2026, 3, 1, 10, 0, tzinfo=paris))
    db.session.add(user)
    db.session.commit()
    db.session.expire_all()
    stored = db.session.scalar(select(User).where(User.sub == "tz"))
    assert stored is not None and stored.last_launch_at is not None
    assert stored.last_launch_at == datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    assert stored.last_launch_at.utcoffset() == timedelta(0)


def test_naive_timestamps_are_refused(make_platform: Callable[..., Platform]) -> None:
    platform = make_platform()
    db.session.add(User(platform_id=platform.id, sub="naive", last_launch_at=datetime(2026, 1, 1)))
    with pytest.raises(StatementError, match="naive datetime"):
        db.session.flush()
