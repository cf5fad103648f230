"""The trainer's lesson editor: drafts, live preview, publishing, history and restore."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from course import content_views
from course.access import allow, current_platform_id
from course.content import (
    ContentError,
    StaleDraft,
    content_kinds,
    draft_for,
    new_item_draft,
    publish_draft,
    save_draft,
)
from course.database import db, utcnow
from course.errors import abort_with
from lessons.forms import LessonForm
from lessons.kind import shipped_modules
from lessons.outline import lessons_for
from lessons.render import render_markdown
from lessons.schema import Lesson, parse_lesson

bp = Blueprint("lesson_editor", __name__, template_folder="templates")
AUTHORS = ("trainer", "admin")
FIELDS = ("slug", "title", "module", "order", "estimated_minutes", "objectives", "body")


_author = content_views.author_name


def _form_from_lesson(form: LessonForm, lesson: Lesson, revision: int) -> None:
    form.slug.data, form.title.data, form.module.data = lesson.id, lesson.title, lesson.module
    form.order.data, form.estimated_minutes.data = lesson.order, lesson.estimated_minutes
    form.objectives.data = "\n".join(lesson.objectives)
    form.body.data, form.revision.data = lesson.body, str(revision)


def _lesson_text(form: LessonForm, slug: str, version: int) -> str:
    objectives = tuple(line.strip() for line in (form.objectives.data or "").splitlines() if line.strip())
    lesson = Lesson(
        id=slug, title=(form.title.data or "").strip(), module=form.module.data or "", order=form.order.data or 0,
        objectives=objectives, estimated_minutes=form.estimated_minutes.data or 0, version=version,
        body=(form.body.data or "").replace("\r\n", "\n").strip() + "\n",
    )
    return lesson.to_text()


def _field_errors(problems: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Put each schema problem beside the field it is about; the rest go on top."""
    by_field: dict[str, list[str]] = {}
    general: list[str] = []
    aliases = {"id": "slug", "objectives": "objectives", "estimated_minutes": "estimated_minutes"}
    for problem in problems:
        message = problem.split(": ", 1)[-1]
        field = next((f for f in (*aliases, *FIELDS) if f"`{f}`" in message or f"{f} " in message.split(":")[0]), None)
        if field is None and ("body" in message or "Key takeaways" in message):
            field = "body"
        if field is None:
            general.append(message)
        else:
            by_field.setdefault(aliases.get(field, field), []).append(message)
    return by_field, general


def _render_editor(form: LessonForm, slug: str | None, *, problems=None, status=200, preview_html=None, notice=None):  # type: ignore[no-untyped-def]
    by_field, general = _field_errors(problems or [])
    return render_template(
        "lessons/editor.html",
        form=form,
        slug=slug,
        field_problems=by_field,
        general_problems=general,
        preview_html=preview_html,
        notice=notice,
        action_form=content_views.ActionForm(),
    ), status


@bp.route("/trainer/lessons/<slug>/edit", methods=["GET", "POST"])
@allow(*AUTHORS)
def edit(slug: str) -> WerkzeugResponse | tuple[str, int]:
    tenant, now = current_platform_id(), utcnow()
    form = LessonForm()
    form.module.choices = [(m.id, m.title) for m in shipped_modules()]
    try:
        draft = draft_for(db.session, tenant, "lesson", slug, by=_author(), now=now)
    except ContentError as error:
        abort_with(404, str(error))
    if request.method == "GET":
        lesson, _ = parse_lesson(draft.source, f"{slug}.md", [m.id for m in shipped_modules()])
        if lesson is not None:
            _form_from_lesson(form, lesson, draft.revision)
        else:
            form.body.data, form.revision.data = draft.source, str(draft.revision)
        db.session.commit()
        return _render_editor(form, slug)

    if not form.validate_on_submit():
        db.session.rollback()
        return _render_editor(form, slug, problems=[], status=400)
    text = _lesson_text(form, slug, 1)
    parsed, problems = content_kinds()["lesson"].parse(text, f"{slug}.md")
    if parsed is not None and parsed.slug != slug:
        problems = [f"{slug}.md:1: the lesson id can't change here; create a new lesson instead"]
        parsed = None
    revision = int(form.revision.data or 0)
    if form.preview.data:
        db.session.rollback()
        body_html = render_markdown(form.body.data or "")
        return _render_editor(form, slug, problems=problems, preview_html=body_html)
    db.session.commit()  # the save's UPDATE starts its own transaction, so SQLite queues it (see quizzes/editor.py)
    try:
        if form.publish.data:
            if parsed is None:
                db.session.rollback()
                return _render_editor(form, slug, problems=problems, status=422)
            save_draft(db.session, draft, text, expected_revision=revision, by=_author(), now=now)
            version = publish_draft(db.session, draft, parsed, expected_revision=revision + 1, by=_author(), now=now)
            db.session.commit()
            return redirect(url_for("lesson_editor.history_page", slug=slug, published=version.number), code=303)
        save_draft(db.session, draft, text, expected_revision=revision, by=_author(), now=now)
    except StaleDraft as error:
        db.session.rollback()
        return _render_editor(form, slug, problems=[str(error)], status=409)
    db.session.commit()
    form.revision.data = str(draft.revision)
    notice = "Draft saved." + (" It has problems to fix before it can be published." if problems else "")
    return _render_editor(form, slug, problems=problems, notice=notice)


@bp.route("/trainer/lessons/new", methods=["GET", "POST"])
@allow(*AUTHORS)
def new() -> WerkzeugResponse | tuple[str, int]:
    form = LessonForm()
    form.module.choices = [(m.id, m.title) for m in shipped_modules()]
    if request.method == "GET":
        form.body.data = "## A first section\n\nWrite here.\n\n## Key takeaways\n\n- One thing to remember.\n"
        return _render_editor(form, None)
    if not form.validate_on_submit():
        return _render_editor(form, None, status=400)
    slug = (form.slug.data or "").strip()
    text = _lesson_text(form, slug, 1)
    parsed, problems = content_kinds()["lesson"].parse(text, f"{slug or 'new-lesson'}.md")
    if parsed is None:
        return _render_editor(form, None, problems=problems, status=422)
    try:
        new_item_draft(db.session, current_platform_id(), "lesson", slug, text, by=_author(), now=utcnow())
    except ContentError as error:
        db.session.rollback()
        return _render_editor(form, None, problems=[str(error)], status=409)
    db.session.commit()
    return redirect(url_for("lesson_editor.edit", slug=slug), code=303)


@bp.route("/trainer/lessons/preview", methods=["POST"])
@allow(*AUTHORS)
def preview() -> Response:
    """Live preview: the same renderer learners get, so what you see is what they see."""
    return jsonify(html=render_markdown(request.form.get("body", "")))


@bp.route("/trainer/lessons/<slug>/history")
@allow(*AUTHORS)
def history_page(slug: str) -> str:
    return content_views.history_page("lesson", slug, "lessons/history.html")


@bp.route("/trainer/lessons/<slug>/restore/<int:version_id>", methods=["POST"])
@allow(*AUTHORS)
def restore(slug: str, version_id: int) -> WerkzeugResponse:
    return content_views.restore_version("lesson", slug, version_id, edit_endpoint="lesson_editor.edit")


@bp.route("/trainer/lessons/")
@allow(*AUTHORS)
def index() -> str:
    tenant = current_platform_id()
    entries = lessons_for(db.session, tenant)
    return render_template("lessons/editor_index.html", entries=entries, tenant=tenant, modules=shipped_modules())
