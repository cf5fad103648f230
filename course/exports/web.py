"""Wire the HR export into an app: formats, the export page, the API, token sign-in, commands."""

from __future__ import annotations

from flask import Flask

from course.exports import api, commands, views
from course.exports.formats import builtin_formats, export_formats
from course.extensions import csrf, login_manager


def init_app(app: Flask) -> None:
    """Register everything the HR export brings."""
    export_formats(app).update(builtin_formats())
    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp)
    # Bearer-token requests skip Flask-WTF's check; cookie ones get it in the blueprint (api.py).
    csrf.exempt(api.bp)
    login_manager.request_loader(api.load_token_principal)
    app.cli.add_command(commands.export_cli)
    app.cli.add_command(commands.tokens_cli)
    app.extensions.setdefault("rebound.staff_links", []).append(
        {"roles": {"hr", "admin"}, "label": "Exports", "endpoint": "exports.index"}
    )
