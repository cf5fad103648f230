"""The application factory: the one place where Rebound's parts are wired together."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response
from sqlalchemy import select
from werkzeug.middleware.proxy_fix import ProxyFix

from course import access, completion_views, errors, health, home, log
from course.accounts import blueprint as accounts
from course.commands import register_commands
from course.config import Settings, load_settings
from course.database import db
from course.exports import web as exports_web
from course.extensions import csrf, login_manager
from course.models import LocalAccount, User
from lessons import web as lessons_web
from plugin import web as lti
from quizzes import web as quizzes_web

logger = logging.getLogger("rebound.app")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build a Rebound app from `REBOUND_*` settings (plus overrides, for tests)."""
    settings = load_settings(overrides=test_config)
    log.configure_logging(settings.log_level, settings.log_format)

    app = Flask("course", instance_path=str(settings.data_dir))
    app.config.update(settings.flask_config())
    app.config.update(settings.extra)
    if settings.trusted_proxy_hops:
        hops = settings.trusted_proxy_hops
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops
        )
    app.extensions["rebound.home_links"] = []
    app.extensions["rebound.frame_ancestors"] = lambda: []

    db.init_app(app)
    csrf.init_app(app)
    _init_login(app)
    log.init_request_logging(app)
    access.init_access_control(app)
    errors.register_error_handlers(app)

    app.register_blueprint(home.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(accounts.bp)
    register_commands(app)
    lti.init_app(app)
    lessons_web.init_app(app)
    quizzes_web.init_app(app)
    completion_views.init_app(app)
    exports_web.init_app(app)

    @app.context_processor
    def navigation() -> dict[str, Any]:
        roles = access.current_roles()
        staff_links = [
            link for link in app.extensions.get("rebound.staff_links", []) if link["roles"] & roles
        ]
        return {"home_links": app.extensions["rebound.home_links"], "staff_links": staff_links}

    @app.after_request
    def security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if "Content-Security-Policy" not in response.headers:
            # Only pages can be framed; other responses (redirects too: a browser frames where
            # they lead, not them) skip the lookup of platform origins.
            framed = response.mimetype == "text/html" and not 300 <= response.status_code < 400
            ancestors = " ".join(["'self'", *(app.extensions["rebound.frame_ancestors"]() if framed else [])])
            response.headers["Content-Security-Policy"] = (
                "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'self'; "
                f"frame-ancestors {ancestors}"
            )
        return response

    logger.debug("app created", extra={"env": settings.env})
    return app


def _init_login(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.session_protection = "basic"

    @login_manager.user_loader
    def load_user(user_id: str) -> LocalAccount | User | None:
        kind, _, raw_id = user_id.partition(":")
        if not raw_id.isdigit():
            return None
        model = {"local": LocalAccount, "lti": User}.get(kind)
        if model is None:
            return None
        return db.session.scalar(select(model).where(model.id == int(raw_id)))  # type: ignore[attr-defined]


def settings_of(app: Flask) -> Settings:
    """The validated settings an app was built with."""
    return app.config["REBOUND_SETTINGS"]  # type: ignore[no-any-return]
