"""Flask glue for the LTI plugin: settings it reads, HTTP access, keys and sessions."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import Flask, current_app, has_app_context, session
from flask_login import current_user, login_user, logout_user
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from course.access import SESSION_PLACEMENTS_KEY, SESSION_ROLES_KEY
from course.config import Settings
from course.database import db, flushed_any
from course.models import Platform, User
from plugin.models import Launch
from plugin.platform_keys import Fetch, KeyMemory, PlatformKeySet, requests_fetch
from plugin.stores import DatabaseJwksStore, KeyringStore
from plugin.tool_keys import Keyring

PLACEMENTS_KEY = SESSION_PLACEMENTS_KEY
ROLES_KEY = SESSION_ROLES_KEY
LAUNCH_KEY = "lti_launch_id"
FRAME_ORIGINS_KEY = "lti_frame_origins"
MAX_SESSION_FRAME_ORIGINS = 8
FRAME_ANCESTORS_TTL = timedelta(seconds=30)
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
    session[FRAME_ORIGINS_KEY] = list((launch.context or {}).get("frame_origins", []))[:MAX_SESSION_FRAME_ORIGINS]


def session_launch_id() -> int | None:
    return session.get(LAUNCH_KEY)  # type: ignore[no-any-return]


LaunchTarget = Callable[[Launch], str]


def launch_targets(app: Flask) -> dict[str, LaunchTarget]:
    """Where a completed launch lands, by target kind; packages register their pages here."""
    return app.extensions.setdefault("rebound.launch_targets", {})  # type: ignore[no-any-return]


class FrameAncestors:
    """Every registered platform's origins, kept per process for `FRAME_ANCESTORS_TTL`.

    Reading them took a query on every page (6 % of a loaded worker's time). A launched
    browser needs no wait: its session carries the origins of the platform that launched it,
    so its pages may be framed at once even if this process learnt of the platform seconds
    ago; and this process forgets what it kept whenever it writes a platform itself.
    """

    def __init__(self, ttl: timedelta = FRAME_ANCESTORS_TTL) -> None:
        self.ttl = ttl
        self._kept: tuple[float, list[str]] | None = None

    def origins(self, read: Callable[[], list[str]]) -> list[str]:
        kept, now = self._kept, time.monotonic()
        if kept is not None and now - kept[0] < self.ttl.total_seconds():
            return kept[1]
        origins = read()
        self._kept = (now, origins)
        return origins

    def forget(self) -> None:
        self._kept = None


def _frame_ancestors() -> list[str]:
    """The origins that may frame this page: registered platforms', and the launching one's."""
    from plugin.registrations import frame_ancestor_origins

    try:
        known = current_app.extensions["rebound.frame_ancestor_cache"].origins(
            lambda: frame_ancestor_origins(db.session)
        )
    except SQLAlchemyError:
        # A page must still render (e.g. an error page during an outage).
        db.session.rollback()
        known = []
    launched = session.get(FRAME_ORIGINS_KEY) or []
    return sorted({*known, *launched})


@event.listens_for(Session, "after_flush")
def _forget_frame_ancestors(db_session: Session, flush_context: object) -> None:
    if not has_app_context() or "rebound.frame_ancestor_cache" not in current_app.extensions:
        return
    if flushed_any(db_session, Platform):
        current_app.extensions["rebound.frame_ancestor_cache"].forget()


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
    app.extensions["rebound.frame_ancestor_cache"] = FrameAncestors()
    commands.register(app)
    from plugin import deep_linking

    deep_linking.init_app(app)
    if not app.config["REBOUND_SETTINGS"].is_production:
        from plugin.dev_lms import blueprint as dev_lms

        dev_lms.init_app(app)
