"""Pages and endpoints of the development LMS (registered only in development mode)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app, jsonify, redirect, render_template, request
from sqlalchemy import select
from werkzeug.wrappers import Response as WerkzeugResponse

from course.access import public
from course.database import db, utcnow
from course.extensions import csrf
from course.models import Platform
from plugin.dev_lms import deep_linking
from plugin.dev_lms import platform as lms
from plugin.registrations import origin_of

bp = Blueprint(
    "dev_lms",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/dev-lms/static",
)


@bp.after_request
def allow_framing_the_tool(response: Response) -> Response:
    """The LMS page frames Rebound (another origin); Rebound's own pages frame nothing."""
    tool_origin = origin_of(_tool_base())
    response.headers["Content-Security-Policy"] = (
        f"default-src 'self'; frame-src 'self' {tool_origin}; img-src 'self' data:; object-src 'none'; "
        "base-uri 'self'; frame-ancestors 'self'"
    )
    return response


def _tool_base() -> str:
    return current_app.config["REBOUND_SETTINGS"].base_url  # type: ignore[no-any-return]


def _keyring():  # type: ignore[no-untyped-def]
    return lms.load_key(current_app.config["REBOUND_SETTINGS"].data_dir, utcnow())


def _registered_platform() -> Platform | None:
    u = lms.urls(_tool_base())
    return db.session.scalar(
        select(Platform).where(Platform.issuer == u["issuer"], Platform.client_id == lms.CLIENT_ID)
    )


def _refuse(message: str, status: int = 400) -> tuple[str, int]:
    return render_template("dev_lms/refused.html", message=message), status


@bp.route("/dev-lms/")
@public
def home() -> WerkzeugResponse | str:
    u = lms.urls(_tool_base())
    # Serve the LMS on its own host name, so Rebound in the frame is really third-party.
    if request.host != urlsplit(u["home"]).netloc:
        return redirect(u["home"])
    registered = _registered_platform() is not None
    register_url = _tool_base() + "/lti/register?openid_configuration=" + u["openid_configuration"]
    return render_template(
        "dev_lms/home.html",
        registered=registered,
        register_url=register_url,
        people=lms.PEOPLE,
        courses=lms.COURSES,
        tool_login=_tool_base() + "/lti/login",
        tool_launch=_tool_base() + "/lti/launch",
        issuer=u["issuer"],
        client_id=lms.CLIENT_ID,
        deployment_id=lms.DEPLOYMENT_ID,
        hint=lms.encode_hint,
    )


@bp.route("/dev-lms/.well-known/openid-configuration")
@public
def openid_configuration() -> Response:
    return jsonify(lms.openid_configuration(_tool_base()))


@bp.route("/dev-lms/jwks")
@public
def jwks() -> Response:
    return jsonify(_keyring().public_jwks(utcnow()))


@bp.route("/dev-lms/register", methods=["POST"])
@public
def register() -> tuple[Response, int]:
    try:
        answer = lms.accept_registration(request.get_json(silent=True), _tool_base())
    except lms.RegistrationRefused as error:
        return jsonify(error="invalid_client_metadata", error_description=str(error)), 400
    return jsonify(answer), 200


@bp.route("/dev-lms/auth", methods=["GET", "POST"])
@public
def authenticate() -> tuple[str, int] | str:
    """The OIDC authentication endpoint: check the request, sign the id_token, post it back."""
    params = request.values
    expected_redirect = _tool_base() + "/lti/launch"
    checks = {
        "scope": params.get("scope") == "openid",
        "response_type": params.get("response_type") == "id_token",
        "response_mode": params.get("response_mode") == "form_post",
        "client_id": params.get("client_id") == lms.CLIENT_ID,
        "redirect_uri": params.get("redirect_uri") == expected_redirect,
        "nonce": bool(params.get("nonce")),
        "state": bool(params.get("state")),
    }
    wrong = [name for name, ok in checks.items() if not ok]
    if wrong:
        return _refuse(f"The authentication request has a missing or wrong {', '.join(wrong)}.")
    who = lms.person(params.get("login_hint", ""))
    hint = lms.decode_hint(params.get("lti_message_hint", ""))
    where = lms.course(hint.get("course", ""))
    if who is None or where is None:
        return _refuse("The login hint names nobody this LMS knows.")
    options = deep_linking.launch_options(current_app.config["REBOUND_SETTINGS"].data_dir, hint, where.id, utcnow())
    if options is None:
        return _refuse("The login hint names a link this course does not have.")
    token = lms.id_token(
        tool_base_url=_tool_base(),
        keyring=_keyring(),
        who=who,
        where=where,
        nonce=params["nonce"],
        now=utcnow(),
        **options,
    )
    return render_template(
        "dev_lms/autopost.html", action=expected_redirect, id_token=token, state=params["state"]
    )


def init_app(app: Flask) -> None:
    """Add the development LMS to a development app (never called in production)."""
    app.register_blueprint(bp)
    csrf.exempt(register)
    csrf.exempt(authenticate)
    from plugin.dev_lms import services

    services.init_app(app)
    deep_linking.init_app(app)
    base = app.config["REBOUND_SETTINGS"].base_url
    app.extensions["rebound.home_links"].append(
        {
            "title": "Try it without an LMS",
            "text": "The development LMS launches Rebound as a learner, trainer or HR through the real LTI 1.3 path.",
            "url": lms.urls(base)["home"],
            "label": "Open the development LMS",
        }
    )
