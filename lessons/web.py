"""Wire lessons into an app: the content kind, the player, the editor, launch targets."""

from __future__ import annotations

from flask import Flask, url_for

from course.content import content_kinds
from lessons import editor, player
from lessons.kind import LessonKind
from plugin.models import Launch
from plugin.web import launch_targets


def _course_home(launch: Launch) -> str:
    return url_for("lessons.course_home", placement_id=launch.placement_id)


def _lesson(launch: Launch) -> str:
    from course.database import db
    from course.models import Placement

    placement = db.session.get(Placement, launch.placement_id)
    assert placement is not None
    return url_for("lessons.lesson", placement_id=placement.id, slug=placement.target_ref)


def init_app(app: Flask) -> None:
    """Register everything lessons bring."""
    content_kinds(app)["lesson"] = LessonKind()
    app.register_blueprint(player.bp)
    app.register_blueprint(editor.bp)
    targets = launch_targets(app)
    targets["course"] = _course_home
    targets["module"] = _course_home
    targets["lesson"] = _lesson
    app.extensions.setdefault("rebound.staff_links", []).append(
        {"roles": {"trainer", "admin"}, "label": "Lessons", "endpoint": "lesson_editor.index"}
    )
