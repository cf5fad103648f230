"""The completions API for HR systems: `GET /api/v1/completions`, with a bearer token.

A token speaks for one tenant with one role (see course.exports.tokens); it is read by
flask-login's request loader, so the usual access rules (`@allow`) apply to it. The
blueprint is exempt from Flask-WTF's CSRF check only for bearer-token requests: a request
that rides on a session cookie gets the check here instead (a token cannot be forged by a
cross-site page, a cookie can).
"""

from __future__ import annotations

from itertools import islice
from typing import Any, Final
from urllib.parse import urlencode

from flask import Blueprint, Request, Response, current_app, request, url_for
from flask_login import current_user

from course.access import allow, current_platform_id
from course.database import db, utcnow
from course.errors import abort_with
from course.exports.formats import export_formats
from course.exports.rows import Cursor, FilterError, iter_rows, resolve_filters
from course.exports.services import start_export
from course.exports.tokens import TokenError, TokenPrincipal, authenticate_token
from course.exports.views import deliver, requested_by
from course.extensions import csrf

bp = Blueprint("export_api", __name__, url_prefix="/api/v1")
DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 1000
PARAMETERS: Final = ("format", "status", "from", "to", "context", "page_size", "after")
TOKEN_HINT: Final = "Send `Authorization: Bearer <token>`; an operator makes tokens with `rebound tokens create`."  # noqa: S105


def load_token_principal(incoming: Request) -> TokenPrincipal | None:
    """flask-login's request loader: the bearer token's principal, on API paths only.

    A malformed, unknown, revoked or expired token is refused here with a 401 that says which.
    """
    if not incoming.path.startswith("/api/"):
        return None
    header = incoming.headers.get("Authorization")
    if header is None:
        if incoming.blueprint == bp.name:
            abort_with(401, f"This API needs a token. {TOKEN_HINT}")
        return None
    scheme, _, secret = header.strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret or " " in secret:
        abort_with(401, f"The Authorization header is not a bearer token. {TOKEN_HINT}")
    try:
        principal = authenticate_token(db.session, secret, now=utcnow())
    except TokenError as error:
        abort_with(401, str(error))
    db.session.commit()  # last_used_at, even when the request then fails on a filter
    return principal


@bp.before_request
def csrf_unless_bearer() -> None:
    # Exempt only when the token, not a cookie, is what signed the request in.
    unsafe = request.method in current_app.config.get("WTF_CSRF_METHODS", ("POST", "PUT", "PATCH", "DELETE"))
    if unsafe and not isinstance(current_user._get_current_object(), TokenPrincipal):
        csrf.protect()


@bp.after_request
def challenge(response: Response) -> Response:
    if response.status_code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="rebound"'
    return response


def _page_size(text: str | None) -> int:
    if text is None or text == "":
        return DEFAULT_PAGE_SIZE
    if not text.isdigit() or int(text) < 1:
        abort_with(400, f"page_size must be a whole number from 1 to {MAX_PAGE_SIZE}; got {text[:20]!r}.")
    size = int(text)
    if size > MAX_PAGE_SIZE:
        abort_with(
            400,
            f"page_size {size} is more than the most one page holds ({MAX_PAGE_SIZE}); "
            "follow the `next` cursor (Link header) for the following pages.",
        )
    return size


@bp.route("/completions")
@allow("hr", "admin")
def completions() -> Any:
    args = request.args
    unknown = sorted(set(args) - set(PARAMETERS))
    if unknown:
        abort_with(400, f"Unknown parameter(s): {', '.join(unknown)}. This endpoint reads: {', '.join(PARAMETERS)}.")
    name = args.get("format", "json") or "json"
    formats = export_formats()
    if name not in formats:
        abort_with(400, f"format {name[:20]!r} is not offered; use one of: {', '.join(formats)}.")
    size = _page_size(args.get("page_size"))
    tenant = current_platform_id()
    session = db.session
    try:
        after = Cursor.decode(args["after"]) if args.get("after") else None
        given = {key: args.get(key, "") for key in ("status", "from", "to", "context")}
        filters = resolve_filters(session, platform_id=tenant, given=given, may_cross_tenants=tenant is None)
    except FilterError as error:
        abort_with(400, f"{error.field}: {error.message}")
    # One page is bounded (at most MAX_PAGE_SIZE + 1 rows), so it is read before the headers go out.
    page = list(islice(iter_rows(session, filters, now=utcnow(), after=after), size + 1))
    headers = {}
    if len(page) > size:
        page = page[:size]
        cursor = page[-1].cursor.encode()
        kept = {key: value for key, value in args.items() if key != "after" and value}
        link = url_for("export_api.completions", _external=True) + "?" + urlencode({**kept, "after": cursor})
        headers = {"Link": f'<{link}>; rel="next"', "X-Next-Cursor": cursor}
    run = start_export(
        session, filters=filters, format_name=name, channel="api", requested_by=requested_by(), now=utcnow()
    )
    run.filters = {**run.filters, "page_size": size, **({"after": after.encode()} if after else {})}
    session.commit()
    return deliver(session, run, formats[name], page, filename="rebound-completions", headers=headers)
