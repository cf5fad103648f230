"""The development LMS as an AGS and NRPS platform: tokens, line items, scores, memberships,
the gradebook, and the whole loop from a learner's launch to a score in its gradebook."""

from __future__ import annotations

import html
import json
import re
import threading
from collections.abc import Iterator
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import responses
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from course.database import db, utcnow
from course.grades import queue_grade
from course.models import Context, Placement, Platform, RosterMember, User
from plugin import claims as c
from plugin import nrps, outbox, web
from plugin.dev_lms import platform as lms
from plugin.dev_lms import services
from plugin.service_tokens import ServiceError, access_token, client_for
from plugin.tool_keys import Keyring, client_assertion, generate_key, sign_jwt
from tests.plugin.lms_double import register_development_lms

TOOL = "https://rebound.test"
LMS = lms.urls(TOOL)
ACME, ONBOARDING = "acme-social-101", "acme-onboarding"
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


@pytest.fixture
def dev_lms(app: Flask, course_content: None) -> Platform:
    """The development LMS registered with the tool, its JWKS read in-process."""
    return register_development_lms(app, TOOL)


@pytest.fixture
def network(app: Flask) -> Iterator[responses.RequestsMock]:
    """HTTP from the tool to the development LMS, delivered to the app in-process."""
    lms_client = app.test_client()

    def forward(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(request.url)
        answer = lms_client.open(
            parts.path + (f"?{parts.query}" if parts.query else ""), method=request.method,
            headers=dict(request.headers), data=request.body, base_url=TOOL,
        )
        headers = {k: v for k, v in answer.headers.items() if k in ("Content-Type", "Link")}
        return answer.status_code, headers, answer.get_data()

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for method in ("GET", "POST"):
            mock.add_callback(method, re.compile(re.escape(TOOL) + "/dev-lms/.*"), callback=forward)
        yield mock


def _launch(browser: FlaskClient, who: str, course: str) -> None:
    form = {
        "iss": LMS["issuer"], "target_link_uri": f"{TOOL}/lti/launch", "client_id": lms.CLIENT_ID,
        "lti_deployment_id": lms.DEPLOYMENT_ID, "login_hint": who, "lti_message_hint": lms.encode_hint({"course": course}),
    }
    login = browser.post("/lti/login", data=form, base_url=TOOL)
    assert login.status_code == 302, login.get_data(as_text=True)
    auth = browser.get(login.headers["Location"].removeprefix(TOOL), base_url=TOOL)
    fields = {k: html.unescape(v) for k, v in _HIDDEN.findall(auth.get_data(as_text=True))}
    launched = browser.post("/lti/launch", data={"id_token": fields["id_token"], "state": fields["state"]}, base_url=TOOL)
    assert launched.status_code == 303, launched.get_data(as_text=True)


def _placement(course: str) -> Placement:
    db.session.expire_all()
    placement = db.session.scalar(
        select(Placement).join(Context, Context.id == Placement.context_id).where(Context.lms_context_id == course)
    )
    assert placement is not None
    return placement


def _token(app: Flask, *scopes: str) -> str:
    platform = db.session.scalar(select(Platform).where(Platform.issuer == LMS["issuer"]))
    assert platform is not None
    web.keyring(utcnow())
    return access_token(db.session, platform, list(scopes), utcnow(), client_for(app))


def _assertion(**claims: Any) -> str:
    now = utcnow()
    base = {"iss": lms.CLIENT_ID, "sub": lms.CLIENT_ID, "aud": LMS["token"], **claims}
    return sign_jwt(base, web.keyring(now), now)


def _token_form(assertion: str, scope: str = c.SCOPE_AGS_SCORE, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials", "client_assertion_type": services.ASSERTION_TYPE,
        "client_assertion": assertion, "scope": scope, **extra,
    }


def test_a_learner_completes_and_the_gradebook_shows_the_score_once(
    app: Flask, dev_lms: Platform, network: responses.RequestsMock
) -> None:
    _launch(app.test_client(), "lena", ACME)
    placement = _placement(ACME)
    assert placement.lineitem_url == f"{TOOL}/dev-lms/ags/{ACME}/lineitems/rl-acme-rebound/lineitem?type_id=1"
    lena = db.session.scalar(select(User).where(User.sub == "dev-lena"))
    assert lena is not None
    queue_grade(db.session, placement=placement, user_id=lena.id, change_key="lena-complete", score_given=92,
                score_maximum=100, activity_progress="Completed", grading_progress="FullyGraded", now=utcnow())
    db.session.commit()

    # One session for the worker and the LMS's pages: the test holds everything in one
    # rolled-back transaction, which two interleaved sessions could not share.
    same_session = {"sessions": lambda: nullcontext(db.session)}
    report = outbox.run_once(app, clock=lambda: utcnow() + timedelta(seconds=1), **same_session)
    assert report.outcomes == {"sent": 1}
    assert outbox.run_once(app, clock=lambda: utcnow() + timedelta(hours=2), **same_session).total == 0

    page = app.test_client().get("/dev-lms/gradebook", base_url=TOOL)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "92 / 100" in text and "Completed, FullyGraded" in text and "received 1 time(s)" in text


def test_a_placement_without_a_line_item_gets_one_created_by_the_tool(
    app: Flask, dev_lms: Platform, network: responses.RequestsMock
) -> None:
    _launch(app.test_client(), "leo", ONBOARDING)
    first = _placement(ONBOARDING).lineitem_url
    assert first == f"{TOOL}/dev-lms/ags/{ONBOARDING}/lineitems/li-1/lineitem?type_id=1"
    with services.service_state(Path(app.config["REBOUND_SETTINGS"].data_dir)) as state:
        assert state["lineitems"][ONBOARDING]["li-1"]["resourceLinkId"] == "rl-onboarding-rebound"
        assert state["lineitems"][ONBOARDING]["li-1"]["tag"] == "rebound"


def test_a_trainer_visit_brings_the_courses_people_in_over_paged_memberships(
    app: Flask, dev_lms: Platform, network: responses.RequestsMock
) -> None:
    _launch(app.test_client(), "theo", ACME)
    context = _placement(ACME).context
    members = db.session.scalars(select(RosterMember).where(RosterMember.context_id == context.id)).all()
    assert sorted(m.sub for m in members) == sorted(f"dev-{p.key}" for p in lms.PEOPLE)
    assert context.roster_differences_url and "since=" in context.roster_differences_url
    gets = [call.request.url for call in network.calls if "/nrps/" in call.request.url]
    assert gets == [f"{TOOL}/dev-lms/nrps/{ACME}/memberships", f"{TOOL}/dev-lms/nrps/{ACME}/memberships?page=2"]

    # The next sync asks only for differences; the people stay.
    result = nrps.sync_roster(db.session, context, utcnow(), client_for(app))
    assert result.full is False and result.members == 0
    assert db.session.scalar(select(RosterMember).where(RosterMember.sub == "dev-lena")).status == "Active"  # type: ignore[union-attr]


def test_the_token_endpoint_refuses_what_a_strict_lms_refuses(app: Flask, dev_lms: Platform) -> None:
    browser = app.test_client()
    other = Keyring((generate_key(utcnow()),))
    cases = [
        (_token_form(_assertion(), grant_type="password"), 400, "grant_type"),
        ({**_token_form(_assertion()), "client_assertion_type": "secret"}, 400, "client_assertion_type"),
        (_token_form("not-a-jwt"), 400, "not a JWT"),
        (_token_form(client_assertion(lms.CLIENT_ID, LMS["token"], other, utcnow())), 401, "not in the tool's JWKS"),
        (_token_form(_assertion(aud="https://elsewhere.example/token")), 401, "not valid"),
        (_token_form(_assertion(iss="someone-else")), 401, "not valid"),
        (_token_form(_assertion(sub="someone-else")), 401, "sub must be the client id"),
        (_token_form(_assertion(), scope="https://example.com/everything"), 400, "unknown or missing scopes"),
    ]
    for form, status, problem in cases:
        answer = browser.post("/dev-lms/token", data=form, base_url=TOOL)
        assert answer.status_code == status, (problem, answer.get_data(as_text=True))
        assert problem in answer.get_json()["error_description"]


def test_the_token_endpoint_refuses_a_replayed_assertion(app: Flask, dev_lms: Platform) -> None:
    browser = app.test_client()
    form = _token_form(_assertion())
    first = browser.post("/dev-lms/token", data=form, base_url=TOOL)
    assert first.status_code == 200 and first.get_json()["token_type"] == "Bearer"
    again = browser.post("/dev-lms/token", data=form, base_url=TOOL)
    assert again.status_code == 401 and "replay" in again.get_json()["error_description"]


def test_services_refuse_requests_without_a_valid_token_scope_or_user_agent(
    app: Flask, dev_lms: Platform, network: responses.RequestsMock
) -> None:
    browser = app.test_client()
    url = f"/dev-lms/nrps/{ACME}/memberships"
    assert browser.get(url, base_url=TOOL).status_code == 401
    assert browser.get(url, headers={"Authorization": "Bearer forged"}, base_url=TOOL).status_code == 401
    score_only = _token(app, c.SCOPE_AGS_SCORE)
    denied = browser.get(url, headers={"Authorization": f"Bearer {score_only}"}, base_url=TOOL)
    assert denied.status_code == 403 and "insufficient_scope" in denied.get_data(as_text=True)
    nameless = browser.get(url, headers={"Authorization": f"Bearer {score_only}", "User-Agent": ""}, base_url=TOOL)
    assert nameless.status_code == 400 and "User-Agent" in nameless.get_json()["error_description"]


def test_the_scores_endpoint_refuses_bad_scores_as_moodle_and_canvas_do(
    app: Flask, dev_lms: Platform, network: responses.RequestsMock
) -> None:
    token = _token(app, c.SCOPE_AGS_SCORE)
    browser = app.test_client()
    url = f"/dev-lms/ags/{ACME}/lineitems/rl-acme-rebound/lineitem/scores?type_id=1"
    good = {"userId": "dev-lena", "scoreGiven": 5, "scoreMaximum": 10, "activityProgress": "Completed",
            "gradingProgress": "FullyGraded", "timestamp": "2026-05-01T12:00:00.000+00:00"}

    def post(body: Any, path: str = url, content_type: str = services.SCORE_TYPE) -> Any:
        return browser.post(path, data=json.dumps(body), base_url=TOOL,
                            headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})

    assert post(good).status_code == 204
    assert post(good, content_type="application/json").status_code == 415
    assert post(good, path=url.split("?")[0]).status_code == 400  # the line item's query was dropped
    assert post({**good, "userId": "stranger"}).status_code == 422
    assert post({**good, "timestamp": "2026-05-01T11:00:00.000+00:00"}).status_code == 409
    assert post({**good, "timestamp": "yesterday"}).status_code == 400
    assert post({**good, "timestamp": "2026-05-01T13:00:00"}).status_code == 400  # no offset
    assert post({**good, "scoreGiven": "five"}).status_code == 400
    assert post({**good, "gradingProgress": "Done"}).status_code == 400
    assert post([good]).status_code == 400
    assert post(good, path=url.replace("rl-acme-rebound", "nope")).status_code == 404
    assert post(good, path=url.replace(ACME, "no-course")).status_code == 404


def test_the_line_items_endpoint_checks_what_it_is_asked_to_create(
    app: Flask, dev_lms: Platform, network: responses.RequestsMock
) -> None:
    token = _token(app, c.SCOPE_AGS_LINEITEM)
    browser = app.test_client()
    url = f"/dev-lms/ags/{ONBOARDING}/lineitems"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": services.LINEITEM_TYPE}
    for body in ({"label": "x"}, {"scoreMaximum": 0, "label": "x"}, {"scoreMaximum": 10}):
        assert browser.post(url, data=json.dumps(body), headers=headers, base_url=TOOL).status_code == 400
    created = browser.post(url, data=json.dumps({"scoreMaximum": 10, "label": "Quiz"}), headers=headers, base_url=TOOL)
    assert created.status_code == 201 and created.get_json()["id"].endswith("/li-1/lineitem?type_id=1")
    item = browser.get(urlsplit(created.get_json()["id"]).path, headers=headers, base_url=TOOL)
    assert item.status_code == 200 and item.get_json()["label"] == "Quiz"
    assert browser.get(f"{url}/li-9/lineitem", headers=headers, base_url=TOOL).status_code == 404


def test_memberships_are_paged_with_rel_next_and_end_with_a_differences_link(
    app: Flask, dev_lms: Platform, network: responses.RequestsMock
) -> None:
    token = _token(app, c.SCOPE_NRPS_MEMBERSHIP_READONLY)
    browser = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    first = browser.get(f"/dev-lms/nrps/{ACME}/memberships", headers=headers, base_url=TOOL)
    assert first.status_code == 200 and first.mimetype == services.MEMBERSHIPS_TYPE
    assert len(first.get_json()["members"]) == services.PAGE_SIZE
    assert 'rel="next"' in first.headers["Link"]
    last = browser.get(f"/dev-lms/nrps/{ACME}/memberships?page=2", headers=headers, base_url=TOOL)
    assert 'rel="differences"' in last.headers["Link"] and 'rel="next"' not in last.headers["Link"]
    assert browser.get(f"/dev-lms/nrps/{ACME}/memberships?page=x", headers=headers, base_url=TOOL).status_code == 400


def test_launches_carry_the_ags_endpoint_and_nrps_claims() -> None:
    claims = services.launch_claims(TOOL, ACME, "rl-acme-rebound")
    assert claims[c.AGS_ENDPOINT]["lineitem"].endswith("/rl-acme-rebound/lineitem?type_id=1")
    assert c.SCOPE_AGS_SCORE in claims[c.AGS_ENDPOINT]["scope"]
    assert claims[c.NRPS]["context_memberships_url"] == f"{TOOL}/dev-lms/nrps/{ACME}/memberships"
    assert "lineitem" not in services.launch_claims(TOOL, ONBOARDING, "rl-onboarding-rebound")[c.AGS_ENDPOINT]


def test_the_services_state_is_one_locked_file_every_process_shares(tmp_path: Path) -> None:
    def add(n: int) -> None:
        with services.service_state(tmp_path) as state:
            state["tokens"][f"t{n}"] = {"scopes": [], "expires_at": 0}

    threads = [threading.Thread(target=add, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with services.service_state(tmp_path) as state:
        assert len(state["tokens"]) == 20


def test_a_tool_token_request_with_the_real_client_succeeds_and_a_refusal_is_explained(
    app: Flask, dev_lms: Platform, network: responses.RequestsMock
) -> None:
    assert _token(app, c.SCOPE_AGS_SCORE, c.SCOPE_NRPS_MEMBERSHIP_READONLY)
    dev_lms.client_id = "not-the-dev-client"
    db.session.flush()
    with pytest.raises(ServiceError, match="HTTP 401: invalid_client"):
        access_token(db.session, dev_lms, [c.SCOPE_AGS_LINEITEM], utcnow(), client_for(app))
