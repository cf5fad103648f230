"""Assignment and Grade Services: score documents, the scores URL, and line items Rebound creates."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
import responses
from flask import Flask

from course.database import db
from course.models import Context, Placement, Platform
from plugin import ags
from plugin import claims as c
from plugin.service_tokens import ServiceClient, ServiceError, client_for, ensure_signing_key

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
LINEITEMS = "https://lms.example.edu/api/lti/courses/7/line_items?type_id=3"


@pytest.fixture
def services(app: Flask) -> ServiceClient:
    client = client_for(app)
    ensure_signing_key(db.session, client, NOW)
    return client


@pytest.fixture
def placement(make_platform) -> Placement:  # type: ignore[no-untyped-def]
    platform: Platform = make_platform()
    context = Context(platform_id=platform.id, deployment_id=platform.deployments[0].id, lms_context_id="c-7")
    db.session.add(context)
    db.session.flush()
    placement = Placement(
        platform_id=platform.id, context_id=context.id, resource_link_id="rl-7", title="Own it", lineitems_url=LINEITEMS
    )
    db.session.add(placement)
    db.session.flush()
    return placement


def token_for(placement: Placement) -> None:
    platform = db.session.get(Platform, placement.platform_id)
    assert platform is not None
    responses.post(platform.auth_token_url, json={"access_token": "tok", "token_type": "Bearer", "expires_in": 3600})


def test_score_document_is_exactly_what_ags_expects() -> None:
    document = ags.score_document(
        user_sub="user-42", score_given=8.5, score_maximum=10.0, activity_progress="Completed",
        grading_progress="FullyGraded", scored_at=datetime(2026, 5, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2))),
        comment="Passed all cases",
    )
    assert json.dumps(document, sort_keys=True) == json.dumps(
        {
            "userId": "user-42",
            "scoreGiven": 8.5,
            "scoreMaximum": 10.0,
            "activityProgress": "Completed",
            "gradingProgress": "FullyGraded",
            "timestamp": "2026-05-01T12:00:00.123+00:00",
            "comment": "Passed all cases",
        },
        sort_keys=True,
    )


def test_score_document_leaves_out_an_empty_comment() -> None:
    document = ags.score_document(
        user_sub="u", score_given=0, score_maximum=1, activity_progress="Started",
        grading_progress="NotReady", scored_at=NOW,
    )
    assert "comment" not in document
    assert document["timestamp"] == "2026-05-01T12:00:00.000+00:00"


def test_a_naive_timestamp_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ags.timestamp(datetime(2026, 5, 1, 12, 0))


@pytest.mark.parametrize(
    ("lineitem", "scores"),
    [
        ("https://lms.example.edu/lineitems/3", "https://lms.example.edu/lineitems/3/scores"),
        ("https://lms.example.edu/lineitems/3/", "https://lms.example.edu/lineitems/3/scores"),
        (
            "https://moodle.example.edu/mod/lti/services.php/2/lineitems/3/lineitem?type_id=1",
            "https://moodle.example.edu/mod/lti/services.php/2/lineitems/3/lineitem/scores?type_id=1",
        ),
        (
            "https://canvas.example.edu/api/lti/courses/1/line_items/9?type_id=4&x=y",
            "https://canvas.example.edu/api/lti/courses/1/line_items/9/scores?type_id=4&x=y",
        ),
    ],
)
def test_scores_url_keeps_the_line_items_query(lineitem: str, scores: str) -> None:
    assert ags.scores_url(lineitem) == scores


@responses.activate
def test_post_score_sends_the_score_media_type_bearer_token_and_user_agent(app: Flask, services: ServiceClient) -> None:
    responses.post("https://lms.example.edu/lineitems/3/scores?type_id=1", status=200)
    document = {"userId": "u", "scoreGiven": 1}
    ags.post_score(services, "https://lms.example.edu/lineitems/3?type_id=1", document, "tok")
    request = responses.calls[0].request
    assert request.headers["Content-Type"] == ags.SCORE_TYPE
    assert request.headers["Authorization"] == "Bearer tok"
    assert request.headers["User-Agent"].startswith("Rebound/")
    assert json.loads(request.body) == document


@responses.activate
def test_post_score_refusal_carries_the_status_and_the_lms_words(services: ServiceClient) -> None:
    responses.post("https://lms.example.edu/lineitems/3/scores", status=422,
                   json={"errors": {"type": "invalid"}, "message": "User not found in course or is not a student"})
    with pytest.raises(ServiceError) as raised:
        ags.post_score(services, "https://lms.example.edu/lineitems/3", {}, "tok")
    assert raised.value.status == 422
    assert "User not found in course" in str(raised.value)


@responses.activate
def test_a_line_item_is_created_when_the_lms_offers_only_a_line_items_url(
    placement: Placement, services: ServiceClient
) -> None:
    token_for(placement)
    responses.get("https://lms.example.edu/api/lti/courses/7/line_items", json=[])
    created = "https://lms.example.edu/api/lti/courses/7/line_items/55"
    responses.post(LINEITEMS, status=201, json={"id": created, "scoreMaximum": 100, "label": "Own it"})

    assert ags.ensure_lineitem(db.session, placement, [c.SCOPE_AGS_LINEITEM, c.SCOPE_AGS_SCORE], NOW, services) == created
    assert placement.lineitem_url == created
    token, lookup, create = responses.calls
    assert lookup.request.url == LINEITEMS + "&resource_link_id=rl-7&tag=rebound"
    assert token.request.method == "POST"
    assert json.loads(create.request.body) == {
        "scoreMaximum": 100.0, "label": "Own it", "resourceLinkId": "rl-7", "tag": "rebound"
    }
    assert create.request.headers["Content-Type"] == ags.LINEITEM_TYPE


@responses.activate
def test_a_line_item_rebound_made_before_is_reused_not_duplicated(placement: Placement, services: ServiceClient) -> None:
    token_for(placement)
    existing = "https://lms.example.edu/api/lti/courses/7/line_items/12"
    responses.get(
        "https://lms.example.edu/api/lti/courses/7/line_items",
        json=[
            {"id": "https://lms.example.edu/api/lti/courses/7/line_items/11", "tag": "rebound", "resourceLinkId": "other"},
            {"id": existing, "tag": "rebound", "resourceLinkId": "rl-7"},
        ],
    )
    assert ags.ensure_lineitem(db.session, placement, [c.SCOPE_AGS_LINEITEM], NOW, services) == existing
    assert [call.request.method for call in responses.calls] == ["POST", "GET"]  # the token, then the lookup


@responses.activate
def test_no_line_item_is_created_without_the_lineitem_scope_or_when_one_exists(
    placement: Placement, services: ServiceClient
) -> None:
    assert ags.ensure_lineitem(db.session, placement, [c.SCOPE_AGS_SCORE], NOW, services) is None
    placement.lineitem_url = "https://lms.example.edu/api/lti/courses/7/line_items/1"
    assert ags.ensure_lineitem(db.session, placement, [c.SCOPE_AGS_LINEITEM], NOW, services) is None
    assert len(responses.calls) == 0


@pytest.mark.parametrize(("body", "problem"), [("<html>", "not JSON"), ('{"items": []}', "not a list")])
@responses.activate
def test_a_malformed_line_items_answer_is_a_clear_error_and_creates_nothing(
    placement: Placement, services: ServiceClient, body: str, problem: str
) -> None:
    token_for(placement)
    responses.get("https://lms.example.edu/api/lti/courses/7/line_items", body=body, content_type="application/json")
    with pytest.raises(ServiceError, match=problem):
        ags.ensure_lineitem(db.session, placement, [c.SCOPE_AGS_LINEITEM], NOW, services)
    assert placement.lineitem_url is None
    assert [call.request.method for call in responses.calls] == ["POST", "GET"]  # no line item was created


@responses.activate
def test_a_created_line_item_without_an_id_is_a_clear_error_and_stores_nothing(
    placement: Placement, services: ServiceClient
) -> None:
    token_for(placement)
    responses.get("https://lms.example.edu/api/lti/courses/7/line_items", json=[])
    responses.post(LINEITEMS, status=201, json={"label": "Own it"})
    with pytest.raises(ServiceError, match="has no id URL"):
        ags.ensure_lineitem(db.session, placement, [c.SCOPE_AGS_LINEITEM], NOW, services)
    assert placement.lineitem_url is None


def test_a_launch_creates_the_line_item_and_an_lms_failure_does_not_fail_the_launch(
    app: Flask, lti_platform, course_content: None  # type: ignore[no-untyped-def]
) -> None:
    from tests.plugin.lms_double import ISSUER

    lineitems = f"{ISSUER}/lineitems"
    ags_claim = {"scope": [c.SCOPE_AGS_LINEITEM, c.SCOPE_AGS_SCORE], "lineitems": lineitems}
    with responses.RequestsMock() as mock:
        mock.post(f"{ISSUER}/token", status=500)
        placement = _launch_with(app, lti_platform, ags_claim)
    assert placement.lineitem_url is None  # logged; the learner is in the course all the same

    with responses.RequestsMock() as mock:
        mock.post(f"{ISSUER}/token", json={"access_token": "t", "token_type": "Bearer", "expires_in": 60})
        mock.get(lineitems, json=[])
        mock.post(lineitems, status=201, json={"id": f"{ISSUER}/lineitems/1"})
        placement = _launch_with(app, lti_platform, ags_claim)
    db.session.refresh(placement)
    assert placement.lineitem_url == f"{ISSUER}/lineitems/1"


def _launch_with(app: Flask, lti_platform, ags_claim: dict) -> Placement:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from tests.conftest import LEARNER_ROLE

    lti_platform.client = app.test_client()
    response = lti_platform.launch(**{
        c.ROLES: [LEARNER_ROLE], c.RESOURCE_LINK: {"id": "link-ags", "title": "Rebound"},
        c.CONTEXT: {"id": "course-ags", "title": "Acme"}, c.AGS_ENDPOINT: ags_claim,
    })
    assert response.status_code == 303, response.get_data(as_text=True)
    placement = db.session.scalar(select(Placement).where(Placement.resource_link_id == "link-ags"))
    assert placement is not None
    return placement
