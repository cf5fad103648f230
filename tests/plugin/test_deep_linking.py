"""Deep Linking 2.0, tool side: a trainer picks what to place and Rebound answers the LMS with
a signed LtiDeepLinkingResponse whose links later launch onto the chosen item."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import jwt
import pytest
from flask import Flask
from sqlalchemy import select

from course.database import db
from course.models import Placement
from plugin import claims as c
from plugin.models import Launch
from tests.conftest import INSTRUCTOR_ROLE, LEARNER_ROLE
from tests.helpers import csrf_token_from
from tests.plugin.lms_double import CLIENT_ID, DEPLOYMENT_ID, ISSUER, TOOL

SETTINGS = {
    "deep_link_return_url": "https://lms.example.edu/deep-links/return",
    "accept_types": ["ltiResourceLink"],
    "accept_presentation_document_targets": ["iframe", "window"],
    "accept_multiple": False,
    "accept_lineitem": True,
    "data": "platform-state-7",
}
_JWT = re.compile(r'name="JWT" value="([^"]+)"')


@pytest.fixture
def deep_link(app: Flask, lti_platform: Any, course_content: None) -> Callable[..., tuple[Any, str]]:
    """Factory: a browser launched with an LtiDeepLinkingRequest; returns (client, landing URL)."""

    def launch(role: str = INSTRUCTOR_ROLE, settings: dict[str, Any] | None = None, sub: str = "trainer-1"):  # type: ignore[no-untyped-def]
        browser = app.test_client()
        lti_platform.client = browser
        response = lti_platform.launch(
            sub=sub,
            **{c.MESSAGE_TYPE: c.DEEP_LINKING_REQUEST, c.RESOURCE_LINK: None, c.ROLES: [role],
               c.DEEP_LINKING_SETTINGS: settings or SETTINGS},
        )
        assert response.status_code == 303, response.get_data(as_text=True)
        landing = browser.get(response.headers["Location"])
        assert landing.status_code == 303
        return browser, landing.headers["Location"]

    return launch


def _open_picker(deep_link: Callable[..., tuple[Any, str]], **options: Any) -> tuple[Any, str]:
    browser, picker_url = deep_link(**options)
    page = browser.get(picker_url)
    assert page.status_code == 200, page.get_data(as_text=True)
    return browser, page.get_data(as_text=True)


def _pick(browser: Any, page: str, **fields: Any) -> Any:
    launch_id = re.search(r'name="launch" type="hidden" value="(\d+)"', page)
    assert launch_id
    data = {"csrf_token": csrf_token_from(page), "launch": launch_id.group(1), "add": "1", **fields}
    return browser.post("/lti/deep-link", data=data)


def _verified(app: Flask, browser: Any, answer: Any) -> dict[str, Any]:
    """The response JWT, verified with the tool's public key from /lti/jwks."""
    assert answer.status_code == 200, answer.get_data(as_text=True)
    token = _JWT.search(answer.get_data(as_text=True))
    assert token
    keys = jwt.PyJWKSet.from_dict(browser.get("/lti/jwks").get_json())
    kid = jwt.get_unverified_header(token.group(1))["kid"]
    key = next(k for k in keys.keys if k.key_id == kid)
    return jwt.decode(token.group(1), key.key, algorithms=["RS256"], audience=ISSUER, issuer=CLIENT_ID)


def test_a_trainer_lands_on_a_picker_listing_course_modules_lessons_and_cases(deep_link: Any) -> None:
    _, page = _open_picker(deep_link)
    assert "Add Rebound to your LMS course" in page
    assert 'value="course"' in page
    for target in ("module:recognise", "module:own", "module:learn", "case:pizza-wrong-crust",
                   "case:airline-angry-passenger"):
        assert f'value="{target}"' in page
    assert len(re.findall(r'value="lesson:', page)) == 9
    # accept_multiple is false: one item at a time.
    assert 'type="radio" name="item"' in page and 'type="checkbox" name="item"' not in page


def test_the_signed_response_has_the_exact_claims_a_line_item_and_custom_parameters(
    app: Flask, deep_link: Any
) -> None:
    browser, page = _open_picker(deep_link)
    answer = _pick(browser, page, item="case:pizza-wrong-crust", title="Pizza apology practice",
                   cases_mode="only", case="pizza-wrong-crust", pass_mark="80")
    html = answer.get_data(as_text=True)
    assert f'action="{SETTINGS["deep_link_return_url"]}"' in html and 'id="autopost"' in html
    assert "<script>" not in html  # the strict CSP allows no inline script
    claims = _verified(app, browser, answer)
    assert claims["iss"] == CLIENT_ID and claims["aud"] == ISSUER
    assert claims["nonce"] and claims["exp"] > claims["iat"]
    assert claims[c.MESSAGE_TYPE] == "LtiDeepLinkingResponse"
    assert claims[c.VERSION] == "1.3.0"
    assert claims[c.DEPLOYMENT_ID] == DEPLOYMENT_ID
    assert claims[c.DL_DATA] == "platform-state-7"
    assert claims[c.DL_CONTENT_ITEMS] == [
        {
            "type": "ltiResourceLink",
            "title": "Pizza apology practice",
            "url": f"{TOOL}/lti/launch",
            "custom": {
                "rebound_target": "case:pizza-wrong-crust",
                "rebound_rule": json.dumps(
                    {"counted_cases": ["pizza-wrong-crust"], "pass_mark": 80}, sort_keys=True
                ),
            },
            "lineItem": {"scoreMaximum": 100, "label": "Pizza apology practice",
                         "resourceId": "case:pizza-wrong-crust", "tag": "rebound"},
            "iframe": {"height": 900},
        }
    ]


def test_the_default_rule_sends_no_rule_and_no_line_item_when_the_lms_refuses_them(
    app: Flask, deep_link: Any
) -> None:
    settings = {**SETTINGS, "accept_lineitem": False, "accept_presentation_document_targets": ["window"]}
    del settings["data"]
    browser, page = _open_picker(deep_link, settings=settings)
    claims = _verified(app, browser, _pick(browser, page, item="module:own"))
    assert c.DL_DATA not in claims  # echoed only when sent
    (item,) = claims[c.DL_CONTENT_ITEMS]
    assert item["title"] == "Own"
    assert item["custom"] == {"rebound_target": "module:own"}
    assert "lineItem" not in item and item["window"] == {"targetName": "rebound"}


def test_several_items_when_the_lms_accepts_multiple(app: Flask, deep_link: Any) -> None:
    browser, page = _open_picker(deep_link, settings={**SETTINGS, "accept_multiple": True})
    assert 'type="checkbox" name="item"' in page
    claims = _verified(app, browser, _pick(browser, page, item=["course", "case:ceo-spill-remark"]))
    assert [i["custom"]["rebound_target"] for i in claims[c.DL_CONTENT_ITEMS]] == ["course", "case:ceo-spill-remark"]


def test_several_items_are_refused_when_the_lms_accepts_one(deep_link: Any) -> None:
    browser, page = _open_picker(deep_link)
    answer = _pick(browser, page, item=["course", "module:own"])
    assert answer.status_code == 400
    assert "accepts one item at a time" in answer.get_data(as_text=True)


def test_cancel_returns_an_empty_answer(app: Flask, deep_link: Any) -> None:
    browser, page = _open_picker(deep_link)
    launch_id = re.search(r'name="launch" type="hidden" value="(\d+)"', page).group(1)  # type: ignore[union-attr]
    answer = browser.post("/lti/deep-link", data={"csrf_token": csrf_token_from(page), "launch": launch_id,
                                                  "cancel": "1"})
    claims = _verified(app, browser, answer)
    assert claims[c.DL_CONTENT_ITEMS] == [] and claims[c.DL_MSG] == "Nothing was added."


def test_an_lms_that_accepts_no_resource_links_is_told_so(app: Flask, deep_link: Any) -> None:
    browser, picker_url = deep_link(settings={**SETTINGS, "accept_types": ["file", "html"]})
    page = browser.get(picker_url)
    assert page.status_code == 409
    html = page.get_data(as_text=True)
    assert "accepts file, html" in html and 'name="item"' not in html
    launch_id = re.search(r'name="launch" type="hidden" value="(\d+)"', html).group(1)  # type: ignore[union-attr]
    answer = browser.post("/lti/deep-link", data={"csrf_token": csrf_token_from(html), "launch": launch_id,
                                                  "cancel": "1"})
    claims = _verified(app, browser, answer)
    assert claims[c.DL_CONTENT_ITEMS] == [] and "ltiResourceLink" in claims[c.DL_ERRORMSG]


def test_a_learner_with_a_deep_linking_request_gets_a_clear_refusal(deep_link: Any) -> None:
    browser, landing = deep_link(role=LEARNER_ROLE, sub="learner-9")
    assert landing.endswith("/lti/deep-link/refused")
    page = browser.get(landing)
    assert page.status_code == 403
    assert "Only trainers can add Rebound to a course" in page.get_data(as_text=True)
    launch_id = db.session.scalar(select(Launch.id).where(Launch.message_type == c.DEEP_LINKING_REQUEST))
    assert browser.get(f"/lti/deep-link?launch={launch_id}").status_code == 403


def test_a_forged_pick_without_the_csrf_token_is_refused(deep_link: Any) -> None:
    browser, page = _open_picker(deep_link)
    launch_id = re.search(r'name="launch" type="hidden" value="(\d+)"', page).group(1)  # type: ignore[union-attr]
    answer = browser.post("/lti/deep-link", data={"launch": launch_id, "item": "course", "add": "1"})
    assert answer.status_code == 400
    assert "security token was missing" in answer.get_data(as_text=True)
    assert "JWT" not in answer.get_data(as_text=True)


def test_a_pick_for_a_launch_of_another_session_is_refused(app: Flask, deep_link: Any) -> None:
    _first, first_page = _open_picker(deep_link, sub="trainer-1")
    first_launch = re.search(r'name="launch" type="hidden" value="(\d+)"', first_page).group(1)  # type: ignore[union-attr]
    other, other_page = _open_picker(deep_link, sub="trainer-2")
    answer = other.post("/lti/deep-link", data={"csrf_token": csrf_token_from(other_page), "launch": first_launch,
                                                "item": "course", "add": "1"})
    assert answer.status_code == 400
    assert "no deep-linking request of yours" in answer.get_data(as_text=True)


def test_the_picker_opens_only_for_a_launch_this_browser_made(app: Flask, deep_link: Any) -> None:
    browser, picker_url = deep_link(sub="trainer-1")
    # The same person launches again in another browser; its picker link is not this session's.
    deep_link(sub="trainer-1")
    newer_id = db.session.scalar(select(Launch.id).order_by(Launch.id.desc()).limit(1))
    answer = browser.get(f"/lti/deep-link?launch={newer_id}")
    assert answer.status_code == 403
    assert "another browser session" in answer.get_data(as_text=True)
    assert browser.get(picker_url).status_code == 200


def test_an_unknown_item_is_refused_with_a_clear_message(deep_link: Any) -> None:
    browser, page = _open_picker(deep_link)
    answer = _pick(browser, page, item="case:no-such-case")
    assert answer.status_code == 400
    html = answer.get_data(as_text=True)
    assert "&#39;case:no-such-case&#39; is not a published module, lesson or case" in html
    assert 'name="JWT"' not in html


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "Choose what to add"),
        ({"item": "lesson:own-apologizing-well", "cases_mode": "only", "case": "pizza-wrong-crust"},
         "pizza-wrong-crust is not part of"),
        ({"item": "course", "pass_mark": "101"}, "whole percentage from 0 to 100"),
        ({"item": "course", "pass_mark": "eighty"}, "whole percentage from 0 to 100"),
        ({"item": "course", "title": "x" * 201}, "keep it to 200"),
        ({"item": "course", "cases_mode": "some"}, "Choose which cases count"),
        ({"item": "course", "due_at": "next friday"}, "Due date: &#39;next friday&#39; is not a date and time"),
        ({"item": "course", "recertify_after_days": "0"}, "whole number of days from 1 to 3650"),
        ({"item": "course", "attestation": "x" * 2001}, "Attestation: must be text of at most 2000 characters"),
    ],
)
def test_bad_choices_are_refused_with_a_clear_message(deep_link: Any, fields: dict[str, str], message: str) -> None:
    browser, page = _open_picker(deep_link)
    answer = _pick(browser, page, **fields)
    assert answer.status_code == 400
    assert message in answer.get_data(as_text=True)


def test_a_request_is_answered_once(app: Flask, deep_link: Any) -> None:
    browser, page = _open_picker(deep_link)
    assert _pick(browser, page, item="course").status_code == 200
    again = _pick(browser, page, item="course")
    assert again.status_code == 409
    assert "already answered" in again.get_data(as_text=True)


def test_launching_the_returned_link_lands_on_the_chosen_item_with_its_rule(
    app: Flask, deep_link: Any, lti_platform: Any
) -> None:
    browser, page = _open_picker(deep_link)
    claims = _verified(app, browser, _pick(browser, page, item="case:pizza-wrong-crust", pass_mark="75",
                                            due_at="2027-03-31", recertify_after_days="365",
                                            attestation="I have read and understood."))
    (item,) = claims[c.DL_CONTENT_ITEMS]
    learner = app.test_client()
    lti_platform.client = learner
    launched = lti_platform.launch(
        sub="learner-5",
        **{c.RESOURCE_LINK: {"id": "dl-link-1", "title": item["title"]}, c.CUSTOM: item["custom"],
           c.TARGET_LINK_URI: item["url"]},
    )
    assert launched.status_code == 303
    landing = learner.get(launched.headers["Location"])
    placement = db.session.scalar(select(Placement).where(Placement.resource_link_id == "dl-link-1"))
    assert placement is not None
    assert landing.headers["Location"].endswith(f"/p/{placement.id}/cases/pizza-wrong-crust")
    assert placement.settings == {"pass_mark": 75, "due_at": "2027-03-31T23:59:59+00:00",
                                  "recertify_after_days": 365, "attestation": "I have read and understood."}
    assert learner.get(landing.headers["Location"]).status_code == 200


def test_the_rule_is_stored_on_the_first_launch_only(app: Flask, launch_as: Callable[..., Any]) -> None:
    rule = {"rebound_target": "module:own", "rebound_rule": '{"counted_cases": ["pizza-wrong-crust"]}'}
    _, placement = launch_as(resource_link="link-rule", custom=rule)
    assert placement.settings == {"counted_cases": ["pizza-wrong-crust"]}
    placement.settings = {"counted_cases": ["ceo-spill-remark"]}
    db.session.commit()
    _, again = launch_as(resource_link="link-rule", custom=rule)
    assert again.settings == {"counted_cases": ["ceo-spill-remark"]}


@pytest.mark.parametrize("value", ["{not json", "[1, 2]", '{"pass_mark": 300}', '{"colour": "red"}'])
def test_a_malformed_rule_parameter_is_ignored(app: Flask, launch_as: Callable[..., Any], value: str) -> None:
    _, placement = launch_as(resource_link="link-bad-rule", custom={"rebound_target": "course", "rebound_rule": value})
    assert placement.target_kind == "course"
    assert not placement.settings


def test_a_request_older_than_an_hour_is_refused(app: Flask, deep_link: Any) -> None:
    browser, picker_url = deep_link()
    launch = db.session.scalar(select(Launch).where(Launch.message_type == c.DEEP_LINKING_REQUEST))
    assert launch is not None
    launch.created_at = launch.created_at - timedelta(hours=2)
    db.session.commit()
    answer = browser.get(picker_url)
    assert answer.status_code == 400
    assert "more than an hour old" in answer.get_data(as_text=True)


@pytest.mark.parametrize("launch_id", ["", "abc", "999999"])
def test_a_picker_without_a_known_launch_is_refused(deep_link: Any, launch_id: str) -> None:
    browser, _ = deep_link()
    answer = browser.get(f"/lti/deep-link?launch={launch_id}")
    assert answer.status_code == 400
    assert "belongs to no deep-linking request of yours" in answer.get_data(as_text=True)


def test_the_picker_is_closed_to_visitors_without_a_launch(client: Any) -> None:
    answer = client.get("/lti/deep-link?launch=1")
    assert answer.status_code == 302 and "/auth/login" in answer.headers["Location"]
    assert client.post("/lti/deep-link", data={"launch": "1"}).status_code == 400  # no CSRF token, no session
