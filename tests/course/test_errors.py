"""Errors say what went wrong in plain words: pages for people, JSON for API clients."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from course.access import public


def test_unknown_page_gets_a_plain_404_page_with_a_reference(client: FlaskClient) -> None:
    response = client.get("/no/such/page")
    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert "That page doesn&#39;t exist" in page
    assert response.headers["X-Request-ID"] in page


def test_api_paths_get_json_errors(client: FlaskClient) -> None:
    response = client.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.is_json
    error = response.get_json()["error"]
    assert error["status"] == 404
    assert error["title"] == "That page doesn't exist"
    assert error["request_id"] == response.headers["X-Request-ID"]


def test_wrong_method_gets_405_naming_the_allowed_ones(client: FlaskClient) -> None:
    response = client.delete("/auth/login")
    assert response.status_code == 405
    assert "That action isn&#39;t allowed here" in response.get_data(as_text=True)
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}


def test_request_body_over_the_limit_gets_413(app_factory, database_url: str) -> None:
    app = app_factory(DATABASE_URL=database_url, MAX_REQUEST_BYTES="2048")
    response = app.test_client().post("/auth/login", data={"username": "x" * 5000, "password": "y"})
    assert response.status_code == 413
    assert "What you sent is too large" in response.get_data(as_text=True)


def _add_failing_route(app: Flask) -> None:
    @public
    def explode() -> str:
        raise RuntimeError("database password is hunter2")

    app.add_url_rule("/explode", "explode", explode)


def test_unexpected_error_shows_a_calm_500_and_logs_the_detail(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    _add_failing_route(app)
    caplog.set_level(logging.ERROR, logger="rebound")
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = app.test_client().get("/explode")
    assert response.status_code == 500
    page = response.get_data(as_text=True)
    assert "Something went wrong on our side" in page
    assert "hunter2" not in page
    assert response.headers["X-Request-ID"] in page
    assert "hunter2" in caplog.text


@pytest.mark.parametrize("status", [400, 403])
def test_client_errors_have_plain_pages(app: Flask, status: int) -> None:
    from course.errors import abort_with

    @public
    def refuse() -> str:
        abort_with(status, "Exactly this was wrong.")

    app.add_url_rule("/refuse", "refuse", refuse)
    response = app.test_client().get("/refuse")
    assert response.status_code == status
    assert "Exactly this was wrong." in response.get_data(as_text=True)


def test_json_error_body_is_valid_json_for_api_500s(app: Flask) -> None:
    @public
    def explode() -> str:
        raise RuntimeError("boom")

    app.add_url_rule("/api/v1/explode", "api_explode", explode)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = app.test_client().get("/api/v1/explode")
    assert response.status_code == 500
    assert json.loads(response.get_data(as_text=True))["error"]["status"] == 500


def test_an_error_after_a_failed_statement_still_lets_the_lms_frame_the_error_page(
    app: Flask, make_platform: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    from sqlalchemy import text

    from course.database import db

    make_platform(frame_origins=["https://lms.acme.example"])

    @public
    def broken_query() -> str:
        db.session.execute(text("SELECT * FROM no_such_table"))
        return "unreachable"

    app.add_url_rule("/broken-query", "broken_query", broken_query)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    caplog.set_level(logging.ERROR, logger="rebound")
    response = app.test_client().get("/broken-query")
    assert response.status_code == 500
    assert "https://lms.acme.example" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    ("cause", "status"),
    [("database is locked", 503), ("unable to open database file", 503), ("no such table: widgets", 500)],
)
def test_sqlite_errors_that_mean_try_again_answer_503_and_bugs_stay_500(
    app: Flask, cause: str, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    import sqlite3

    from sqlalchemy.exc import OperationalError

    @public
    def failing() -> str:
        raise OperationalError("SELECT 1", {}, sqlite3.OperationalError(cause))

    app.add_url_rule("/sqlite-failing", "sqlite_failing", failing)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    caplog.set_level(logging.ERROR, logger="rebound")
    response = app.test_client().get("/sqlite-failing")
    assert response.status_code == status
    assert ("Retry-After" in response.headers) is (status == 503)
