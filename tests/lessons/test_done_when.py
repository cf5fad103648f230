"""Issue 4's "done when", end to end through the development LMS: a learner reads every lesson
and the progress bar reaches the end; a trainer edits, previews and publishes a lesson; the
learner sees the new version while earlier progress keeps naming the old one."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask import Flask
from sqlalchemy import select

from course.database import db
from course.models import ContentVersion, LessonProgress
from tests.helpers import csrf_token_from
from tests.lessons.dev_lms_launch import dev_lms_launcher
from tests.lessons.test_editor import _form

SLUG = "own-apologizing-well"


def test_through_the_development_lms_a_learner_reads_every_lesson_and_sees_a_trainers_new_version(
    app: Flask, course_content: None
) -> None:
    launch = dev_lms_launcher(app)
    lena, home_url = launch("lena")
    placement = re.fullmatch(r"/p/(\d+)/", home_url)
    assert placement, home_url
    home = lena.get(home_url).get_data(as_text=True)
    assert '<progress id="course-progress" max="9" value="0">' in home
    slugs = list(dict.fromkeys(re.findall(rf'href="{home_url}lessons/([a-z0-9-]+)"', home)))
    assert len(slugs) == 9
    for slug in slugs:
        page = lena.get(f"{home_url}lessons/{slug}").get_data(as_text=True)
        assert lena.post(f"{home_url}lessons/{slug}/complete", data={"csrf_token": csrf_token_from(page)}).status_code == 303
    home = lena.get(home_url).get_data(as_text=True)
    assert '<progress id="course-progress" max="9" value="9">' in home and "Lessons completed: 9 of 9" in home

    theo, _ = launch("theo")
    form = _form(theo.get(f"/trainer/lessons/{SLUG}/edit").get_data(as_text=True))
    form["body"] = form["body"].replace("## The five parts of a good apology", "## Five parts of an apology people believe")
    preview = theo.post(f"/trainer/lessons/{SLUG}/edit", data={**form, "preview": "Preview"}).get_data(as_text=True)
    assert "Five parts of an apology people believe" in preview
    published = theo.post(f"/trainer/lessons/{SLUG}/edit", data={**form, "publish": "Publish"})
    assert published.status_code == 303, published.get_data(as_text=True)

    lesson = lena.get(f"{home_url}lessons/{SLUG}").get_data(as_text=True)
    assert "Five parts of an apology people believe" in lesson
    progress = db.session.scalar(select(LessonProgress).where(LessonProgress.lesson_slug == SLUG))
    assert progress is not None and progress.completed_at is not None
    completed_on = db.session.get(ContentVersion, progress.completed_version_id)
    assert completed_on is not None and completed_on.number == 1


def test_the_shipped_course_is_imported_on_first_start_and_not_again(
    app_factory: Callable[..., Flask], empty_database_url: str
) -> None:
    from course import migrate
    from course.commands import prepare_content
    from course.database import make_engine
    from course.models import ContentItem

    engine = make_engine(empty_database_url)
    migrate.upgrade(engine)
    engine.dispose()
    fresh = app_factory(DATABASE_URL=empty_database_url)
    with fresh.app_context():
        prepare_content()  # what `rebound serve` does before it starts
        kinds = db.session.scalars(select(ContentItem.kind).where(ContentItem.platform_id.is_(None))).all()
        assert sorted(set(kinds)) == ["case", "lesson"] and kinds.count("lesson") == 9 and kinds.count("case") == 5
        versions = db.session.scalars(select(ContentVersion.id)).all()
        prepare_content()  # the next start finds nothing new
        assert db.session.scalars(select(ContentVersion.id)).all() == versions


def test_the_live_preview_is_exactly_the_html_learners_get(launch_as: Callable[..., Any]) -> None:
    from tests.conftest import INSTRUCTOR_ROLE

    learner, placement = launch_as()
    trainer, _ = launch_as(sub="trainer-1", role=INSTRUCTOR_ROLE)
    form = _form(trainer.get(f"/trainer/lessons/{SLUG}/edit").get_data(as_text=True))
    form["body"] += "\n| Say | Avoid |\n|---|---|\n| *sorry* | [policy](javascript:alert(1)) |\n<script>x</script>\n"
    preview = trainer.post("/trainer/lessons/preview", data={"body": form["body"]}, headers={"X-CSRFToken": form["csrf_token"]})
    assert trainer.post(f"/trainer/lessons/{SLUG}/edit", data={**form, "publish": "Publish"}).status_code == 303
    page = learner.get(f"/p/{placement.id}/lessons/{SLUG}").get_data(as_text=True)
    shown = page.split('<div class="lesson-body">', 1)[1].split('</div>\n  <div class="lesson-complete">', 1)[0]
    assert preview.get_json()["html"] == shown and "<table" in shown and "<script" not in shown
