"""The learner's side: the course home, lesson pages, "mark complete", and progress JSON."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, Response, jsonify, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import update
from werkzeug.wrappers import Response as WerkzeugResponse

from course.access import allow, placement_or_404
from course.completion import evaluate
from course.completion_views import home_panel
from course.content import version_cache
from course.database import db, utcnow
from course.errors import abort_with
from course.models import LessonProgress
from course.progress import complete_lesson, heartbeat, lesson_statuses, open_lesson, resume_point
from lessons.outline import LessonEntry, in_scope, lessons_for, outline
from lessons.render import render_markdown
from lessons.schema import parse_lesson

bp = Blueprint(
    "lessons", __name__, template_folder="templates", static_folder="static", static_url_path="/lessons/static"
)
EVERYONE = ("learner", "trainer", "hr", "admin")
RENDERED_CACHE_SIZE = 256


class CompleteForm(FlaskForm):
    """Only the CSRF token: the lesson is in the URL."""


@dataclass(frozen=True)
class RenderedLesson:
    """What a lesson page shows of a published version, rendered once."""

    objectives: tuple[str, ...]
    body_html: str


def _rendered(entry: LessonEntry) -> RenderedLesson:
    """A version's objectives and sanitised HTML, kept per version id (versions never change)."""
    def render() -> RenderedLesson:
        # Only on a miss: once per version and process.
        parsed, _ = parse_lesson(entry.version.source, f"{entry.slug}.md", [entry.module])
        if parsed is None:
            return RenderedLesson((), render_markdown(""))
        return RenderedLesson(tuple(parsed.objectives), render_markdown(parsed.body))

    return version_cache("lessons.rendered", RENDERED_CACHE_SIZE).get(entry.version.id, render)


def _lessons_in_scope(placement):  # type: ignore[no-untyped-def]
    return in_scope(placement, lessons_for(db.session, placement.platform_id))


@bp.route("/p/<int:placement_id>/")
@allow(*EVERYONE)
def course_home(placement_id: int) -> str:
    placement = placement_or_404(placement_id)
    modules = outline(db.session, placement, current_user.id)
    lessons = [lesson for module in modules for lesson in module.lessons]
    statuses = {s.slug: s for s in lesson_statuses(
        db.session, user_id=current_user.id, placement_id=placement.id, slugs=[lesson.slug for lesson in lessons]
    )}
    done = sum(1 for s in statuses.values() if s.completed_at is not None)
    resume = resume_point([statuses[lesson.slug] for lesson in lessons])
    minutes_left = sum(lesson.estimated_minutes for lesson in lessons if statuses[lesson.slug].completed_at is None)
    return render_template(
        "lessons/course_home.html",
        placement=placement,
        modules=modules,
        statuses=statuses,
        done=done,
        total=len(lessons),
        resume=resume,
        minutes_left=minutes_left,
        started=any(s.first_opened_at for s in statuses.values()),
        completion=home_panel(placement, current_user),
    )


@bp.route("/p/<int:placement_id>/lessons/<slug>")
@allow(*EVERYONE)
def lesson(placement_id: int, slug: str) -> str:
    placement = placement_or_404(placement_id)
    lessons = _lessons_in_scope(placement)
    index = next((i for i, entry in enumerate(lessons) if entry.slug == slug), None)
    if index is None:
        abort_with(404, "That lesson isn't part of this course, or it isn't published yet.")
    entry = lessons[index]
    version_id = entry.version.id
    page = _rendered(entry)
    # One transaction reads and writes: SQLite sessions hold the write lock from their start
    # (course/database.py), and the upsert needs no earlier read on PostgreSQL.
    progress = open_lesson(
        db.session, user_id=current_user.id, placement_id=placement.id, slug=slug, version_id=version_id,
        now=utcnow(),
    )
    db.session.commit()
    return render_template(
        "lessons/lesson.html",
        placement=placement,
        entry=entry,
        objectives=page.objectives,
        body_html=page.body_html,
        previous=lessons[index - 1] if index > 0 else None,
        following=lessons[index + 1] if index + 1 < len(lessons) else None,
        progress=progress,
        position=index + 1,
        total=len(lessons),
        form=CompleteForm(),
    )


@bp.route("/p/<int:placement_id>/lessons/<slug>/complete", methods=["POST"])
@allow(*EVERYONE)
def complete(placement_id: int, slug: str) -> WerkzeugResponse:
    placement = placement_or_404(placement_id)
    lessons = _lessons_in_scope(placement)
    entry = next((e for e in lessons if e.slug == slug), None)
    if entry is None:
        abort_with(404, "That lesson isn't part of this course.")
    # The learner's progress row is locked (a no-op UPDATE) before it is read: simultaneous
    # clicks complete it once.
    db.session.execute(
        update(LessonProgress)
        .where(LessonProgress.user_id == current_user.id, LessonProgress.placement_id == placement.id,
               LessonProgress.lesson_slug == slug)
        .values(seconds_spent=LessonProgress.seconds_spent)
        .execution_options(synchronize_session=False)
    )
    complete_lesson(
        db.session, user_id=current_user.id, placement_id=placement.id, slug=slug, version_id=entry.version.id,
        now=utcnow(),
    )
    db.session.commit()
    # Committed first, so the lesson stays complete whatever the completion check finds.
    evaluate(db.session, user=current_user, placement=placement, now=utcnow())
    db.session.commit()
    index = next(i for i, e in enumerate(lessons) if e.slug == slug)
    if index + 1 < len(lessons):
        return redirect(url_for("lessons.lesson", placement_id=placement.id, slug=lessons[index + 1].slug), code=303)
    return redirect(url_for("lessons.course_home", placement_id=placement.id), code=303)


@bp.route("/p/<int:placement_id>/lessons/<slug>/heartbeat", methods=["POST"])
@allow(*EVERYONE)
def lesson_heartbeat(placement_id: int, slug: str) -> tuple[Response, int]:
    placement = placement_or_404(placement_id)
    progress = heartbeat(db.session, user_id=current_user.id, placement_id=placement.id, slug=slug, now=utcnow())
    db.session.commit()
    if progress is None:
        return jsonify(error="open the lesson first"), 404
    return jsonify(seconds_spent=progress.seconds_spent), 200


@bp.route("/p/<int:placement_id>/progress.json")
@allow(*EVERYONE)
def progress_json(placement_id: int) -> Response:
    """The learner's own progress in this placement, for their records or scripts."""
    placement = placement_or_404(placement_id)
    lessons = _lessons_in_scope(placement)
    statuses = lesson_statuses(
        db.session, user_id=current_user.id, placement_id=placement.id, slugs=[e.slug for e in lessons]
    )
    def iso(value):  # type: ignore[no-untyped-def]
        return value.isoformat() if value else None

    return jsonify(
        placement={"id": placement.id, "title": placement.title, "resource_link_id": placement.resource_link_id},
        learner={"sub": current_user.sub, "name": current_user.name},
        lessons=[
            {
                "id": entry.slug,
                "title": entry.title,
                "module": entry.module,
                "status": status.state,
                "first_opened_at": iso(status.first_opened_at),
                "last_opened_at": iso(status.last_opened_at),
                "completed_at": iso(status.completed_at),
                "seconds_spent": status.seconds_spent,
                "version": entry.version.number,
                "completed_on_version_id": status.completed_version_id,
            }
            for entry, status in zip(lessons, statuses, strict=True)
        ],
        lessons_completed=sum(1 for s in statuses if s.completed_at),
        lessons_total=len(lessons),
    )
