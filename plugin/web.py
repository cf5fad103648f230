"""Flask glue for the LTI plugin: settings it reads, HTTP access, keys and sessions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import Flask, current_app, session
from flask_login import current_user, login_user, logout_user
from sqlalchemy.exc import SQLAlchemyError

from course.access import SESSION_PLACEMENTS_KEY, SESSION_ROLES_KEY
from course.config import Settings
from course.database import db
from course.models import Platform, User
from plugin.models import Launch
from plugin.platform_keys import Fetch, KeyMemory, PlatformKeySet, requests_fetch
from plugin.stores import DatabaseJwksStore, KeyringStore
from plugin.tool_keys import Keyring

PLACEMENTS_KEY = SESSION_PLACEMENTS_KEY
ROLES_KEY = SESSION_ROLES_KEY
LAUNCH_KEY = "lti_launch_id"
MAX_PLACEMENTS_IN_SESSION = 20
SESSION_LIFETIME = timedelta(hours=12)
USER_AGENT = "Rebound/0.1 (LTI 1.3 tool)"


def settings() -> Settings:
    return current_app.config["REBOUND_SETTINGS"]  # type: ignore[no-any-return]


def base_url() -> str:
    return settings().base_url


def tool_hosts() -> set[str]:
    """The host[:port] values Rebound answers on, as target_link_uri must name them."""
    return {urlsplit(base_url()).netloc.lower()}


def init_http(app: Flask) -> None:
    """The HTTP fetcher the plugin uses; tests swap `app.extensions["rebound.http_fetch"]`."""
    http = requests.Session()
    http.headers["User-Agent"] = USER_AGENT
    allow_http = not app.config["REBOUND_SETTINGS"].is_production
    app.extensions["rebound.http_session"] = http
    app.extensions["rebound.http_fetch"] = requests_fetch(http, allow_http=allow_http)


def http_fetch() -> Fetch:
    return current_app.extensions["rebound.http_fetch"]  # type: ignore[no-any-return]


def key_source_for(platform: Platform) -> PlatformKeySet:
    memory = current_app.extensions.setdefault("rebound.key_memory", KeyMemory())
    return PlatformKeySet(
        jwks_url=platform.jwks_url, fetch=http_fetch(), store=DatabaseJwksStore(db.session), memory=memory
    )


def keyring(now: datetime) -> Keyring:
    """The tool's keys, generating the first one on first use."""
    return KeyringStore(db.session, settings().secret_key).ensure(now)


def start_session(launch: Launch, user: User) -> None:
    """Sign the launching user in; roles are remembered per placement, so two courses in
    two tabs keep their own roles."""
    same_person = current_user.is_authenticated and current_user.get_id() == user.get_id()
    if not same_person:
        logout_user()
        session.clear()
    login_user(user)
    session.permanent = True
    placements: dict[str, Any] = dict(session.get(PLACEMENTS_KEY, {})) if same_person else {}
    if launch.placement_id is not None:
        placements.pop(str(launch.placement_id), None)
        placements[str(launch.placement_id)] = launch.roles
    session[PLACEMENTS_KEY] = dict(list(placements.items())[-MAX_PLACEMENTS_IN_SESSION:])
    session[ROLES_KEY] = launch.roles
    session[LAUNCH_KEY] = launch.id


def session_launch_id() -> int | None:
    return session.get(LAUNCH_KEY)  # type: ignore[no-any-return]


LaunchTarget = Callable[[Launch], str]


def launch_targets(app: Flask) -> dict[str, LaunchTarget]:
    """Where a completed launch lands, by target kind; packages register their pages here."""
    return app.extensions.setdefault("rebound.launch_targets", {})  # type: ignore[no-any-return]


def _frame_ancestors() -> list[str]:
    """Registered platforms' origins, read per page: a new registration must work at once."""
    from plugin.registrations import frame_ancestor_origins

    try:
        return frame_ancestor_origins(db.session)
    except SQLAlchemyError:
        # A page must still render (e.g. an error page during an outage).
        db.session.rollback()
        return []


def init_app(app: Flask) -> None:
    """Wire the LTI plugin into an app: endpoints, HTTP access, CSP, commands."""
    from course.extensions import csrf
    from plugin import blueprint, commands
    from plugin.registrations import origin_of

    init_http(app)
    app.register_blueprint(blueprint.bp)
    for view in (blueprint.login, blueprint.launch, blueprint.verify_storage):
        csrf.exempt(view)
    app.add_template_filter(origin_of, "origin")
    app.extensions["rebound.frame_ancestors"] = _frame_ancestors
    commands.register(app)
    from plugin import deep_linking

    deep_linking.init_app(app)
    if not app.config["REBOUND_SETTINGS"].is_production:
        from plugin.dev_lms import blueprint as dev_lms

        dev_lms.init_app(app)
