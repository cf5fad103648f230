"""Queueing grades: one outbox row per change, timestamps that never go backwards."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from course.database import db
from course.grades import queue_grade
from course.models import GradeOutbox, Placement, User

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
def graded(make_platform: Callable[..., Any]) -> tuple[Placement, User]:
    """A placement with a line item and a learner in it."""
    from course.models import Context

    platform = make_platform()
    context = Context(platform_id=platform.id, deployment_id=platform.deployments[0].id, lms_context_id="c1")
    db.session.add(context)
    db.session.flush()
    placement = Placement(platform_id=platform.id, context_id=context.id, resource_link_id="rl1",
                          lineitem_url="https://lms.example.edu/lineitems/7?type=x")
    user = User(platform_id=platform.id, sub="learner-1")
    db.session.add_all([placement, user])
    db.session.flush()
    return placement, user


def _queue(placement: Placement, user: User, key: str, now: datetime = NOW, **overrides: Any) -> bool:
    fields: dict[str, Any] = {
        "score_given": 80.0, "score_maximum": 100.0, "activity_progress": "Completed",
        "grading_progress": "FullyGraded", **overrides,
    }
    return queue_grade(db.session, placement=placement, user_id=user.id, change_key=key, now=now, **fields)


def test_the_same_change_is_queued_once(graded: tuple[Placement, User]) -> None:
    placement, user = graded
    assert _queue(placement, user, "record:1") is True
    assert _queue(placement, user, "record:1") is False
    assert db.session.scalar(select(func.count()).select_from(GradeOutbox)) == 1
    row = db.session.scalar(select(GradeOutbox))
    assert row is not None and row.status == "pending" and row.lineitem_url.endswith("/lineitems/7?type=x")


def test_a_placement_without_a_line_item_queues_nothing(graded: tuple[Placement, User]) -> None:
    placement, user = graded
    placement.lineitem_url = None
    assert _queue(placement, user, "record:2") is False
    assert db.session.scalar(select(func.count()).select_from(GradeOutbox)) == 0


def test_timestamps_always_increase_for_a_learner_and_line_item(graded: tuple[Placement, User]) -> None:
    placement, user = graded
    _queue(placement, user, "progress:1", now=NOW)
    _queue(placement, user, "progress:2", now=NOW - timedelta(seconds=5))  # a clock step backwards
    _queue(placement, user, "progress:3", now=NOW)
    stamps = list(db.session.scalars(select(GradeOutbox.scored_at).order_by(GradeOutbox.id)))
    assert stamps == sorted(stamps) and len(set(stamps)) == 3


def test_unknown_progress_values_are_a_programming_error(graded: tuple[Placement, User]) -> None:
    placement, user = graded
    with pytest.raises(ValueError, match="unknown AGS progress"):
        _queue(placement, user, "bad", activity_progress="Done")
