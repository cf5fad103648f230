"""The completions API and its tokens: one tenant per token, hashed, revocable, expiring;
keyset pages; every bad input answered with a JSON error that says what was wrong."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from course.access import allow
from course.database import db, utcnow
from course.exports.tokens import create_token
from course.models import ApiToken, ExportRun, Platform
from tests.course.test_exports import World, new_world

URL = "/api/v1/completions"


@pytest.fixture
def world(app: Flask, make_platform: Callable[..., Platform]) -> World:
    return new_world(make_platform)


@pytest.fixture
def tenant(world: World) -> World:
    """A tenant with five learners who started and two roster members who never did."""
    context = world.context()
    placement = world.placement(context, title="Rebound course")
    for n in range(5):
        learner = world.learner(f"u-{n}", f"Learner {n}", f"l{n}@example.com")
        if n % 2:
            world.completes(learner, placement, at=utcnow() - timedelta(days=n), score=80 + n)
        else:
            world.reads(learner, placement, at=utcnow() - timedelta(days=n))
    world.rostered(context, "r-1", "Roster One")
    world.rostered(context, "r-2", "Roster Two")
    db.session.commit()
    return world


def token_for(platform: Platform, **options: Any) -> str:
    _, secret = create_token(
        db.session, platform=platform, name=options.pop("name", "Workday sync"), role=options.pop("role", "hr"),
        expires_days=options.pop("expires_days", None), now=options.pop("now", utcnow()),
    )
    db.session.commit()
    return secret


def get(client: FlaskClient, token: str | None, query: str = "", **headers: str) -> Any:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return client.get(URL + query, headers=headers)


def error_of(response: Any) -> str:
    assert response.mimetype == "application/json"
    return str(response.get_json()["error"]["detail"])


def test_a_token_reads_its_tenant_s_rows_as_json_including_never_started(app: Flask, tenant: World) -> None:
    response = get(app.test_client(), token_for(tenant.platform))
    assert response.status_code == 200
    rows = json.loads(response.get_data())
    assert sorted(row["learner_id"] for row in rows) == ["r-1", "r-2", "u-0", "u-1", "u-2", "u-3", "u-4"]
    assert {row["status"] for row in rows} == {"not started", "in progress", "passed"}
    assert "Link" not in response.headers
    assert "Set-Cookie" not in response.headers  # a token request opens no session


def test_only_the_token_s_hash_is_stored_and_its_use_is_recorded(app: Flask, tenant: World) -> None:
    secret = token_for(tenant.platform)
    stored = db.session.scalars(select(ApiToken)).one()
    assert stored.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in (stored.prefix + "x") and stored.last_used_at is None
    get(app.test_client(), secret)
    db.session.refresh(stored)
    assert stored.last_used_at is not None


def test_pages_follow_a_keyset_cursor_until_the_last_row(app: Flask, tenant: World) -> None:
    client, secret = app.test_client(), token_for(tenant.platform)
    seen: list[str] = []
    query = "?page_size=3&format=json"
    pages = 0
    while True:
        response = get(client, secret, query)
        assert response.status_code == 200, response.get_data(as_text=True)
        seen += [row["learner_id"] for row in json.loads(response.get_data())]
        pages += 1
        if "Link" not in response.headers:
            break
        link = response.headers["Link"]
        assert link.endswith('>; rel="next"')
        next_url = urlsplit(link[1:].split(">")[0])
        assert parse_qs(next_url.query)["after"] == [response.headers["X-Next-Cursor"]]
        query = "?" + next_url.query
    assert pages == 3
    assert sorted(seen) == ["r-1", "r-2", "u-0", "u-1", "u-2", "u-3", "u-4"] and len(seen) == len(set(seen))


def test_csv_and_xlsx_pages_are_offered_too(app: Flask, tenant: World) -> None:
    client, secret = app.test_client(), token_for(tenant.platform)
    as_csv = get(client, secret, "?format=csv&status=passed")
    assert as_csv.status_code == 200 and as_csv.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(as_csv.get_data()[3:].decode())))
    assert sorted(row["learner_id"] for row in rows) == ["u-1", "u-3"]
    as_xlsx = get(client, secret, "?format=xlsx")
    assert as_xlsx.status_code == 200 and as_xlsx.get_data()[:2] == b"PK"


def test_every_api_call_is_logged_with_who_and_the_filters(app: Flask, tenant: World) -> None:
    response = get(app.test_client(), token_for(tenant.platform, name="Payroll"), "?status=passed&page_size=10")
    assert len(json.loads(response.get_data())) == 2
    run = db.session.scalars(select(ExportRun)).one()
    assert (run.channel, run.status, run.row_count, run.format) == ("api", "complete", 2, "json")
    assert run.requested_by.endswith(":Payroll") and run.platform_id == tenant.platform.id
    assert run.filters["status"] == "passed" and run.filters["page_size"] == 10


def test_a_token_of_another_tenant_never_sees_these_rows(
    app: Flask, tenant: World, make_platform: Callable[..., Platform]
) -> None:
    other = make_platform(name="Other LMS")
    response = get(app.test_client(), token_for(other))
    assert response.status_code == 200 and json.loads(response.get_data()) == []
    # Naming this tenant's course from the other tenant finds nothing to name.
    named = get(app.test_client(), token_for(other, name="x"), "?context=course-1")
    assert named.status_code == 400 and "No course" in error_of(named)


def test_an_admin_token_is_still_held_to_its_own_tenant(
    app: Flask, tenant: World, make_platform: Callable[..., Platform]
) -> None:
    other = make_platform(name="Other LMS")
    rows = json.loads(get(app.test_client(), token_for(other, role="admin")).get_data())
    assert rows == []


@pytest.mark.parametrize(
    ("state", "words"),
    [("expired", "expired on"), ("revoked", "was revoked"), ("unknown", "not known")],
)
def test_an_expired_revoked_or_unknown_token_gets_401_in_json(app: Flask, tenant: World, state: str,
                                                              words: str) -> None:
    if state == "expired":
        secret = token_for(tenant.platform, expires_days=1, now=utcnow() - timedelta(days=2))
    elif state == "revoked":
        secret = token_for(tenant.platform)
        db.session.scalars(select(ApiToken)).one().revoked_at = utcnow()
        db.session.commit()
    else:
        secret = "rbt_" + "x" * 43
    response = get(app.test_client(), secret)
    assert response.status_code == 401
    assert words in error_of(response)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="rebound"'
    assert db.session.scalars(select(ExportRun)).all() == []


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer two words", "token abc", ""],
)
def test_a_malformed_authorization_header_gets_401_saying_how_to_send_a_token(app: Flask, tenant: World,
                                                                              header: str) -> None:
    response = app.test_client().get(URL, headers={"Authorization": header})
    assert response.status_code == 401
    assert "Bearer <token>" in error_of(response)


def test_no_authorization_header_gets_401_saying_a_token_is_needed(app: Flask, tenant: World) -> None:
    response = app.test_client().get(URL)
    assert response.status_code == 401
    assert "needs a token" in error_of(response)


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("?page_size=1000000", "more than the most one page holds (1000)"),
        ("?page_size=0", "whole number from 1 to 1000"),
        ("?page_size=ten", "whole number from 1 to 1000"),
        ("?status=finished", "status: 'finished' is not a status"),
        ("?context=nowhere", "context: No course"),
        ("?from=2026-05-01&to=2026-04-01", "before it starts"),
        ("?from=yesterday", "not a date"),
        ("?format=pdf", "format 'pdf' is not offered"),
        ("?after=garbage", "not a cursor this API returned"),
        ("?stauts=passed", "Unknown parameter(s): stauts"),
    ],
)
def test_bad_parameters_get_400_in_json_that_names_the_problem(app: Flask, tenant: World, query: str,
                                                               words: str) -> None:
    response = get(app.test_client(), token_for(tenant.platform), query)
    assert response.status_code == 400
    assert words in error_of(response)
    assert db.session.scalars(select(ExportRun)).all() == []


def test_page_size_1000_is_the_largest_accepted(app: Flask, tenant: World) -> None:
    assert get(app.test_client(), token_for(tenant.platform), "?page_size=1000").status_code == 200


def test_a_cookie_signed_in_learner_cannot_use_the_api(launch_as: Callable[..., Any]) -> None:
    learner, _ = launch_as(sub="learner-api")
    response = learner.get(URL)
    assert response.status_code == 403 and response.mimetype == "application/json"


def test_tokens_are_made_listed_and_revoked_from_the_command_line(app: Flask, tenant: World) -> None:
    runner = app.test_cli_runner()
    made = runner.invoke(args=["tokens", "create", "--platform", str(tenant.platform.id), "--name", "HRIS",
                               "--expires-days", "30"])
    assert made.exit_code == 0, made.output
    secret = made.output.strip().splitlines()[-1]
    assert secret.startswith("rbt_") and "not shown again" in made.output
    assert get(app.test_client(), secret).status_code == 200
    listed = runner.invoke(args=["tokens", "list"])
    assert "HRIS" in listed.output and "active" in listed.output and secret not in listed.output
    token_id = db.session.scalars(select(ApiToken.id)).one()
    revoked = runner.invoke(args=["tokens", "revoke", str(token_id)])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert get(app.test_client(), secret).status_code == 401
    assert "revoked" in runner.invoke(args=["tokens", "list"]).output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["tokens", "create", "--platform", "999999", "--name", "x"], "No platform has id 999999"),
        (["tokens", "create", "--platform", "1", "--name", "x", "--role", "learner"], "Invalid value for '--role'"),
        (["tokens", "create", "--platform", "1", "--name", "x", "--expires-days", "0"], "--expires-days"),
        (["tokens", "revoke", "999999"], "No API token has the id 999999"),
    ],
)
def test_token_commands_refuse_bad_input_with_a_non_zero_exit(app: Flask, tenant: World, args: list[str],
                                                               words: str) -> None:
    if args[2] == "1":
        args = [*args[:2], "--platform", str(tenant.platform.id), *args[4:]]
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code != 0
    assert words in result.output


def test_the_api_skips_the_csrf_check_only_for_bearer_token_requests(app: Flask, tenant: World,
                                                                     make_account: Callable[..., Any]) -> None:
    from tests.conftest import DEFAULT_PASSWORD
    from tests.helpers import sign_in

    # A write endpoint of the API blueprint, as a later one would be (the API reads only today).
    @allow("hr", "admin")
    def probe() -> str:
        return "written"

    app.add_url_rule("/api/v1/_probe", endpoint="export_api.probe", view_func=probe, methods=["POST"])
    secret = token_for(tenant.platform)
    assert app.test_client().post("/api/v1/_probe", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    make_account(username="hr.cookie", role="hr", platform=tenant.platform)
    browser = app.test_client()
    sign_in(browser, "hr.cookie", DEFAULT_PASSWORD)
    refused = browser.post("/api/v1/_probe")
    assert refused.status_code == 400 and "security token" in error_of(refused)
    # A cookie session with a token header beside it is still the cookie's request: checked.
    mixed = browser.post("/api/v1/_probe", headers={"Authorization": f"Bearer {secret}"})
    assert mixed.status_code == 400 and "security token" in error_of(mixed)
