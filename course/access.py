"""Who may use which route: every view declares its roles, and a hook enforces them.

A route without a declaration is refused (and a test walking the URL map fails), so a
new page can never be open by accident.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, redirect, request, session, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from course.errors import abort_with

PUBLIC = "public"
ROLES = ("learner", "trainer", "hr", "admin")
STAFF_ROLES = frozenset({"trainer", "hr", "admin"})
# What a local account's single role lets it do.
LOCAL_ROLE_GRANTS: dict[str, frozenset[str]] = {
    "admin": frozenset({"admin", "hr", "trainer"}),
    "hr": frozenset({"hr"}),
    "trainer": frozenset({"trainer"}),
}
SESSION_ROLES_KEY = "lti_roles"
SESSION_PLACEMENTS_KEY = "lti_placements"
ATTRIBUTE = "rebound_roles"

logger = logging.getLogger("rebound.access")
View = TypeVar("View", bound=Callable[..., Any])


def allow(*roles: str) -> Callable[[View], View]:
    """Declare the roles that may use a view (`allow("trainer", "hr")`)."""
    unknown = set(roles) - set(ROLES)
    if unknown or not roles:
        raise ValueError(f"unknown or missing roles: {sorted(unknown) or 'none given'}")

    def mark(view: View) -> View:
        setattr(view, ATTRIBUTE, frozenset(roles))
        return view

    return mark


def public(view: View) -> View:
    """Declare a view open to anyone, signed in or not."""
    setattr(view, ATTRIBUTE, frozenset({PUBLIC}))
    return view


def declared_roles(app: Flask, endpoint: str) -> frozenset[str] | None:
    """The roles declared for an endpoint, or None when it declares nothing."""
    if endpoint == "static" or endpoint.endswith(".static"):
        return frozenset({PUBLIC})
    view = app.view_functions.get(endpoint)
    return getattr(view, ATTRIBUTE, None)


def current_roles() -> frozenset[str]:
    """The Rebound roles of whoever is signed in (none when nobody is)."""
    if not current_user.is_authenticated:
        return frozenset()
    local_role = getattr(current_user, "role", None)
    if local_role is not None:
        return LOCAL_ROLE_GRANTS.get(local_role, frozenset())
    # An LTI user's roles belong to the placement they launched; pages of a placement
    # get that placement's roles, other pages those of the latest launch.
    placement_id = (request.view_args or {}).get("placement_id")
    if placement_id is not None:
        return frozenset(session.get(SESSION_PLACEMENTS_KEY, {}).get(str(placement_id), ()))
    return frozenset(session.get(SESSION_ROLES_KEY, ()))


def current_platform_id() -> int | None:
    """The tenant whose data the current user may see; None for a cross-tenant admin."""
    return getattr(current_user, "platform_id", None)


def init_access_control(app: Flask) -> None:
    """Check every request against its view's declared roles."""

    @app.before_request
    def enforce() -> Response | None:
        if request.endpoint is None:
            return None  # 404 and 405 are answered by the router's own errors
        roles = declared_roles(current_app, request.endpoint)
        if roles is None:
            logger.error("route without a role declaration", extra={"endpoint": request.endpoint})
            abort_with(403, "This page has no access rule yet, so it is closed to everyone.")
        if PUBLIC in roles:
            return None
        if not current_user.is_authenticated:
            # Learner pages are reached from an LMS launch, so a sign-in form would mislead.
            if roles & STAFF_ROLES and "learner" not in roles and not request.path.startswith("/api/"):
                return redirect(url_for("accounts.login", next=request.full_path.rstrip("?")))
            abort_with(401, "Open Rebound from your LMS, or sign in with your Rebound account.")
        if not roles & current_roles():
            abort_with(403, "Your role doesn't allow this page.")
        return None


def placement_or_404(placement_id: int) -> Any:
    """The placement a learner page belongs to, only if it is the signed-in user's tenant's
    and their session launched it; anything else is a plain 404 (no hint that it exists)."""
    from course.database import db
    from course.models import Placement

    placement = db.session.get(Placement, placement_id)
    launched = str(placement_id) in session.get(SESSION_PLACEMENTS_KEY, {})
    if placement is None or not launched or placement.platform_id != getattr(current_user, "platform_id", None):
        abort_with(404, "That course page doesn't exist, or it belongs to another course. Open it from your LMS.")
    return placement
