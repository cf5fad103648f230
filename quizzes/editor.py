"""The trainer's case editor (YAML with live validation and a picture of the graph), the
draft preview, history, and choice analytics."""

from __future__ import annotations

import io
from collections.abc import Sequence

from flask import Blueprint, Response, jsonify, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from sqlalchemy import select
from werkzeug.wrappers import Response as WerkzeugResponse
from wtforms import HiddenField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length

from course import content_views
from course.access import allow, current_platform_id
from course.content import (
    ContentError,
    StaleDraft,
    content_kinds,
    draft_for,
    effective_version,
    publish_draft,
    save_draft,
)
from course.database import db, utcnow
from course.errors import abort_with
from course.models import CaseAttempt, CaseStep, ContentVersion, Placement
from lessons.render import render_inline, render_markdown
from quizzes import engine
from quizzes.analytics import AttemptRecord, StepRecord, analyse, analytics_csv_rows, bar_chart_svg, write_csv
from quizzes.attempts import case_of, published_cases
from quizzes.case_format import MAX_FILE_BYTES, Problem
from quizzes.engine import StepRefused
from quizzes.graph import graph_model_from_yaml, render_svg
from quizzes.validator import check_case

bp = Blueprint("case_editor", __name__, template_folder="templates")
AUTHORS = ("trainer", "admin")


class CaseForm(FlaskForm):
    """The case's YAML; the validator has the last word."""

    source = TextAreaField("Case (YAML)", validators=[DataRequired(), Length(max=MAX_FILE_BYTES)])
    revision = HiddenField()
    save = SubmitField("Save draft")
    check = SubmitField("Check")
    publish = SubmitField("Publish")


_author = content_views.author_name


def _problems_by_node(problems: Sequence[Problem]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for problem in problems:
        if problem.node_id:
            grouped.setdefault(problem.node_id, []).append(problem.message)
    return grouped


def check(text: str, filename: str) -> tuple[list[Problem], str]:
    """Validate a case text and draw what can be drawn of it, problems marked."""
    _, problems = check_case(text, filename)
    # A problem of the whole case (the YAML, the pass mark) has no box, so it is named under the picture.
    of_the_case = [f"Line {p.line}: {p.message}" for p in problems if not p.node_id]
    return problems, render_svg(graph_model_from_yaml(text), _problems_by_node(problems), case_problems=of_the_case)


def _render(form: CaseForm, slug: str, *, status: int = 200, notice: str | None = None, extra: Sequence[str] = ()):  # type: ignore[no-untyped-def]
    problems, svg = check(form.source.data or "", f"{slug}.yaml")
    return render_template(
        "cases/editor.html", form=form, slug=slug, problems=problems, extra_problems=extra, svg=svg, notice=notice,
    ), status


@bp.route("/trainer/cases/")
@allow(*AUTHORS)
def index() -> str:
    cases = sorted(published_cases(db.session, current_platform_id()), key=lambda vc: (vc[1].module, vc[1].title))
    return render_template("cases/editor_index.html", cases=cases, tenant=current_platform_id())


@bp.route("/trainer/cases/<slug>/edit", methods=["GET", "POST"])
@allow(*AUTHORS)
def edit(slug: str) -> WerkzeugResponse | tuple[str, int]:
    tenant, now = current_platform_id(), utcnow()
    try:
        draft = draft_for(db.session, tenant, "case", slug, by=_author(), now=now)
    except ContentError as error:
        abort_with(404, str(error))
    form = CaseForm()
    if request.method == "GET":
        form.source.data, form.revision.data = draft.source, str(draft.revision)
        db.session.commit()
        return _render(form, slug)
    if not form.validate_on_submit():
        db.session.rollback()
        return _render(form, slug, status=400)
    text = (form.source.data or "").replace("\r\n", "\n")
    revision = int(form.revision.data or 0)
    if form.check.data:
        db.session.rollback()
        return _render(form, slug)
    parsed, problems = content_kinds()["case"].parse(text, f"{slug}.yaml")
    if parsed is not None and parsed.slug != slug:
        db.session.rollback()
        return _render(form, slug, status=422, extra=["The case id can't change here."])
    # End the reading transaction, so the save's UPDATE is the first statement of its own: on
    # SQLite a write after reads fails outright when another save got in between; this waits.
    db.session.commit()
    try:
        save_draft(db.session, draft, text, expected_revision=revision, by=_author(), now=now)
        if form.publish.data:
            if parsed is None:
                db.session.rollback()
                return _render(form, slug, status=422)
            version = publish_draft(db.session, draft, parsed, expected_revision=revision + 1, by=_author(), now=now)
            db.session.commit()
            return redirect(url_for("case_editor.history_page", slug=slug, published=version.number), code=303)
    except StaleDraft as error:
        db.session.rollback()
        return _render(form, slug, status=409, extra=[str(error)])
    db.session.commit()
    form.revision.data = str(draft.revision)
    notice = "Draft saved." + (" It has problems to fix before it can be published." if problems else "")
    return _render(form, slug, notice=notice)


@bp.route("/trainer/cases/check", methods=["POST"])
@allow(*AUTHORS)
def live_check() -> Response:
    """Live validation for the editor: every problem with its line, and the graph."""
    text = request.form.get("source", "")
    problems, svg = check(text, request.form.get("filename", "case.yaml"))
    return jsonify(
        problems=[{"line": p.line, "message": p.message, "node": p.node_id, "text": str(p)} for p in problems],
        svg=svg,
    )


@bp.route("/trainer/cases/<slug>/preview")
@allow(*AUTHORS)
def preview(slug: str) -> str | tuple[str, int]:
    """Play the draft without recording anything: the path travels in the URL."""
    draft = draft_for(db.session, current_platform_id(), "case", slug, by=_author(), now=utcnow())
    db.session.commit()
    case, problems = check_case(draft.source, f"{slug}.yaml")
    if case is None or problems:
        return render_template("cases/preview.html", slug=slug, problems=problems, case=None), 422
    path = [p for p in request.args.get("path", "").split(",") if p]
    state = engine.start(case)
    consequence = None
    try:
        for choice_id in path:
            choice = case.node(state.current_node).choice(choice_id)
            state = engine.choose(case, state, state.current_node, choice_id)
            consequence = choice
    except StepRefused as refusal:
        return render_template("cases/preview.html", slug=slug, problems=[], case=None, refusal=refusal.reason), 400
    node = case.node(state.current_node)
    return render_template(
        "cases/preview.html", slug=slug, case=case, node=node, state=state, path=path, problems=[],
        text_html=render_markdown(node.text),
        consequence=render_markdown(consequence.consequence) if consequence else None,
        choices=[(c, render_inline(c.text)) for c in node.choices],
        ending_html=render_markdown(node.ending.debrief) if node.ending else None,
        percent=engine.percent(case, state) if state.ended else None,
        passed=engine.passed(case, state) if state.ended else None,
    )


@bp.route("/trainer/cases/<slug>/history")
@allow(*AUTHORS)
def history_page(slug: str) -> str:
    return content_views.history_page("case", slug, "cases/history.html")


@bp.route("/trainer/cases/<slug>/restore/<int:version_id>", methods=["POST"])
@allow(*AUTHORS)
def restore(slug: str, version_id: int) -> WerkzeugResponse:
    return content_views.restore_version("case", slug, version_id, edit_endpoint="case_editor.edit")


def _attempt_records(slug: str) -> list[AttemptRecord]:
    """Every attempt at a case in the current tenant, as plain data (other tenants never)."""
    tenant = current_platform_id()
    query = (
        select(CaseAttempt, ContentVersion.number)
        .join(Placement, Placement.id == CaseAttempt.placement_id)
        .join(ContentVersion, ContentVersion.id == CaseAttempt.content_version_id)
        .where(CaseAttempt.case_slug == slug)
    )
    if tenant is not None:
        query = query.where(Placement.platform_id == tenant)
    rows = db.session.execute(query).all()
    steps: dict[int, list[StepRecord]] = {}
    ids = [attempt.id for attempt, _ in rows]
    if ids:
        query = select(CaseStep).where(CaseStep.attempt_id.in_(ids)).order_by(CaseStep.position)
        for step in db.session.scalars(query):
            steps.setdefault(step.attempt_id, []).append(
                StepRecord(
                    position=step.position, node_id=step.node_id, choice_id=step.choice_id, withdrawn=step.withdrawn
                )
            )
    return [
        AttemptRecord(
            attempt_id=attempt.id, learner_key=str(attempt.user_id), case_version=number,
            steps=tuple(steps.get(attempt.id, ())), ending_node=attempt.ending_node, percent=attempt.percent,
            passed=attempt.passed, status=attempt.status,
        )
        for attempt, number in rows
    ]


def _live_case(slug: str):  # type: ignore[no-untyped-def]
    version = effective_version(db.session, current_platform_id(), "case", slug)
    if version is None:
        abort_with(404, f"There is no case with id {slug!r}.")
    return case_of(version)


@bp.route("/trainer/cases/<slug>/analytics")
@allow(*AUTHORS)
def analytics(slug: str) -> str:
    """Per node: how many reached it, which choice each picked, where learners fail."""
    case = _live_case(slug)
    result = analyse(case, _attempt_records(slug))
    charts = {node.node_id: bar_chart_svg(node) for node in result.nodes if node.reached}
    return render_template("cases/analytics.html", case=case, result=result, charts=charts, slug=slug)


@bp.route("/trainer/cases/<slug>/analytics.csv")
@allow(*AUTHORS)
def analytics_csv(slug: str) -> Response:
    case = _live_case(slug)
    buffer = io.StringIO()
    write_csv(analytics_csv_rows(case, analyse(case, _attempt_records(slug))), buffer)
    return Response(
        "\ufeff" + buffer.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{slug}-choices.csv"'},
    )
