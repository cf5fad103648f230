"""Every route declares who may use it; a route without a declaration fails this suite."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from course.access import PUBLIC, ROLES, declared_roles
from course.models import LocalAccount
from tests.conftest import DEFAULT_PASSWORD
from tests.helpers import sign_in


def test_every_route_in_the_url_map_declares_its_roles(app: Flask) -> None:
    undeclared = [
        rule.rule for rule in app.url_map.iter_rules() if declared_roles(app, rule.endpoint) is None
    ]
    assert undeclared == []


def test_declared_roles_are_known_roles(app: Flask) -> None:
    for rule in app.url_map.iter_rules():
        roles = declared_roles(app, rule.endpoint) or frozenset()
        assert roles <= {PUBLIC, *ROLES}, rule.rule


def test_a_route_without_a_declaration_is_closed(app: Flask) -> None:
    app.add_url_rule("/forgotten", "forgotten", lambda: "secret")
    response = app.test_client().get("/forgotten")
    assert response.status_code == 403
    assert "secret" not in response.get_data(as_text=True)


def test_a_role_not_allowed_gets_403(app: Flask, make_account: Callable[..., LocalAccount]) -> None:
    from course.access import allow

    app.add_url_rule("/hr-only", "hr_only", allow("hr")(lambda: "hr data"))
    make_account(username="tess", role="trainer")
    client = app.test_client()
    sign_in(client, "tess", DEFAULT_PASSWORD)
    assert client.get("/hr-only").status_code == 403


def test_admin_accounts_hold_every_staff_role(app: Flask, make_account: Callable[..., LocalAccount]) -> None:
    from course.access import allow

    app.add_url_rule("/hr-only", "hr_only", allow("hr")(lambda: "hr data"))
    make_account(username="root.admin", role="admin")
    client = app.test_client()
    sign_in(client, "root.admin", DEFAULT_PASSWORD)
    assert client.get("/hr-only").get_data(as_text=True) == "hr data"


def test_learner_only_api_answers_401_in_json_when_signed_out(app: Flask) -> None:
    from course.access import allow

    app.add_url_rule("/api/v1/mine", "mine", allow("learner")(lambda: "mine"))
    response = app.test_client().get("/api/v1/mine")
    assert response.status_code == 401
    assert response.get_json()["error"]["status"] == 401


def test_pages_carry_security_headers(app: Flask) -> None:
    response = app.test_client().get("/")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors" in response.headers["Content-Security-Policy"]
    assert "object-src 'none'" in response.headers["Content-Security-Policy"]


def test_forwarded_headers_are_ignored_unless_proxies_are_trusted(
    app_factory: Callable[..., Flask], database_url: str
) -> None:
    from flask import request

    from course.access import public

    def scheme() -> str:
        return f"{request.scheme} {request.remote_addr}"

    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    untrusting = app_factory(DATABASE_URL=database_url)
    untrusting.add_url_rule("/scheme", "scheme", public(scheme))
    assert untrusting.test_client().get("/scheme", headers=headers, base_url="http://localhost").get_data(as_text=True) == "http 127.0.0.1"

    trusting = app_factory(DATABASE_URL=database_url, TRUSTED_PROXY_HOPS="1")
    trusting.add_url_rule("/scheme", "scheme", public(scheme))
    assert trusting.test_client().get("/scheme", headers=headers, base_url="http://localhost").get_data(as_text=True) == "https 203.0.113.9"
