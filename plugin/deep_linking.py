"""Deep Linking 2.0, the tool side: a trainer picks what to place in the LMS course (the
whole course, a module, a lesson or a case, with its completion options) and Rebound
answers the LMS with a signed LtiDeepLinkingResponse.

The rules are plain functions (`catalogue`, `build_pick`, `content_items`,
`response_claims`); the views below them are thin.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, Flask, render_template, request, session, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as WerkzeugResponse
from wtforms import HiddenField, StringField, TextAreaField

from course.access import allow
from course.completion import MAX_RECERTIFY_DAYS, RuleError, rule_from_settings, rule_settings
from course.database import db, utcnow
from course.errors import abort_with
from course.models import Platform
from lessons.kind import shipped_modules
from lessons.outline import lessons_for
from plugin import claims as c
from plugin import web
from plugin.launches import RULE_PARAMETER, TARGET_PARAMETER
from plugin.models import Launch
from plugin.tool_keys import sign_jwt
from quizzes.attempts import published_cases

logger = logging.getLogger("rebound.lti.deep_linking")
bp = Blueprint("deep_linking", __name__)

RESOURCE_LINK_TYPE = "ltiResourceLink"
# A trainer may take a while to choose; the LMS's request stays answerable this long.
DEEP_LINK_TTL = timedelta(hours=1)
LINEITEM_TAG = "rebound"
SCORE_MAXIMUM = 100
MAX_TITLE = 200
# The deep-linking launches this browser session may answer (several LMS tabs at once).
SESSION_DEEP_LINKS = "lti_deep_links"
MAX_DEEP_LINKS_IN_SESSION = 5
WHOLE_COURSE_TITLE = "Rebound: social media mistakes"


class DeepLinkError(Exception):
    """A pick that cannot be answered; `message` says what to change, `status` is for the page."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Placeable:
    """Something a trainer can place: its `rebound_target` value, title, and the cases it covers."""

    target: str
    kind: str
    title: str
    module: str | None
    cases: tuple[str, ...]


@dataclass(frozen=True)
class DeepLinkRequest:
    """What the LMS asked for in its LtiDeepLinkingRequest (kept in the launch record)."""

    return_url: str
    deployment_id: str
    accept_types: tuple[str, ...]
    accept_multiple: bool
    accept_lineitem: bool | None
    accept_presentation_document_targets: tuple[str, ...]
    data: Any
    title: str | None = None

    @classmethod
    def of(cls, launch: Launch) -> DeepLinkRequest:
        """The request a deep-linking launch recorded."""
        settings = (launch.context or {}).get("deep_linking") or {}
        return cls(
            return_url=settings["return_url"],
            deployment_id=settings["deployment_id"],
            accept_types=tuple(settings.get("accept_types") or ()),
            accept_multiple=bool(settings.get("accept_multiple")),
            accept_lineitem=settings.get("accept_lineitem"),
            accept_presentation_document_targets=tuple(settings.get("accept_presentation_document_targets") or ()),
            data=settings.get("data"),
            title=settings.get("title"),
        )

    @property
    def accepts_resource_links(self) -> bool:
        """Whether the LMS takes the only content item type Rebound offers."""
        return RESOURCE_LINK_TYPE in self.accept_types


@dataclass(frozen=True)
class RuleOptions:
    """The completion options a trainer set in the picker (None: the default)."""

    counted_cases: tuple[str, ...] | None = None
    pass_mark: int | None = None
    due_at: str | None = None
    recertify_after_days: int | None = None
    attestation: str | None = None

    def settings_for(self, item: Placeable) -> dict[str, Any]:
        """The placement settings (course.completion's keys) these options give one item.

        Raises RuleError naming each problem, as the completion rule itself judges them.
        """
        raw: dict[str, Any] = {
            "counted_cases": list(self.counted_cases) if self.counted_cases is not None else None,
            "pass_mark": self.pass_mark,
            "due_at": self.due_at,
            "recertify_after_days": self.recertify_after_days,
            "attestation": self.attestation,
        }
        return rule_settings(rule_from_settings(raw, case_ids=item.cases))


@dataclass(frozen=True)
class Pick:
    """A trainer's choice: what to place, under which title, with which completion options."""

    items: tuple[Placeable, ...]
    title: str | None
    options: RuleOptions = RuleOptions()


def catalogue(session: Session, platform_id: int | None) -> list[Placeable]:
    """Everything a tenant's trainers can place, in course order: course, modules, lessons, cases."""
    modules = shipped_modules()
    cases = sorted((case for _version, case in published_cases(session, platform_id)), key=lambda x: x.title)
    items = [Placeable("course", "course", WHOLE_COURSE_TITLE, None, tuple(case.id for case in cases))]
    lessons = lessons_for(session, platform_id)
    for module in modules:
        module_cases = tuple(case.id for case in cases if case.module == module.id)
        items.append(Placeable(f"module:{module.id}", "module", module.title, module.id, module_cases))
        items.extend(
            Placeable(f"lesson:{lesson.slug}", "lesson", lesson.title, module.id, ())
            for lesson in lessons
            if lesson.module == module.id
        )
        items.extend(
            Placeable(f"case:{case.id}", "case", case.title, module.id, (case.id,))
            for case in cases
            if case.module == module.id
        )
    return items


def unsupported_types(request: DeepLinkRequest) -> DeepLinkError:
    """The LMS wants content types Rebound has none of (it offers only resource links)."""
    return DeepLinkError(
        f"The LMS asked for content Rebound does not offer: it accepts {', '.join(request.accept_types)}, and "
        f"Rebound offers {RESOURCE_LINK_TYPE} links. Go back to the LMS (the button below tells it so) and add "
        "Rebound as an external tool activity instead.",
        409,
    )


def build_pick(
    available: Sequence[Placeable],
    request: DeepLinkRequest,
    *,
    targets: Sequence[str],
    title: str | None,
    cases_mode: str,
    counted_cases: Sequence[str],
    pass_mark: str | None,
    due_at: str | None = None,
    recertify_after_days: str | None = None,
    attestation: str | None = None,
) -> Pick:
    """Check a trainer's form answers against what exists and what the LMS accepts."""
    if not request.accepts_resource_links:
        raise unsupported_types(request)
    by_target = {item.target: item for item in available}
    wanted = list(dict.fromkeys(t.strip() for t in targets if t.strip()))
    if not wanted:
        raise DeepLinkError("Choose what to add to the LMS course: the whole course, a module, a lesson or a case.")
    unknown = [t for t in wanted if t not in by_target]
    if unknown:
        raise DeepLinkError(
            f"{', '.join(repr(t) for t in unknown)} is not a published module, lesson or case of this course. "
            "Reload the page and choose from the list."
        )
    if len(wanted) > 1 and not request.accept_multiple:
        raise DeepLinkError("This LMS accepts one item at a time; choose one.")
    items = tuple(by_target[t] for t in wanted)

    clean_title = (title or "").strip() or None
    if clean_title is not None and len(clean_title) > MAX_TITLE:
        raise DeepLinkError(f"The title is {len(clean_title)} characters; keep it to {MAX_TITLE}.")

    chosen_cases: tuple[str, ...] | None = None
    if cases_mode == "only":
        chosen_cases = tuple(dict.fromkeys(counted_cases))
        for item in items:
            outside = [case for case in chosen_cases if case not in item.cases]
            if outside:
                raise DeepLinkError(
                    f"{', '.join(outside)} is not part of “{item.title}”, so it cannot count toward its completion."
                )
    elif cases_mode not in ("", "all"):
        raise DeepLinkError("Choose which cases count: every case the placement includes, or only those you tick.")

    options = RuleOptions(
        counted_cases=chosen_cases,
        pass_mark=_whole(pass_mark, 0, 100, "The pass mark must be a whole percentage from 0 to 100"),
        due_at=(due_at or "").strip() or None,
        recertify_after_days=_whole(
            recertify_after_days, 1, MAX_RECERTIFY_DAYS,
            f"The recertification period must be a whole number of days from 1 to {MAX_RECERTIFY_DAYS}",
        ),
        attestation=(attestation or "").strip() or None,
    )
    for item in items:
        try:
            options.settings_for(item)
        except RuleError as error:
            raise DeepLinkError(
                " ".join(f"{_RULE_FIELDS.get(k, k)}: {m.rstrip('.')}." for k, m in error.problems.items())
            ) from None
    return Pick(items, clean_title, options)


# How the picker's fields are named to the trainer, for course.completion's problems.
_RULE_FIELDS = {
    "counted_cases": "Cases that count",
    "pass_mark": "Pass mark",
    "due_at": "Due date",
    "recertify_after_days": "Recertify after",
    "attestation": "Attestation",
}


def _whole(value: str | None, low: int, high: int, message: str) -> int | None:
    text = (value or "").strip()
    if not text:
        return None
    if not text.isdigit() or not low <= int(text) <= high:
        raise DeepLinkError(f"{message}, not {text!r}.")
    return int(text)


def content_items(pick: Pick, request: DeepLinkRequest, *, launch_url: str) -> list[dict[str, Any]]:
    """The ltiResourceLink items for a pick, each with its target and rule as custom parameters."""
    items = []
    for item in pick.items:
        title = pick.title if pick.title and len(pick.items) == 1 else item.title
        custom = {TARGET_PARAMETER: item.target}
        rule = pick.options.settings_for(item)
        if rule:
            custom[RULE_PARAMETER] = json.dumps(rule, sort_keys=True)
        content: dict[str, Any] = {"type": RESOURCE_LINK_TYPE, "title": title, "url": launch_url, "custom": custom}
        # Without the field no assumption can be made (Deep Linking 2.0 §4.4.6), and a
        # platform that cannot take a line item ignores it; only an explicit "no" leaves it out.
        if request.accept_lineitem is not False:
            content["lineItem"] = {
                "scoreMaximum": SCORE_MAXIMUM,
                "label": title,
                "resourceId": item.target,
                "tag": LINEITEM_TAG,
            }
        targets = request.accept_presentation_document_targets
        if "iframe" in targets:
            content["iframe"] = {"height": 900}
        elif "window" in targets:
            content["window"] = {"targetName": "rebound"}
        items.append(content)
    return items


def response_claims(
    platform: Platform,
    request: DeepLinkRequest,
    items: Sequence[dict[str, Any]],
    *,
    msg: str | None = None,
    errormsg: str | None = None,
) -> dict[str, Any]:
    """The claims of an LtiDeepLinkingResponse (signing adds iat, exp and jti)."""
    claims: dict[str, Any] = {
        "iss": platform.client_id,
        "aud": platform.issuer,
        "nonce": secrets.token_urlsafe(18),
        c.MESSAGE_TYPE: c.DEEP_LINKING_RESPONSE,
        c.VERSION: c.LTI_VERSION,
        c.DEPLOYMENT_ID: request.deployment_id,
        c.DL_CONTENT_ITEMS: list(items),
    }
    # The spec: `data` must come back exactly as sent, and only if it was sent.
    if request.data is not None:
        claims[c.DL_DATA] = request.data
    if msg:
        claims[c.DL_MSG] = msg
    if errormsg:
        claims[c.DL_ERRORMSG] = errormsg
    return claims


def may_place(roles: Sequence[str]) -> bool:
    """Only trainers and admins place Rebound in a course."""
    return bool({"trainer", "admin"} & set(roles))


def deep_linking_target(launch: Launch) -> str:
    """Where a deep-linking launch lands: the picker, or a refusal for a learner."""
    if not may_place(launch.roles):
        return url_for("deep_linking.refused")
    return url_for("deep_linking.picker", launch=launch.id)


class DeepLinkForm(FlaskForm):
    """The picker's form; the choices are checked by `build_pick`, which says what is wrong."""

    launch = HiddenField()
    title = StringField("Title in the LMS (optional)")
    pass_mark = StringField("Pass mark for the cases, in percent (optional)")
    due_at = StringField("Due date (optional)")
    recertify_after_days = StringField("Recertify after, in days (optional)")
    attestation = TextAreaField("Statement learners confirm at the end (optional)")


def _answerable_launch(launch_id: str | None, now: datetime, *, binding: bool) -> Launch:
    """The deep-linking launch this browser session may answer; a 4xx page otherwise.

    A picker opens only for the launch the session was just started by (`binding`), and
    answers only launches it opened: a pick forged in another session names a launch
    that is not in this one.
    """
    # The row stays locked until the answer is recorded, so a double submit answers once.
    found = int(launch_id) if launch_id and launch_id.isdigit() else None
    launch = db.session.get(Launch, found, with_for_update=not binding) if found is not None else None
    mine = launch is not None and current_user.get_id() == f"lti:{launch.user_id}"
    if launch is None or launch.message_type != c.DEEP_LINKING_REQUEST or not mine:
        abort_with(400, "This page belongs to no deep-linking request of yours. Start again from the LMS "
                   "(\"Add an activity\" → Rebound).")
    allowed = list(session.get(SESSION_DEEP_LINKS, []))
    if launch.id not in allowed:
        if not binding or web.session_launch_id() != launch.id:
            abort_with(403, "This deep-linking request was started in another browser session. "
                       "Start again from the LMS.")
        session[SESSION_DEEP_LINKS] = [*allowed, launch.id][-MAX_DEEP_LINKS_IN_SESSION:]
    if launch.created_at + DEEP_LINK_TTL < now:
        abort_with(400, "This deep-linking request is more than an hour old and the LMS no longer expects an "
                   "answer. Start again from the LMS.")
    if (launch.context or {}).get("deep_linking", {}).get("answered_at"):
        abort_with(409, "This request was already answered; the LMS has your choice. To add another activity, "
                   "start again from the LMS.")
    return launch


def _mark_answered(launch: Launch, now: datetime) -> None:
    context = dict(launch.context or {})
    context["deep_linking"] = {**context.get("deep_linking", {}), "answered_at": now.isoformat()}
    launch.context = context  # a new dict, so the JSON column sees the change


def _signed_answer(launch: Launch, items: Sequence[dict[str, Any]], now: datetime, **messages: str | None) -> str:
    platform = db.session.get(Platform, launch.platform_id)
    assert platform is not None  # the launch's foreign key
    claims = response_claims(platform, DeepLinkRequest.of(launch), items, **messages)
    return sign_jwt(claims, web.keyring(now), now)


def _picker_page(launch: Launch, form: DeepLinkForm, error: str | None = None, status: int = 200) -> tuple[str, int]:
    request_ = DeepLinkRequest.of(launch)
    items = catalogue(db.session, launch.platform_id)
    page = render_template(
        "lti/deep_link_picker.html",
        form=form,
        launch=launch,
        dl=request_,
        items=items,
        cases=[item for item in items if item.kind == "case"],
        chosen=set(request.form.getlist("item")) if request.method == "POST" else set(),
        error=error,
    )
    return page, status


@bp.route("/lti/deep-link")
@allow("trainer", "admin")
def picker() -> tuple[str, int]:
    """The trainer chooses what to add to the LMS course."""
    launch = _answerable_launch(request.args.get("launch"), utcnow(), binding=True)
    form = DeepLinkForm(launch=str(launch.id))
    request_ = DeepLinkRequest.of(launch)
    if not request_.accepts_resource_links:
        return _picker_page(launch, form, unsupported_types(request_).message, 409)
    return _picker_page(launch, form)


@bp.route("/lti/deep-link", methods=["POST"])
@allow("trainer", "admin")
def pick() -> WerkzeugResponse | tuple[str, int]:
    """Sign the trainer's choice (or their cancellation) and post it back to the LMS."""
    now = utcnow()
    # The app-wide CSRF protection has already refused a post without its token; the
    # choices are checked by build_pick, which says what is wrong.
    form = DeepLinkForm()
    launch = _answerable_launch(form.launch.data, now, binding=False)
    request_ = DeepLinkRequest.of(launch)
    if "cancel" in request.form:
        if request_.accepts_resource_links:
            token = _signed_answer(launch, [], now, msg="Nothing was added.")
        else:
            token = _signed_answer(launch, [], now, errormsg=unsupported_types(request_).message)
        chosen: Sequence[dict[str, Any]] = []
    else:
        try:
            choice = build_pick(
                catalogue(db.session, launch.platform_id),
                request_,
                targets=request.form.getlist("item"),
                title=form.title.data,
                cases_mode=request.form.get("cases_mode", "all"),
                counted_cases=request.form.getlist("case"),
                pass_mark=form.pass_mark.data,
                due_at=form.due_at.data,
                recertify_after_days=form.recertify_after_days.data,
                attestation=form.attestation.data,
            )
        except DeepLinkError as error:
            logger.info("deep-linking pick refused", extra={"launch_id": launch.id, "reason": error.message})
            return _picker_page(launch, form, error.message, error.status)
        chosen = content_items(choice, request_, launch_url=web.base_url() + "/lti/launch")
        token = _signed_answer(launch, chosen, now)
    _mark_answered(launch, now)
    db.session.commit()
    logger.info("deep-linking response sent", extra={"launch_id": launch.id, "items": len(chosen)})
    return render_template("lti/deep_link_return.html", return_url=request_.return_url, jwt=token, items=chosen), 200


@bp.route("/lti/deep-link/refused")
@allow("learner", "trainer", "hr", "admin")
def refused() -> tuple[str, int]:
    """A learner (or HR) arrived with a deep-linking request: only trainers place activities."""
    return render_template("lti/deep_link_refused.html"), 403


def init_app(app: Flask) -> None:
    """Register the picker and make deep-linking launches land on it."""
    app.register_blueprint(bp)
    web.launch_targets(app)["deep_linking"] = deep_linking_target
