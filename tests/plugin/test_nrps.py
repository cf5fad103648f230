"""Rosters from NRPS: paging, differences, absent members, malformed answers and when syncs run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import responses
from flask import Flask
from sqlalchemy import select

from course.config import ConfigError, load_settings
from course.database import db
from course.models import Context, Platform, RosterMember
from plugin import claims as c
from plugin import nrps
from plugin.service_tokens import ServiceClient, ServiceError, client_for, ensure_signing_key

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
MEMBERSHIPS = "https://lms.example.edu/api/lti/courses/7/names_and_roles"
DIFFERENCES = "https://lms.example.edu/api/lti/courses/7/names_and_roles?since=2026-05-01T12:00:00Z"
LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"


def person(sub: str, status: str | None = None, **fields: Any) -> dict[str, Any]:
    member = {"user_id": sub, "name": f"Person {sub}", "email": f"{sub}@example.com", "roles": [LEARNER], **fields}
    if status:
        member["status"] = status
    return member


def page(members: list[dict[str, Any]], **links: str) -> dict[str, Any]:
    header = ", ".join(f'<{url}>; rel="{rel}"' for rel, url in links.items())
    return {
        "json": {"id": "x", "context": {"id": "c-7"}, "members": members},
        "headers": {"Link": header} if header else {},
        "content_type": nrps.MEMBERSHIPS_TYPE,
    }


@pytest.fixture
def services(app: Flask) -> ServiceClient:
    client = client_for(app)
    ensure_signing_key(db.session, client, NOW)
    return client


@pytest.fixture
def context(make_platform) -> Context:  # type: ignore[no-untyped-def]
    platform: Platform = make_platform()
    context = Context(
        platform_id=platform.id, deployment_id=platform.deployments[0].id, lms_context_id="c-7",
        memberships_url=MEMBERSHIPS,
    )
    db.session.add(context)
    db.session.flush()
    return context


@pytest.fixture
def lms(context: Context) -> Iterator[responses.RequestsMock]:
    platform = db.session.get(Platform, context.platform_id)
    assert platform is not None
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(platform.auth_token_url, json={"access_token": "tok", "token_type": "Bearer", "expires_in": 3600})
        yield mock


def roster(context: Context) -> dict[str, str]:
    db.session.expire_all()
    return {m.sub: m.status for m in db.session.scalars(select(RosterMember).where(RosterMember.context_id == context.id))}


def three_pages(mock: responses.RequestsMock) -> None:
    mock.get(MEMBERSHIPS, **page([person("a"), person("b")], next=MEMBERSHIPS + "?page=2"))
    mock.get(MEMBERSHIPS + "?page=2", **page([person("c"), person("d", "Inactive")], next=MEMBERSHIPS + "?page=3"))
    mock.get(MEMBERSHIPS + "?page=3", **page([person("e")], differences=DIFFERENCES))


def test_a_full_sync_pages_through_rel_next_and_stores_every_member(
    context: Context, lms: responses.RequestsMock, services: ServiceClient
) -> None:
    three_pages(lms)
    result = nrps.sync_roster(db.session, context, NOW, services)

    assert (result.full, result.pages, result.members, result.added) == (True, 3, 5, 5)
    assert roster(context) == {"a": "Active", "b": "Active", "c": "Active", "d": "Inactive", "e": "Active"}
    gets = [call for call in lms.calls if call.request.method == "GET"]
    assert [call.request.url for call in gets] == [MEMBERSHIPS, MEMBERSHIPS + "?page=2", MEMBERSHIPS + "?page=3"]
    assert all(call.request.headers["Accept"] == nrps.MEMBERSHIPS_TYPE for call in gets)
    assert all(call.request.headers["Authorization"] == "Bearer tok" for call in gets)
    assert context.roster_differences_url == DIFFERENCES
    assert context.roster_synced_at == NOW
    member = db.session.scalar(select(RosterMember).where(RosterMember.sub == "a"))
    assert member is not None and (member.name, member.email, member.roles) == ("Person a", "a@example.com", [LEARNER])


def test_the_next_sync_asks_only_for_differences_and_applies_their_statuses(
    context: Context, lms: responses.RequestsMock, services: ServiceClient
) -> None:
    three_pages(lms)
    nrps.sync_roster(db.session, context, NOW, services)
    later = DIFFERENCES.replace("12:00", "13:00")
    lms.get(DIFFERENCES, **page([person("b", "Deleted"), person("f"), person("a", "Inactive")], differences=later))

    result = nrps.sync_roster(db.session, context, NOW + timedelta(hours=1), services)
    assert result.full is False and result.removed == 0
    assert lms.calls[-1].request.url == DIFFERENCES
    # Members the differences leave out are unchanged, not removed.
    assert roster(context) == {
        "a": "Inactive", "b": "Deleted", "c": "Active", "d": "Inactive", "e": "Active", "f": "Active"
    }
    assert context.roster_differences_url == later


def test_members_missing_from_a_full_sync_are_marked_deleted_but_kept(
    context: Context, lms: responses.RequestsMock, services: ServiceClient
) -> None:
    lms.get(MEMBERSHIPS, **page([person("a"), person("b"), person("c")]))
    nrps.sync_roster(db.session, context, NOW, services)
    lms.replace(responses.GET, MEMBERSHIPS, **page([person("a")]))

    result = nrps.sync_roster(db.session, context, NOW + timedelta(hours=2), services)
    assert result.removed == 2
    assert roster(context) == {"a": "Active", "b": "Deleted", "c": "Deleted"}
    assert context.roster_differences_url is None  # none offered: the next sync is a full one again


def test_a_differences_link_the_lms_no_longer_honours_falls_back_to_a_full_sync(
    context: Context, lms: responses.RequestsMock, services: ServiceClient
) -> None:
    context.roster_differences_url = DIFFERENCES
    lms.get(DIFFERENCES, status=410)
    lms.get(MEMBERSHIPS, **page([person("a")]))
    result = nrps.sync_roster(db.session, context, NOW, services)
    assert result.full is True and roster(context) == {"a": "Active"}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("<html>Login</html>", "not JSON"),
        (json.dumps([]), "not an object"),
        (json.dumps({"members": "everyone"}), "has no members list"),
        (json.dumps({"members": [{"name": "No Id"}]}), "a member has no user_id"),
        (json.dumps({"members": ["a"]}), "a member is not a JSON object"),
        (json.dumps({"members": [{"user_id": "x", "status": "Gone"}]}), "status 'Gone'"),
        (json.dumps({"members": [{"user_id": "x", "roles": "Learner"}]}), "roles that are not a list"),
    ],
)
def test_malformed_nrps_json_is_a_clear_error_and_the_roster_is_kept(
    context: Context, lms: responses.RequestsMock, services: ServiceClient, body: str, problem: str
) -> None:
    three_pages(lms)
    nrps.sync_roster(db.session, context, NOW, services)
    before = roster(context)
    # The first page is fine; the broken one is the second, so nothing may be written at all.
    lms.get(DIFFERENCES, **page([person("z")], next=DIFFERENCES + "&page=2"))
    lms.get(DIFFERENCES + "&page=2", body=body, content_type="application/json")

    with pytest.raises(ServiceError, match=problem):
        nrps.sync_roster(db.session, context, NOW + timedelta(hours=1), services)
    assert roster(context) == before
    assert context.roster_differences_url == DIFFERENCES and context.roster_synced_at == NOW


@pytest.mark.parametrize("failure", [500, requests.exceptions.ReadTimeout()])
def test_a_page_that_fails_mid_sync_changes_nothing(
    context: Context, lms: responses.RequestsMock, services: ServiceClient, failure: Any
) -> None:
    lms.get(MEMBERSHIPS, **page([person("a")], next=MEMBERSHIPS + "?page=2"))
    if isinstance(failure, int):
        lms.get(MEMBERSHIPS + "?page=2", status=failure)
    else:
        lms.get(MEMBERSHIPS + "?page=2", body=failure)
    with pytest.raises(ServiceError):
        nrps.sync_roster(db.session, context, NOW, services)
    assert roster(context) == {} and context.roster_synced_at is None


def test_a_next_link_to_another_host_is_not_followed_with_the_token(
    context: Context, lms: responses.RequestsMock, services: ServiceClient
) -> None:
    lms.get(MEMBERSHIPS, **page([person("a")], next="https://collector.example.net/steal"))
    with pytest.raises(ServiceError, match="not followed"):
        nrps.sync_roster(db.session, context, NOW, services)
    assert all("collector" not in call.request.url for call in lms.calls)


def test_pages_that_point_back_at_themselves_are_refused(
    context: Context, lms: responses.RequestsMock, services: ServiceClient
) -> None:
    lms.get(MEMBERSHIPS, **page([person("a")], next=MEMBERSHIPS))
    with pytest.raises(ServiceError, match="do not end"):
        nrps.sync_roster(db.session, context, NOW, services)


def test_a_context_without_nrps_cannot_be_synced(context: Context, services: ServiceClient) -> None:
    context.memberships_url = None
    with pytest.raises(ServiceError, match="no membership service"):
        nrps.sync_roster(db.session, context, NOW, services)
    assert nrps.sync_if_stale(db.session, context, NOW, client=services, interval=timedelta(hours=1)) is None


def test_sync_if_stale_syncs_at_most_once_per_interval(
    context: Context, lms: responses.RequestsMock, services: ServiceClient
) -> None:
    lms.get(MEMBERSHIPS, **page([person("a")]))
    hour = timedelta(hours=1)
    assert nrps.sync_if_stale(db.session, context, NOW, client=services, interval=hour) is not None
    assert nrps.sync_if_stale(db.session, context, NOW + timedelta(minutes=59), client=services, interval=hour) is None
    assert nrps.sync_if_stale(db.session, context, NOW + hour, client=services, interval=hour) is not None
    assert len([call for call in lms.calls if call.request.method == "GET"]) == 2


def test_sync_if_stale_logs_an_lms_failure_and_leaves_the_roster(
    context: Context, lms: responses.RequestsMock, services: ServiceClient, caplog: pytest.LogCaptureFixture
) -> None:
    lms.get(MEMBERSHIPS, status=503)
    assert nrps.sync_if_stale(db.session, context, NOW, client=services, interval=timedelta(hours=1)) is None
    assert "roster sync failed" in caplog.text
    assert context.roster_synced_at is None


def test_sync_if_stale_reads_the_interval_from_the_setting(
    app_factory, database_url: str  # type: ignore[no-untyped-def]
) -> None:
    application = app_factory(DATABASE_URL=database_url, ROSTER_SYNC_MINUTES="15")
    with application.app_context():
        assert nrps.roster_sync_interval() == timedelta(minutes=15)


def test_roster_sync_minutes_defaults_to_an_hour_and_refuses_nonsense() -> None:
    assert load_settings({}, make_secret=lambda _: "s" * 40).roster_sync_minutes == 60
    for value in ("0", "soon"):
        with pytest.raises(ConfigError, match="REBOUND_ROSTER_SYNC_MINUTES"):
            load_settings({"REBOUND_ROSTER_SYNC_MINUTES": value}, make_secret=lambda _: "s" * 40)


def _launch(app: Flask, lti_platform: Any, role: str) -> Context:
    lti_platform.client = app.test_client()
    response = lti_platform.launch(**{
        c.ROLES: [role], c.RESOURCE_LINK: {"id": "link-nrps", "title": "Rebound"},
        c.CONTEXT: {"id": "course-nrps", "title": "Acme"},
        c.NRPS: {"context_memberships_url": "https://lms.example.edu/nrps/course-nrps", "service_versions": ["2.0"]},
    })
    assert response.status_code == 303, response.get_data(as_text=True)
    found = db.session.scalar(select(Context).where(Context.lms_context_id == "course-nrps"))
    assert found is not None
    return found


def test_a_trainer_launch_syncs_the_roster_and_a_failing_lms_never_fails_the_launch(
    app: Flask, lti_platform: Any, course_content: None
) -> None:
    from tests.conftest import INSTRUCTOR_ROLE

    with responses.RequestsMock() as mock:
        mock.post("https://lms.example.edu/token", json={"access_token": "t", "token_type": "Bearer"})
        mock.get("https://lms.example.edu/nrps/course-nrps", body="{broken")
        context = _launch(app, lti_platform, INSTRUCTOR_ROLE)  # asserts the launch succeeded
    assert roster(context) == {}

    with responses.RequestsMock() as mock:
        mock.get("https://lms.example.edu/nrps/course-nrps", **page([person("a"), person("b")]))
        context = _launch(app, lti_platform, INSTRUCTOR_ROLE)
    assert roster(context) == {"a": "Active", "b": "Active"}


def test_a_learner_launch_does_not_sync_the_roster(app: Flask, lti_platform: Any, course_content: None) -> None:
    from tests.conftest import LEARNER_ROLE

    with responses.RequestsMock() as mock:  # any call to the LMS would fail this test
        context = _launch(app, lti_platform, LEARNER_ROLE)
        assert len(mock.calls) == 0
    assert context.roster_synced_at is None


def test_roster_sync_command_reports_each_context_and_fails_when_one_fails(
    app: Flask, context: Context, lms: responses.RequestsMock
) -> None:
    db.session.commit()
    lms.get(MEMBERSHIPS, **page([person("a"), person("b")]))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["roster", "sync", "--context", str(context.id)])
    assert result.exit_code == 0, result.output
    assert "full sync, 1 page(s): 2 member(s) reported, 2 added" in result.output

    lms.get(DIFFERENCES, status=500)
    context.roster_differences_url = DIFFERENCES
    db.session.commit()
    failed = runner.invoke(args=["roster", "sync", "--platform", str(context.platform_id)])
    assert failed.exit_code == 1
    assert "not synced, roster unchanged" in failed.output and "HTTP 500" in failed.output
    assert roster(context) == {"a": "Active", "b": "Active"}


def test_roster_sync_command_explains_when_nothing_matches(app: Flask, context: Context) -> None:
    runner = app.test_cli_runner()
    nothing = runner.invoke(args=["roster", "sync", "--context", "999999"])
    assert nothing.exit_code == 1 and "No course with an LMS roster service" in nothing.output
    unknown = runner.invoke(args=["roster", "sync", "--platform", "no-such-platform"])
    assert unknown.exit_code == 1
