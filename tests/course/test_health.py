"""Probes: /healthz says the process is up; /readyz says whether the database can serve."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient


def test_healthz_answers_without_touching_the_database(app_factory: Callable[..., Flask]) -> None:
    app = app_factory(DATABASE_URL="postgresql://127.0.0.1:1/unreachable")
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_is_ready_on_a_migrated_database(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ready"


def test_readyz_says_503_quickly_when_the_database_is_down(app_factory: Callable[..., Flask]) -> None:
    app = app_factory(DATABASE_URL="postgresql://127.0.0.1:1/unreachable")
    started = time.monotonic()
    response = app.test_client().get("/readyz")
    assert time.monotonic() - started < 6
    assert response.status_code == 503
    assert response.get_json()["reason"].startswith("database unreachable")


def test_readyz_says_503_when_the_schema_is_behind(app_factory: Callable[..., Flask], tmp_path: Path) -> None:
    app = app_factory(DATABASE_URL=f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert "run `rebound db upgrade`" in response.get_json()["reason"]
