"""Error pages in plain words, and JSON errors for API clients."""

from __future__ import annotations

import logging
from typing import NoReturn

from flask import Flask, Response, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError, default_exceptions

logger = logging.getLogger("rebound.errors")

DATABASE_UNAVAILABLE = (
    "Rebound can't reach its database at the moment. Nothing you saved before is lost; "
    "try again in a minute."
)
DATABASE_RETRY_AFTER_SECONDS = 30

# What each status means to a person, and what they can do about it.
MESSAGES: dict[int, tuple[str, str]] = {
    400: ("The request could not be understood", "Go back, check what you entered and try again."),
    401: ("You need to sign in", "Open Rebound from your LMS, or sign in with your account."),
    403: (
        "You don't have access to this page",
        "Your role doesn't allow it. If you think it should, ask your LMS administrator.",
    ),
    404: (
        "That page doesn't exist",
        "The link may be old or mistyped. Start again from your LMS or the home page.",
    ),
    405: (
        "That action isn't allowed here",
        "The page was asked to do something it doesn't do. Go back and use its buttons.",
    ),
    413: (
        "What you sent is too large",
        "Make the upload or text smaller and try again.",
    ),
    429: ("Too many attempts", "Wait a few minutes before trying again."),
    500: (
        "Something went wrong on our side",
        "Nothing you did caused this. Try again in a moment; if it keeps happening, "
        "give the support team the reference below.",
    ),
    503: ("Rebound is briefly unavailable", "Try again in a minute."),
}


def wants_json() -> bool:
    """API paths always answer in JSON; pages answer in HTML."""
    return request.path.startswith("/api/")


def error_response(status: int, detail: str | None = None) -> tuple[Response | str, int]:
    """A page (or JSON body) explaining an error, with the request id to quote to support."""
    title, advice = MESSAGES.get(status, (f"Error {status}", "Try again."))
    request_id = g.get("request_id", "-")
    if wants_json():
        body = {
            "error": {
                "status": status,
                "title": title,
                "detail": detail or advice,
                "request_id": request_id,
            }
        }
        return jsonify(body), status
    page = render_template(
        "errors/error.html",
        status=status,
        title=title,
        detail=detail,
        advice=advice,
        request_id=request_id,
    )
    return page, status


def register_error_handlers(app: Flask) -> None:
    """Turn every HTTP error and unexpected exception into a clear page or JSON body."""

    @app.errorhandler(CSRFError)
    def csrf_failed(error: CSRFError) -> tuple[Response | str, int]:
        logger.warning("csrf rejected: %s", error.description, extra={"path": request.path})
        return error_response(
            400,
            "This form's security token was missing or expired, so nothing was saved. "
            "Reload the page and submit the form again.",
        )

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response | HTTPException:
        if error.code is None or error.code < 400:
            return error
        response = app.make_response(error_response(error.code, getattr(error, "rebound_detail", None)))
        # Keep what the exception says in headers (Allow on 405, Retry-After on 429).
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(DisconnectionError)
    def database_unavailable(error: Exception) -> Response | tuple[Response | str, int]:
        # An outage or restart of the database: answer at once with 503 and Retry-After (load
        # balancers and people both know to come back), never a storm of 500s. The pool checks
        # connections as it hands them out (course/database.py), so the first request after the
        # database returns works.
        if not is_unavailability(error):
            return unexpected(error)
        cause = getattr(error, "orig", None) or error
        logger.warning("database unavailable", extra={"path": request.path, "error": type(cause).__name__})
        _discard_unfinished_work()
        # The page's own header would ask the database who is signed in again; show it to an
        # anonymous visitor instead (flask-login keeps the request's user in g._login_user).
        g._login_user = app.login_manager.anonymous_user()  # type: ignore[attr-defined]
        response = app.make_response(error_response(503, DATABASE_UNAVAILABLE))
        response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        return response

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> tuple[Response | str, int]:
        logger.exception("unhandled error", extra={"path": request.path})
        # A failed statement leaves the session unusable; without this the error page's own
        # reads (the LMS origins allowed to frame it) fail too, and the LMS frame refuses the page.
        _discard_unfinished_work()
        return error_response(InternalServerError.code)


# SQLite calls every failure OperationalError; only these mean "not now, try again".
_SQLITE_TRANSIENT = ("database is locked", "unable to open database", "disk i/o error")


def is_unavailability(error: Exception) -> bool:
    """Whether a database error means the database can't be reached now (not a bug)."""
    if isinstance(error, (DisconnectionError, InterfaceError)):
        return True
    if getattr(error, "connection_invalidated", False):
        return True
    cause = getattr(error, "orig", None)
    if type(cause).__module__.startswith("sqlite3"):
        return any(text in str(cause).lower() for text in _SQLITE_TRANSIENT)
    return isinstance(error, OperationalError)


def _discard_unfinished_work() -> None:
    from course.database import db

    try:
        db.session.rollback()
    except Exception:  # the database itself may be what failed
        logger.warning("could not roll back after an error", exc_info=True)


def abort_with(status: int, detail: str, **kwargs: object) -> NoReturn:
    """Stop the request with `status` and a sentence saying exactly what was wrong."""
    error = default_exceptions[status](**kwargs)
    error.rebound_detail = detail  # type: ignore[attr-defined]
    raise error
