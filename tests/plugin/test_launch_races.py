"""Launches that race: a course's first learners arriving at the same moment."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, insert, select

from course.database import db
from course.models import Context, Platform
from plugin.launches import _found_or_added


def test_a_context_another_launch_added_a_moment_ago_is_used_instead_of_failing(
    make_platform: Callable[..., Platform],
) -> None:
    platform = make_platform()
    deployment = platform.deployments[0]
    query = select(Context).where(Context.deployment_id == deployment.id, Context.lms_context_id == "course-9")

    def make() -> Context:
        # The other launch inserts its row between this one's look-up and its insert.
        db.session.execute(insert(Context).values(
            platform_id=platform.id, deployment_id=deployment.id, lms_context_id="course-9", title="theirs"
        ))
        return Context(platform_id=platform.id, deployment_id=deployment.id, lms_context_id="course-9")

    context = _found_or_added(db.session, query, make)

    assert context.title == "theirs"
    count = select(func.count()).select_from(Context).where(Context.lms_context_id == "course-9")
    assert db.session.scalar(count) == 1


def test_a_new_context_is_added_when_nobody_else_has_it(make_platform: Callable[..., Platform]) -> None:
    platform = make_platform()
    deployment = platform.deployments[0]
    query = select(Context).where(Context.deployment_id == deployment.id, Context.lms_context_id == "course-10")

    context = _found_or_added(
        db.session, query,
        lambda: Context(platform_id=platform.id, deployment_id=deployment.id, lms_context_id="course-10"),
    )

    assert context.id is not None
    assert db.session.scalar(query) is context
