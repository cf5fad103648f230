"""LTI endpoints: /lti/login, /lti/launch, /lti/jwks, /lti/register, /lti/config.json,
and the pages that finish a launch when the browser keeps no cookies in the LMS frame."""

from __future__ import annotations

import hmac
import logging
from datetime import datetime

from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
)
from flask_login import current_user
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.wrappers import Response as WerkzeugResponse

from course.access import allow, current_platform_id, public
from course.database import db, utcnow
from course.models import Placement, User
from plugin import web
from plugin.dynamic_registration import (
    DynamicRegistrationError,
    register_with_platform,
    requests_get,
    requests_post,
)
from plugin.errors import LaunchError
from plugin.launches import (
    AcceptedLaunch,
    LoginRequest,
    accept_launch,
    begin_login,
    find_launch,
    record_failure,
    state_cookie_name,
)
from plugin.models import Launch
from plugin.registrations import all_platforms
from plugin.tool_config import canvas_configuration, endpoints

bp = Blueprint(
    "lti", __name__, template_folder="templates", static_folder="static", static_url_path="/lti/static"
)
logger = logging.getLogger("rebound.lti")

COOKIE_CHECK = "rebound_cookies"
JWKS_MAX_AGE_SECONDS = 300


def _cookie_options() -> dict[str, object]:
    secure = bool(current_app.config["SESSION_COOKIE_SECURE"])
    return {
        "secure": secure,
        "httponly": True,
        "samesite": "None" if secure else "Lax",
        "partitioned": secure,
    }


def launch_error_page(error: LaunchError, platform_id: int | None = None) -> tuple[str, int]:
    """A page that names the cause, what the LMS administrator should check, and a debug id."""
    logger.warning(
        "launch refused: %s",
        error.code,
        extra={"code": error.code, "platform_id": platform_id, "hint": error.hint, **dict(error.details)},
    )
    page = render_template("lti/launch_error.html", error=error, debug_id=g.get("request_id", "-"))
    return page, error.status


@bp.route("/lti/login", methods=["GET", "POST"])
@public
def login() -> WerkzeugResponse | tuple[str, int]:
    params = request.values.to_dict()
    now = utcnow()
    try:
        start = begin_login(
            db.session,
            LoginRequest.from_params(params),
            redirect_uri=endpoints(web.base_url())["launch"],
            tool_hosts=web.tool_hosts(),
            now=now,
        )
    except LaunchError as error:
        db.session.rollback()
        return launch_error_page(error)
    db.session.commit()
    if start.storage_target:
        # Remember the state in the LMS's storage frame too, for browsers that drop our cookies.
        response = make_response(
            render_template("lti/login_storage.html", start=start, auth_url=start.auth_url)
        )
    else:
        response = redirect(start.auth_url, code=302)
    options = _cookie_options()
    response.set_cookie(state_cookie_name(start.state), start.state, max_age=600, **options)  # type: ignore[arg-type]
    response.set_cookie(COOKIE_CHECK, "1", max_age=365 * 24 * 3600, **options)  # type: ignore[arg-type]
    return response


@bp.route("/lti/launch", methods=["POST"])
@public
def launch() -> WerkzeugResponse | tuple[str, int]:
    state = request.form.get("state", "")
    now = utcnow()
    platform_id = None
    try:
        accepted = accept_launch(
            db.session,
            id_token=request.form.get("id_token", ""),
            state=state,
            browser_state=request.cookies.get(state_cookie_name(state)) if state else None,
            cookies_work=COOKIE_CHECK in request.cookies,
            key_source_for=web.key_source_for,
            tool_hosts=web.tool_hosts(),
            now=now,
        )
    except LaunchError as error:
        # Keep what must survive a refusal (a used nonce, the error for the health page),
        # but nothing about the person: no user, no session.
        from plugin.models import LoginState

        login_state = db.session.get(LoginState, state) if state else None
        platform_id = login_state.platform_id if login_state else None
        record_failure(db.session, platform_id, error, now)
        db.session.commit()
        return launch_error_page(error, platform_id)
    db.session.commit()
    _use_lti_services(accepted, now)
    logger.info(
        "launch accepted",
        extra={
            "platform_id": accepted.platform.id,
            "user_id": accepted.user.id,
            "placement_id": accepted.placement.id if accepted.placement else None,
            "message_type": accepted.message.message_type,
            "clock_skew_s": round(accepted.message.clock_skew_seconds, 1),
            "browser_bound": accepted.launch.browser_bound,
        },
    )
    response: WerkzeugResponse
    if accepted.launch.browser_bound:
        web.start_session(accepted.launch, accepted.user)
        # POST-redirect-GET: a refresh must never re-post the id_token.
        response = redirect(_landing_url(accepted.token), code=303)
    else:
        login_state_target = _storage_target(state)
        page = "lti/verify_storage.html" if login_state_target else "lti/new_window.html"
        response = make_response(
            render_template(
                page,
                token=accepted.token,
                state=state,
                storage_target=login_state_target,
                user=accepted.user,
                placement=accepted.placement,
            )
        )
    response.delete_cookie(state_cookie_name(state), **{k: v for k, v in _cookie_options().items() if k != "httponly"})  # type: ignore[arg-type]
    return response


def _use_lti_services(accepted: AcceptedLaunch, now: datetime) -> None:
    """After a launch: a line item where the LMS lets Rebound make one, and, for trainers
    and HR, a roster refresh at most once per interval. The LMS failing never fails the launch."""
    from plugin import ags, nrps
    from plugin.service_tokens import ServiceError, client_for

    placement, ags_claim = accepted.placement, accepted.message.ags
    if placement is None:
        return
    wants_lineitem = ags_claim is not None and ags.may_create_lineitem(placement, ags_claim.scopes)
    wants_roster = bool(accepted.roles & {"trainer", "hr"}) and nrps.is_stale(
        placement.context, now, nrps.roster_sync_interval()
    )
    if not (wants_lineitem or wants_roster):
        return
    try:
        web.keyring(now)
        db.session.commit()  # the LMS must be able to see the key that signs for its services
        if wants_lineitem and ags_claim is not None:
            ags.ensure_lineitem(db.session, placement, ags_claim.scopes, now, client_for(current_app))
            db.session.commit()
        if wants_roster:
            nrps.sync_if_stale(db.session, placement.context, now)
            db.session.commit()
    except (ServiceError, SQLAlchemyError) as error:
        db.session.rollback()
        logger.warning(
            "LTI services after launch failed", extra={"error": str(error), "platform_id": accepted.platform.id}
        )


def _storage_target(state: str) -> str | None:
    from plugin.models import LoginState

    login_state = db.session.get(LoginState, state)
    return login_state.storage_target if login_state else None


def _landing_url(token: str) -> str:
    return f"/lti/landing?launch={token}"


@bp.route("/lti/launch/verify", methods=["POST"])
@public
def verify_storage() -> WerkzeugResponse | tuple[str, int]:
    """The LMS's storage frame returned the state it kept at login: bind the launch."""
    now = utcnow()
    try:
        launch = find_launch(db.session, request.form.get("launch", ""), now)
        if launch.completed_at is not None or launch.browser_bound:
            raise _already_used()
        remembered = request.form.get("state", "")
        if not remembered or not hmac.compare_digest(remembered, launch.state):
            raise LaunchError(
                "state-mismatch",
                "This launch could not be confirmed in this browser. Please start the activity "
                "again from the LMS.",
                "The state kept in the LMS's storage frame does not match the launch.",
                details={"platform_id": launch.platform_id},
            )
    except LaunchError as error:
        db.session.rollback()
        return launch_error_page(error)
    launch.browser_bound = True
    user = db.session.get(User, launch.user_id)
    assert user is not None
    db.session.commit()
    web.start_session(launch, user)
    return redirect(_landing_url(request.form["launch"]), code=303)


def _already_used() -> LaunchError:
    return LaunchError(
        "launch-link-used",
        "This launch link was already used. Please start the activity again from the LMS.",
        "Launch links work once.",
    )


@bp.route("/lti/landing")
@public
def landing() -> WerkzeugResponse | tuple[str, int]:
    """Where a launch lands; if the session cookie didn't stick, offer a new window."""
    token = request.args.get("launch", "")
    try:
        launch = find_launch(db.session, token, utcnow())
    except LaunchError as error:
        return launch_error_page(error)
    if web.session_launch_id() == launch.id and current_user.is_authenticated:
        return redirect(_target_url(launch), code=303)
    user = db.session.get(User, launch.user_id)
    placement = db.session.get(Placement, launch.placement_id) if launch.placement_id else None
    return render_template("lti/new_window.html", token=token, user=user, placement=placement), 200


@bp.route("/lti/continue")
@public
def continue_in_new_window() -> WerkzeugResponse | tuple[str, int]:
    """The new-window fallback: the same launch, finished where cookies are first-party."""
    token = request.args.get("launch", "")
    now = utcnow()
    try:
        launch = find_launch(db.session, token, now)
        if launch.completed_at is not None:
            raise _already_used()
    except LaunchError as error:
        return launch_error_page(error)
    launch.completed_at = now
    user = db.session.get(User, launch.user_id)
    assert user is not None
    db.session.commit()
    web.start_session(launch, user)
    return redirect(_target_url(launch), code=303)


def _target_url(launch: Launch) -> str:
    targets = web.launch_targets(current_app)
    if launch.message_type == "LtiDeepLinkingRequest":
        kind = "deep_linking"
    else:
        placement = db.session.get(Placement, launch.placement_id) if launch.placement_id else None
        kind = placement.target_kind if placement else "course"
    handler = targets.get(kind) or targets.get("course")
    if handler is None:
        return "/lti/launched"
    return handler(launch)


@bp.route("/lti/launched")
@allow("learner", "trainer", "hr", "admin")
def launched() -> str:
    """Who is signed in and where; the landing when no course page is registered."""
    return render_template("lti/launched.html", user=current_user)


@bp.route("/lti/jwks")
@public
def jwks() -> Response:
    keys = web.keyring(utcnow()).public_jwks(utcnow())
    db.session.commit()
    response = jsonify(keys)
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE_SECONDS}"
    return response


@bp.route("/lti/config.json")
@public
def config_json() -> Response:
    return jsonify(canvas_configuration(web.base_url()))


REGISTRATION_CSP = (
    # The LMS frames this page before it is registered, so no list of platforms can name it yet.
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'self'; frame-ancestors *"
)


@bp.after_request
def registration_may_be_framed(response: Response) -> Response:
    if request.endpoint == "lti.register":
        response.headers["Content-Security-Policy"] = REGISTRATION_CSP
    return response


@bp.route("/lti/register")
@public
def register() -> tuple[str, int]:
    """LTI Dynamic Registration: the LMS administrator pastes this URL into the LMS."""
    openid_configuration = request.args.get("openid_configuration", "")
    if not openid_configuration:
        return render_template(
            "lti/register.html", error="This address is for LMS administrators: paste it into the "
            "LMS's tool registration page. The LMS adds the openid_configuration parameter itself.",
            urls=endpoints(web.base_url()),
        ), 400
    http = current_app.extensions["rebound.http_session"]
    get = current_app.extensions.get("rebound.http_get") or requests_get(http)
    post = current_app.extensions.get("rebound.http_post") or requests_post(http)
    try:
        platform = register_with_platform(
            db.session,
            openid_configuration=openid_configuration,
            registration_token=request.args.get("registration_token") or None,
            base_url=web.base_url(),
            get=get,
            post=post,
            allow_http=not web.settings().is_production,
        )
    except DynamicRegistrationError as error:
        db.session.rollback()
        logger.warning("dynamic registration failed", extra={"reason": error.reason, "url": openid_configuration})
        return render_template(
            "lti/register.html", error=error.reason, debug_id=g.get("request_id", "-"), urls=endpoints(web.base_url())
        ), error.status
    db.session.commit()
    return render_template("lti/register.html", platform=platform, urls=endpoints(web.base_url())), 200


@bp.route("/admin/platforms")
@allow("admin")
def platforms_health() -> str:
    """Each registration's last launch, last error, clock skew and key fetch status."""
    platforms = all_platforms(db.session)
    tenant = current_platform_id()
    if tenant is not None:
        # An LMS administrator sees their own registration; only Rebound's admins see all.
        platforms = [p for p in platforms if p.id == tenant]
    return render_template("lti/platforms.html", platforms=platforms)
