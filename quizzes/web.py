"""Wire cases into an app: the content kind, the player, launch targets, course home entries."""

from __future__ import annotations

from flask import Flask, url_for
from sqlalchemy.orm import Session

from course.content import content_kinds
from course.models import Placement
from lessons.outline import ActivityEntry, activity_sources
from plugin.models import Launch
from plugin.web import launch_targets
from quizzes import editor, player
from quizzes.attempts import attempts_in_placement, counted, published_cases
from quizzes.kind import CaseKind


def case_status(attempts, case) -> str:  # type: ignore[no-untyped-def]
    """How a learner stands on a case, in words (never colour alone)."""
    result = counted(case, attempts)
    if result is not None:
        return f"✓ Passed ({result.percent}%)" if result.passed else f"Not passed yet ({result.percent}%)"
    if attempts:
        return "In progress"
    return "Not started"


def _activities(session: Session, placement: Placement, user_id: int) -> dict[str, list[ActivityEntry]]:
    by_module: dict[str, list[ActivityEntry]] = {}
    all_attempts = attempts_in_placement(session, user_id=user_id, placement_id=placement.id)
    for _version, case in sorted(published_cases(session, placement.platform_id), key=lambda vc: vc[1].title):
        if not player.in_scope(placement, case):
            continue
        attempts = all_attempts.get(case.id, [])
        by_module.setdefault(case.module, []).append(
            ActivityEntry(
                kind="case", slug=case.id, title=case.title, summary=case.summary,
                url=url_for("cases.case_intro", placement_id=placement.id, slug=case.id),
                status=case_status(attempts, case),
            )
        )
    return by_module


def _case_target(launch: Launch) -> str:
    from course.database import db

    placement = db.session.get(Placement, launch.placement_id)
    assert placement is not None
    return url_for("cases.case_intro", placement_id=placement.id, slug=placement.target_ref)


def init_app(app: Flask) -> None:
    """Register everything cases bring."""
    content_kinds(app)["case"] = CaseKind()
    app.register_blueprint(player.bp)
    app.register_blueprint(editor.bp)
    app.extensions.setdefault("rebound.staff_links", []).append(
        {"roles": {"trainer", "admin"}, "label": "Cases", "endpoint": "case_editor.index"}
    )
    activity_sources(app).append(_activities)
    launch_targets(app)["case"] = _case_target
