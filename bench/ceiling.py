"""The ceiling: a bare Flask app answering the same requests as the tools, doing no work."""

from __future__ import annotations

from flask import Flask, redirect, request
from werkzeug.wrappers import Response


def create_ceiling_app() -> Flask:
    """Endpoints with the launch's and the case step's shapes and status codes, and nothing behind them."""
    app = Flask("ceiling")

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    @app.route("/lti/login", methods=["GET", "POST"])
    def login() -> Response:
        return redirect("https://platform.invalid/auth?state=s&nonce=n", code=302)

    @app.post("/lti/launch")
    def launch() -> Response:
        request.form.get("id_token")
        return redirect("/lti/landing?launch=t", code=303)

    @app.get("/lti/landing")
    def landing() -> Response:
        return redirect("/p/1/", code=303)

    @app.get("/p/<int:placement_id>/")
    def home(placement_id: int) -> str:
        return f"<!doctype html><title>Course home</title><h1>Course {placement_id}</h1>"

    @app.post("/p/<int:placement_id>/cases/<slug>/attempts/<int:attempt_id>/answer")
    def answer(placement_id: int, slug: str, attempt_id: int) -> Response:
        request.form.get("choice")
        return redirect(f"/p/{placement_id}/cases/{slug}/attempts/{attempt_id}", code=303)

    return app
