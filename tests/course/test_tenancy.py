"""Tenancy, proven route by route: nobody of one platform reads another platform's data.

Two customers share one issuer (as Canvas cloud customers do) and are told apart by client
id. Tenant A gets a learner with progress and a case attempt, and its own edited lesson and
case drafts. Then tenant B's learner, trainer and HR person open every GET route in the app's
URL map with A's ids and slugs filled in. A new route is covered the moment it is added: a
parameter this test cannot fill fails it, so whoever adds the route says what to try.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from course.access import PUBLIC, declared_roles
from course.content import content_kinds, draft_for, publish_draft, save_draft
from course.database import db, utcnow
from course.models import CaseAttempt, ContentVersion, Placement
from plugin import claims as c
from tests.conftest import ADMIN_ROLE, INSTRUCTOR_ROLE, LEARNER_ROLE
from tests.helpers import csrf_token_from
from tests.plugin.lms_double import JWKS_URL, LmsDouble, platform_jwks, platform_key

LESSON = "own-apologizing-well"
CASE = "airline-angry-passenger"
SECRET_NAME = "Zebediah Quarrington-Secret"
SECRET_TITLE = "Acme internal title 7f3a"
SECRET_DRAFT = "Acme unpublished draft 91c2"

# Routes that hold no tenant data at all: assets, health, the LTI handshake itself (its
# pages are tested for refusals in tests/plugin) and the development LMS.
NOT_TENANT_DATA = ("static", "health.", "lti.", "dev_lms.", "accounts.")


def _double(app: Flask, client_id: str) -> LmsDouble:
    key, kid = platform_key()
    double = LmsDouble(app=app, client=app.test_client(), key=key, kid=kid, client_id=client_id)
    double.jwks_documents[JWKS_URL] = platform_jwks()
    return double


@pytest.fixture
def tenants(app: Flask, course_content: None) -> dict[str, LmsDouble]:
    """Two registrations under one issuer, as two Canvas cloud customers are."""
    doubles = {"a": _double(app, "customer-a"), "b": _double(app, "customer-b")}
    fetch = doubles["a"].fetch
    app.extensions["rebound.http_fetch"] = fetch
    for double in doubles.values():
        double.register()
    return doubles


def _launch(double: LmsDouble, app: Flask, *, sub: str, role: str, link: str, name: str) -> tuple[FlaskClient, int]:
    browser = app.test_client()
    double.client = browser
    response = double.launch(
        sub=sub, name=name,
        **{c.ROLES: [role], c.RESOURCE_LINK: {"id": link, "title": "Rebound"},
           c.CONTEXT: {"id": f"course-{link}", "title": f"Course {link}"}},
    )
    assert response.status_code == 303, response.get_data(as_text=True)
    placement = db.session.scalar(select(Placement).where(Placement.resource_link_id == link))
    assert placement is not None
    return browser, placement.id


def _publish_own_copy(platform_id: int, kind: str, slug: str, edit: Callable[[str], str]) -> ContentVersion:
    now = utcnow()
    draft = draft_for(db.session, platform_id, kind, slug, by="Acme trainer", now=now)
    draft = save_draft(db.session, draft, edit(draft.source), expected_revision=draft.revision, by="t", now=now)
    parsed, problems = content_kinds()[kind].parse(draft.source, f"{slug}.yaml")
    assert parsed is not None, problems
    return publish_draft(db.session, draft, parsed, expected_revision=draft.revision, by="t", now=now)


@pytest.fixture
def tenant_a_data(app: Flask, tenants: dict[str, LmsDouble]) -> dict[str, Any]:
    """Tenant A: a learner with progress and an attempt, its own lesson version and drafts."""
    learner, placement_id = _launch(tenants["a"], app, sub="a-learner", role=LEARNER_ROLE, link="a-link",
                                    name=SECRET_NAME)
    learner.get(f"/p/{placement_id}/lessons/{LESSON}")
    intro = learner.get(f"/p/{placement_id}/cases/{CASE}").get_data(as_text=True)
    started = learner.post(f"/p/{placement_id}/cases/{CASE}/start", data={"csrf_token": csrf_token_from(intro)})
    assert started.status_code == 303
    attempt = db.session.scalar(select(CaseAttempt).where(CaseAttempt.placement_id == placement_id))
    assert attempt is not None

    platform_id = db.session.get(Placement, placement_id).platform_id  # type: ignore[union-attr]
    version = _publish_own_copy(
        platform_id, "lesson", LESSON, lambda text: re.sub(r"^title: .*$", f"title: {SECRET_TITLE}", text, count=1,
                                                          flags=re.M),
    )
    case_draft = draft_for(db.session, platform_id, "case", CASE, by="Acme trainer", now=utcnow())
    case_draft.source = case_draft.source.replace("title:", f"# {SECRET_DRAFT}\ntitle:", 1)
    db.session.commit()
    return {"placement_id": placement_id, "attempt_id": attempt.id, "version_id": version.id}


def _values(data: dict[str, Any]) -> dict[str, list[Any]]:
    """What to try for each URL parameter: tenant A's ids and slugs."""
    return {
        "placement_id": [data["placement_id"]],
        "attempt_id": [data["attempt_id"]],
        "version_id": [data["version_id"]],
        "slug": [LESSON, CASE],
    }


def _urls(app: Flask, values: dict[str, list[Any]]) -> Iterator[tuple[str, str]]:
    for rule in app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()) or rule.endpoint.startswith(NOT_TENANT_DATA):
            continue
        roles = declared_roles(app, rule.endpoint) or frozenset()
        if PUBLIC in roles:
            continue
        missing = [name for name in rule.arguments if name not in values]
        assert not missing, f"{rule.rule}: add values to try for {missing} in tests/course/test_tenancy.py"
        combos: list[dict[str, Any]] = [{}]
        for name in sorted(rule.arguments):
            combos = [{**combo, name: value} for combo in combos for value in values[name]]
        for combo in combos:
            with app.test_request_context():
                from flask import url_for

                yield rule.endpoint, url_for(rule.endpoint, **combo)


def test_no_route_shows_one_tenant_the_data_of_another(
    app: Flask, tenants: dict[str, LmsDouble], tenant_a_data: dict[str, Any]
) -> None:
    outsiders = {
        "learner": _launch(tenants["b"], app, sub="b-learner", role=LEARNER_ROLE, link="b-link", name="Bea")[0],
        "trainer": _launch(tenants["b"], app, sub="b-trainer", role=INSTRUCTOR_ROLE, link="b-link", name="Bo")[0],
        "hr": _launch(tenants["b"], app, sub="b-hr", role=ADMIN_ROLE, link="b-link", name="Bianca")[0],
    }
    checked = 0
    for endpoint, url in _urls(app, _values(tenant_a_data)):
        for who, browser in outsiders.items():
            response = browser.get(url)
            body = response.get_data(as_text=True)
            for secret in (SECRET_NAME, SECRET_TITLE, SECRET_DRAFT):
                assert secret not in body, f"{who} of tenant B read {secret!r} at {url} ({endpoint})"
            if "placement_id" in url_parameters(app, endpoint):
                assert response.status_code in (401, 403, 404), f"{who} of tenant B got {response.status_code} at {url}"
            checked += 1
    assert checked > 20


def test_tenant_a_itself_sees_its_own_data(app: Flask, tenants: dict[str, LmsDouble], tenant_a_data: dict[str, Any]) -> None:
    """The counter-check: the secrets above are really on A's pages, so their absence means something."""
    trainer, _ = _launch(tenants["a"], app, sub="a-trainer", role=INSTRUCTOR_ROLE, link="a-link", name="Ann")
    assert SECRET_TITLE in trainer.get("/trainer/lessons/").get_data(as_text=True)
    assert SECRET_DRAFT in trainer.get(f"/trainer/cases/{CASE}/edit").get_data(as_text=True)
    analytics = trainer.get(f"/trainer/cases/{CASE}/analytics")
    assert analytics.status_code == 200


def url_parameters(app: Flask, endpoint: str) -> set[str]:
    """The parameter names of an endpoint's rules."""
    return {name for rule in app.url_map.iter_rules(endpoint) for name in rule.arguments}
