"""Completion pages: the trainer's rule settings, the learner's record and certificate,
attesting, and the public verification page a certificate links to."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, Response, current_app, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response as WerkzeugResponse
from wtforms import BooleanField, SelectMultipleField, StringField, SubmitField, TextAreaField
from wtforms.validators import Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from course import completion, statuses
from course.access import allow, current_roles, placement_or_404, public
from course.database import db, utcnow
from course.errors import abort_with
from course.models import CompletionRecord, Context, Placement, User

bp = Blueprint("completion", __name__)
EVERYONE = ("learner", "trainer", "hr", "admin")

STATUS_WORDS = {
    statuses.NOT_STARTED: ("Not started", "You haven't opened a lesson or started a case here yet."),
    statuses.IN_PROGRESS: ("In progress", "You've started; finish what the course asks below to complete it."),
    statuses.COMPLETED: ("Completed", "You met the completion rule: every lesson it asks for is done."),
    statuses.PASSED: ("Passed", "You met the completion rule, including passing the cases it counts."),
    statuses.FAILED: ("Failed", "A case this course counts has no attempts left and wasn't passed. "
                                "Ask your trainer what to do next."),
    statuses.OVERDUE: ("Overdue", "The due date has passed and the course isn't complete yet. "
                                  "You can still finish it."),
    statuses.EXPIRED: ("Expired", "Your completion has passed its recertification date. Read the lessons again and "
                                  "pass the cases again to renew it."),
}


def when(value: datetime | None) -> str:
    """A time as people read it, in UTC with its offset: "31 January 2027, 16:00 UTC (+00:00)"."""
    if value is None:
        return ""
    return value.strftime("%d %B %Y, %H:%M UTC (%z)").lstrip("0").replace("(+0000)", "(+00:00)")


def verify_url(record: CompletionRecord) -> str:
    """The public address that proves a record, on the base URL the LMS and browsers use."""
    return current_app.config["BASE_URL"].rstrip("/") + url_for("completion.verify", public_id=record.public_id)


# -- learner side -------------------------------------------------------------------------


class CompleteForm(FlaskForm):
    """Record a completion; `attest` is required when the placement asks for an attestation."""

    attest = BooleanField("I have read and understood")


def home_panel(placement: Placement, user: User) -> dict[str, Any]:
    """What the course home shows about completion: status in words, due date, record, forms."""
    now = utcnow()
    found = completion.standing(db.session, user=user, placement=placement, now=now)
    label, meaning = STATUS_WORDS[found.status]
    return {
        "standing": found, "label": label, "meaning": meaning, "form": CompleteForm(), "when": when,
        "can_configure": "trainer" in current_roles(),
        "due_passed": found.rule.due_at is not None and found.rule.due_at <= now,
    }


def _own_user() -> User:
    if not isinstance(current_user, User):
        abort_with(404, "Completion records belong to learners; open the course from your LMS.")
    return current_user


@bp.route("/p/<int:placement_id>/completion", methods=["POST"])
@allow(*EVERYONE)
def complete(placement_id: int) -> WerkzeugResponse:
    """Record the learner's completion now (with their attestation, where the placement asks)."""
    placement = placement_or_404(placement_id)
    user = _own_user()
    form = CompleteForm()
    now = utcnow()
    found = completion.standing(db.session, user=user, placement=placement, now=now)
    if found.current is None and found.requirements_met and found.rule.attestation and not form.attest.data:
        abort_with(400, "Tick \u201cI have read and understood\u201d to confirm the statement; nothing was "
                        "recorded. Go back to the course home to try again.")
    result = completion.evaluate(db.session, user=user, placement=placement, now=now, attested=bool(form.attest.data))
    db.session.commit()
    if result.record is None:
        missing = [lesson.title for lesson in result.standing.lessons if not lesson.done] + [
            case.title for case in result.standing.cases if not case.passed]
        abort_with(409, "You haven't finished the course yet, so there is nothing to record. Still to do: "
                        + "; ".join(missing) + ".")
    return redirect(url_for("completion.record_page", placement_id=placement.id), code=303)


def _record_or_404(placement: Placement, user: User) -> tuple[CompletionRecord, list[CompletionRecord]]:
    records = completion.records_of(db.session, user_id=user.id, placement_id=placement.id)
    wanted = request.args.get("sequence", "")
    if wanted and not wanted.isdigit():
        abort_with(404, f"There is no record number {wanted!r}; record numbers are whole numbers.")
    if wanted:
        chosen = next((r for r in records if str(r.sequence) == wanted), None)
    else:
        chosen = records[-1] if records else None
    if chosen is None:
        abort_with(404, "You have no completion record in this course yet. Finish the course to earn one."
                   if not records else f"You have no record number {wanted} in this course.")
    return chosen, records


@bp.route("/p/<int:placement_id>/record")
@allow(*EVERYONE)
def record_page(placement_id: int) -> str:
    """The learner's record as a printable certificate of completion."""
    placement = placement_or_404(placement_id)
    record, records = _record_or_404(placement, _own_user())
    return render_template(
        "completion/record.html", placement=placement, record=record, records=records, when=when,
        verify_url=verify_url(record), expired=record.valid_until is not None and record.valid_until <= utcnow(),
        label=STATUS_WORDS[record.status][0],
    )


@bp.route("/p/<int:placement_id>/record.json")
@allow(*EVERYONE)
def record_json(placement_id: int) -> Response:
    """The learner's record as a JSON download."""
    placement = placement_or_404(placement_id)
    record, _ = _record_or_404(placement, _own_user())
    body = json.dumps(completion.record_as_dict(record, verify_url=verify_url(record)), indent=2, ensure_ascii=False)
    filename = f"rebound-record-{placement.id}-{record.sequence}.json"
    return Response(body + "\n", mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@bp.route("/verify/<public_id>")
@public
def verify(public_id: str) -> str:
    """Anyone holding a certificate's link sees that the record exists and what it says."""
    record = completion.record_by_public_id(db.session, public_id)
    if record is None:
        abort_with(404, "No completion record has this verification code. Check that the whole link was copied; "
                        "a record Rebound issued is never withdrawn from this page.")
    placement = db.session.get(Placement, record.placement_id) if record.placement_id else None
    return render_template(
        "completion/verify.html", record=record, placement=placement, when=when,
        expired=record.valid_until is not None and record.valid_until <= utcnow(),
        label=STATUS_WORDS[record.status][0],
    )


# -- trainer side -------------------------------------------------------------------------

PASS_MARK_PREFIX = "pass_mark__"  # noqa: S105 (a form field prefix, not a password)


class SettingsForm(FlaskForm):
    """A placement's completion rule; per-case pass-mark fields are added for its cases."""

    counted_cases = SelectMultipleField("Cases that count", validate_choice=False,
                                        widget=ListWidget(prefix_label=False), option_widget=CheckboxInput())
    pass_mark = StringField("Pass mark for every counted case, in percent", validators=[Optional(), Length(max=10)],
                            description="0 to 100. Leave empty to keep each case's own pass mark.")
    due_at = StringField("Due date", validators=[Optional(), Length(max=40)],
                         description="ISO 8601 with an offset, e.g. 2027-03-31T17:00+01:00. Without an offset the "
                                     "time is UTC; a date alone (2027-03-31) means the end of that day, UTC.")
    recertify_after_days = StringField("Recertify after (days)", validators=[Optional(), Length(max=10)],
                                       description="1 to 3650. After this many days a record expires and the "
                                                   "learner retakes the course. Leave empty for no expiry.")
    attestation = TextAreaField("Attestation statement",
                                validators=[Optional(), Length(max=completion.MAX_ATTESTATION_CHARS)],
                                description="When set, learners confirm it (\u201cI have read and understood\u201d) "
                                            "to complete. Leave empty for none.")
    save = SubmitField("Save settings")


def _settings_form(cases: list[tuple[str, str, int]]) -> SettingsForm:
    class Form(SettingsForm):
        pass

    for slug, title, mark in cases:
        setattr(Form, PASS_MARK_PREFIX + slug, StringField(f"Pass mark for \u201c{title}\u201d, in percent",
                                                           validators=[Optional(), Length(max=10)],
                                                           description=f"Its own pass mark is {mark}%."))
    form = Form()
    form.counted_cases.choices = [(slug, title) for slug, title, _ in cases]
    return form


def _whole(field: Any, lo: int, hi: int, what: str) -> int | None:
    text = (field.data or "").strip()
    if not text:
        return None
    if not text.isdigit() or not lo <= int(text) <= hi:
        field.errors = [*field.errors, f"{what} must be a whole number from {lo} to {hi}; {text!r} isn't."]
        return None
    return int(text)


def _rule_from_form(form: SettingsForm, case_ids: list[str]) -> tuple[completion.Rule | None, list[str]]:
    """Read and validate the form; errors go beside their fields, the rest are returned."""
    chosen = list(form.counted_cases.data or [])
    settings: dict[str, Any] = {"counted_cases": None if set(chosen) == set(case_ids) else chosen}
    settings["pass_mark"] = _whole(form.pass_mark, 0, 100, "The pass mark")
    marks = {}
    for slug in case_ids:
        value = _whole(form[PASS_MARK_PREFIX + slug], 0, 100, "The pass mark")
        if value is not None:
            marks[slug] = value
    settings["pass_marks"] = marks
    settings["due_at"] = (form.due_at.data or "").strip() or None
    settings["recertify_after_days"] = _whole(form.recertify_after_days, 1, completion.MAX_RECERTIFY_DAYS,
                                              "The recertification period")
    settings["attestation"] = (form.attestation.data or "").strip() or None
    fields_failed = any(field.errors for field in form)
    try:
        rule = completion.rule_from_settings(settings, case_ids=case_ids)
    except completion.RuleError as error:
        general = []
        for key, message in error.problems.items():
            field = form._fields.get(key)
            if field is not None:
                field.errors = [*field.errors, message[0].upper() + message[1:] + "."]
            else:
                general.append(message)
        return None, general
    return (None, []) if fields_failed else (rule, [])


def _form_from_rule(form: SettingsForm, rule: completion.Rule, case_ids: list[str]) -> None:
    form.counted_cases.data = list(rule.counted_cases) if rule.counted_cases is not None else list(case_ids)
    form.pass_mark.data = "" if rule.pass_mark is None else str(rule.pass_mark)
    for slug in case_ids:
        form[PASS_MARK_PREFIX + slug].data = str(rule.pass_marks[slug]) if slug in rule.pass_marks else ""
    form.due_at.data = rule.due_at.isoformat() if rule.due_at else ""
    form.recertify_after_days.data = "" if rule.recertify_after_days is None else str(rule.recertify_after_days)
    form.attestation.data = rule.attestation or ""


@bp.route("/p/<int:placement_id>/settings", methods=["GET", "POST"])
@allow("trainer")
def settings_page(placement_id: int) -> WerkzeugResponse | str | tuple[str, int]:
    """The placement's completion rule, for the trainers who launched it as trainers."""
    placement = placement_or_404(placement_id)
    scope = completion.scope_of(db.session, placement)
    cases = [(case.id, case.title, case.pass_mark) for _, case in scope.cases]
    case_ids = [slug for slug, _, _ in cases]
    form = _settings_form(cases)
    general: list[str] = []
    if request.method == "POST":
        valid = form.validate_on_submit()
        rule, general = _rule_from_form(form, case_ids)
        if valid and rule is not None:
            completion.save_rule(db.session, placement, rule)
            db.session.commit()
            return redirect(url_for("completion.settings_page", placement_id=placement.id, saved=1), code=303)
    else:
        _form_from_rule(form, completion.rule_of(placement), case_ids)
    context = db.session.get(Context, placement.context_id)
    page = render_template(
        "completion/settings.html", placement=placement, context=context, form=form, cases=cases,
        pass_mark_fields=[form[PASS_MARK_PREFIX + slug] for slug in case_ids], lessons=scope.lessons,
        general=general, saved=request.args.get("saved") == "1" and request.method == "GET",
    )
    return (page, 400) if request.method == "POST" else page


def init_app(app: Flask) -> None:
    """Register the completion pages."""
    app.register_blueprint(bp)
