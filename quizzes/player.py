"""The learner's case player: one step at a time, resumable, back- and double-submit safe,
ending in a debrief that shows the path taken and a better one."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, session, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response as WerkzeugResponse

from course.access import allow, placement_or_404
from course.completion import evaluate
from course.content import PublishedVersion
from course.database import db, utcnow
from course.errors import abort_with
from course.models import CaseAttempt, ContentVersion, Placement
from lessons.render import render_inline, render_markdown
from quizzes import engine
from quizzes.attempts import (
    AttemptError,
    abandon,
    answer,
    attempts_of,
    case_of,
    counted,
    go_back,
    lock_learners_attempt,
    published_case,
    start_attempt,
    state_of,
)
from quizzes.case_format import Case

bp = Blueprint("cases", __name__, template_folder="templates", static_folder="static", static_url_path="/cases/static")
EVERYONE = ("learner", "trainer", "hr", "admin")
CONSEQUENCE_KEY = "case_consequence"


class StepForm(FlaskForm):
    """Only the CSRF token; the node, step number and choice travel as plain fields."""


def in_scope(placement: Placement, case: Case) -> bool:
    """Whether a placement covers a case: the whole course, its module, or that case."""
    kind, ref = placement.target_kind, placement.target_ref
    if kind == "course":
        return True
    if kind == "module":
        return case.module == ref
    return kind == "case" and case.id == ref


def _case_or_404(placement: Placement, slug: str) -> tuple[PublishedVersion, Case]:
    found = published_case(db.session, placement.platform_id, slug)
    if found is None or not in_scope(placement, found[1]):
        abort_with(404, "That case isn't part of this course, or it isn't published.")
    return found


def _attempt_or_404(placement: Placement, slug: str, attempt_id: int) -> CaseAttempt:
    attempt = db.session.get(CaseAttempt, attempt_id)
    # Someone else's attempt, or one of another case, is simply not found.
    if attempt is None or attempt.user_id != current_user.id or attempt.placement_id != placement.id \
            or attempt.case_slug != slug:
        abort_with(404, "That attempt doesn't exist.")
    return attempt


def _locked_attempt_or_404(placement: Placement, slug: str, attempt_id: int) -> CaseAttempt:
    """The learner's attempt, locked before anything is read of it: changes to one attempt run
    one at a time, each on the attempt as the one before left it."""
    attempt = lock_learners_attempt(
        db.session, attempt_id, user_id=current_user.id, placement_id=placement.id, slug=slug
    )
    if attempt is None:
        abort_with(404, "That attempt doesn't exist.")
    return attempt


def _refuse(
    error: AttemptError, placement: Placement, slug: str, attempt: CaseAttempt | None = None
) -> tuple[str, int]:
    page = render_template("cases/refused.html", message=error.message, placement=placement, slug=slug, attempt=attempt)
    return page, error.status


def _version_or_withdrawn(
    placement: Placement, slug: str, attempt: CaseAttempt
) -> tuple[str, int] | PublishedVersion:
    """The version the attempt plays; if the case left this placement mid-attempt, end the
    attempt (kept, as abandoned) and return the page that says so."""
    found = published_case(db.session, placement.platform_id, slug)
    if attempt.status == "ended" or (found is not None and in_scope(placement, found[1])):
        # Usually the attempt plays the published version: then it is already loaded.
        if found is not None and found[0].id == attempt.content_version_id:
            return found[0]
        older = db.session.get(ContentVersion, attempt.content_version_id)
        assert older is not None
        return PublishedVersion.of(older)
    abandon(db.session, attempt, utcnow())
    db.session.commit()
    version = db.session.get(ContentVersion, attempt.content_version_id)
    assert version is not None
    answered = len(state_of(db.session, attempt, case_of(version)).path)
    page = render_template(
        "cases/withdrawn.html", placement=placement, title=case_of(version).title, attempt=attempt, answered=answered
    )
    return page, 410


@bp.route("/p/<int:placement_id>/cases/<slug>")
@allow(*EVERYONE)
def case_intro(placement_id: int, slug: str) -> str:
    placement = placement_or_404(placement_id)
    version, case = _case_or_404(placement, slug)
    attempts = attempts_of(db.session, user_id=current_user.id, placement_id=placement.id, slug=slug)
    active = next((a for a in attempts if a.status == "active"), None)
    finished = [a for a in attempts if a.status == "ended"]
    may_start = engine.may_start_attempt(case, len(attempts), unfinished=active is not None)
    return render_template(
        "cases/intro.html", placement=placement, case=case, version=version, attempts=attempts, active=active,
        finished=finished, counted=counted(case, attempts), may_start=may_start, form=StepForm(),
        summary_html=render_markdown(case.summary),
    )


@bp.route("/p/<int:placement_id>/cases/<slug>/start", methods=["POST"])
@allow(*EVERYONE)
def start(placement_id: int, slug: str) -> WerkzeugResponse | tuple[str, int]:
    placement = placement_or_404(placement_id)
    version, case = _case_or_404(placement, slug)
    try:
        attempt = start_attempt(
            db.session, user_id=current_user.id, placement_id=placement.id, slug=slug, version=version, case=case,
            restart=request.form.get("restart") == "1", now=utcnow(),
        )
    except AttemptError as error:
        db.session.rollback()
        return _refuse(error, placement, slug)
    db.session.commit()
    return redirect(url_for("cases.play", placement_id=placement.id, slug=slug, attempt_id=attempt.id), code=303)


@bp.route("/p/<int:placement_id>/cases/<slug>/attempts/<int:attempt_id>")
@allow(*EVERYONE)
def play(placement_id: int, slug: str, attempt_id: int) -> WerkzeugResponse | str | tuple[str, int]:
    placement = placement_or_404(placement_id)
    attempt = _attempt_or_404(placement, slug, attempt_id)
    if attempt.status == "ended":
        return redirect(url_for("cases.debrief", placement_id=placement.id, slug=slug, attempt_id=attempt.id))
    version = _version_or_withdrawn(placement, slug, attempt)
    if not isinstance(version, PublishedVersion):
        return version
    case = case_of(version)
    state = state_of(db.session, attempt, case)
    node = case.node(state.current_node)
    taken, remaining = engine.progress(case, state)
    consequence = session.pop(CONSEQUENCE_KEY, None)
    shown_consequence = None
    if consequence and consequence.get("attempt") == attempt.id and state.path:
        last = state.path[-1]
        choice = case.node(last.node_id).choice(last.choice_id)
        if choice is not None and consequence.get("position") == len(state.path):
            shown_consequence = {"choice": render_inline(choice.text), "html": render_markdown(choice.consequence)}
    return render_template(
        "cases/step.html", placement=placement, case=case, attempt=attempt, node=node, state=state,
        text_html=render_markdown(node.text), choices=[(c, render_inline(c.text)) for c in node.choices],
        taken=taken, remaining=remaining, consequence=shown_consequence, form=StepForm(),
        abandoned=attempt.status == "abandoned",
    )


@bp.route("/p/<int:placement_id>/cases/<slug>/attempts/<int:attempt_id>/answer", methods=["POST"])
@allow(*EVERYONE)
def submit(placement_id: int, slug: str, attempt_id: int) -> WerkzeugResponse | tuple[str, int]:
    placement = placement_or_404(placement_id)
    attempt = _locked_attempt_or_404(placement, slug, attempt_id)
    version = _version_or_withdrawn(placement, slug, attempt)
    if not isinstance(version, PublishedVersion):
        return version
    case = case_of(version)
    step_field = request.form.get("step", "")
    try:
        result = answer(
            db.session, attempt, case, node_id=request.form.get("node", ""), choice_id=request.form.get("choice", ""),
            step=int(step_field) if step_field.isdigit() else None, now=utcnow(),
        )
    except AttemptError as error:
        db.session.rollback()
        return _refuse(error, placement, slug, attempt)
    db.session.commit()
    if result.recorded and result.state.ended:
        evaluate(db.session, user=current_user, placement=placement, now=utcnow())
        db.session.commit()
    if result.recorded:
        session[CONSEQUENCE_KEY] = {"attempt": attempt.id, "position": len(result.state.path)}
    target = "cases.debrief" if result.state.ended else "cases.play"
    return redirect(url_for(target, placement_id=placement.id, slug=slug, attempt_id=attempt.id), code=303)


@bp.route("/p/<int:placement_id>/cases/<slug>/attempts/<int:attempt_id>/back", methods=["POST"])
@allow(*EVERYONE)
def back(placement_id: int, slug: str, attempt_id: int) -> WerkzeugResponse | tuple[str, int]:
    placement = placement_or_404(placement_id)
    attempt = _locked_attempt_or_404(placement, slug, attempt_id)
    version = _version_or_withdrawn(placement, slug, attempt)
    if not isinstance(version, PublishedVersion):
        return version
    try:
        go_back(db.session, attempt, case_of(version), utcnow())
    except AttemptError as error:
        db.session.rollback()
        return _refuse(error, placement, slug, attempt)
    db.session.commit()
    return redirect(url_for("cases.play", placement_id=placement.id, slug=slug, attempt_id=attempt.id), code=303)


@bp.route("/p/<int:placement_id>/cases/<slug>/attempts/<int:attempt_id>/debrief")
@allow(*EVERYONE)
def debrief(placement_id: int, slug: str, attempt_id: int) -> WerkzeugResponse | str:
    placement = placement_or_404(placement_id)
    attempt = _attempt_or_404(placement, slug, attempt_id)
    version = db.session.get(ContentVersion, attempt.content_version_id)
    assert version is not None
    case = case_of(version)
    if attempt.status != "ended":
        return redirect(url_for("cases.play", placement_id=placement.id, slug=slug, attempt_id=attempt.id))
    state = state_of(db.session, attempt, case)
    ending = case.node(state.ending_node or "")
    best = engine.best_path(case)
    attempts = attempts_of(db.session, user_id=current_user.id, placement_id=placement.id, slug=slug)
    consequence = session.pop(CONSEQUENCE_KEY, None)
    last_consequence = None
    if consequence and consequence.get("attempt") == attempt.id and state.path:
        last = state.path[-1]
        choice = case.node(last.node_id).choice(last.choice_id)
        last_consequence = render_markdown(choice.consequence) if choice else None
    return render_template(
        "cases/debrief.html", placement=placement, case=case, attempt=attempt, state=state, ending=ending,
        ending_html=render_markdown(ending.ending.debrief) if ending.ending else "",
        path=[(case.node(s.node_id), case.node(s.node_id).choice(s.choice_id), s) for s in state.path],
        best=best, best_path=[(case.node(s.node_id), case.node(s.node_id).choice(s.choice_id)) for s in best.steps]
        if best else [], best_ending=case.node(best.ending_node) if best else None,
        took_best=best is not None and tuple((s.node_id, s.choice_id) for s in best.steps)
        == tuple((s.node_id, s.choice_id) for s in state.path),
        may_retry=engine.may_start_attempt(case, len(attempts), unfinished=False),
        counted=counted(case, attempts), last_consequence=last_consequence, form=StepForm(),
        render_inline=render_inline, render_markdown=render_markdown,
    )
