"""The development LMS's Deep Linking: it asks Rebound for content, checks the signed answer
against the tool's keys, adds the returned link to the course, and launches it."""

from __future__ import annotations

import html
import re
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from course.database import db, utcnow
from course.models import Placement
from plugin import claims as c
from plugin import web
from plugin.dev_lms import deep_linking as dl
from plugin.dev_lms import platform as lms
from plugin.dev_lms.services import service_state
from plugin.tool_keys import Keyring, generate_key, sign_jwt
from tests.helpers import csrf_token_from
from tests.plugin.lms_double import register_development_lms

TOOL = "https://rebound.test"
ACME = "acme-social-101"
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


@pytest.fixture
def dev_lms(app: Flask, course_content: None) -> FlaskClient:
    """The development LMS registered with the tool; the tool reaches its JWKS in-process."""
    register_development_lms(app, TOOL)
    return app.test_client()


def _launch(browser: FlaskClient, form: dict[str, str]) -> str:
    """Post a launch form of the LMS page through login, authentication and launch; the landing target."""
    login = browser.post("/lti/login", data=form, base_url=TOOL)
    assert login.status_code == 302, login.get_data(as_text=True)
    auth = browser.get(login.headers["Location"].removeprefix(TOOL), base_url=TOOL)
    page = auth.get_data(as_text=True)
    assert auth.status_code == 200, page
    fields = dict(_HIDDEN.findall(page))
    launched = browser.post("/lti/launch", data={"id_token": fields["id_token"], "state": fields["state"]},
                            base_url=TOOL)
    assert launched.status_code == 303, launched.get_data(as_text=True)
    landing = browser.get(launched.headers["Location"], base_url=TOOL)
    assert landing.status_code == 303
    return str(landing.headers["Location"])


def _forms(page: str) -> list[dict[str, str]]:
    return [
        {name: html.unescape(value) for name, value in _HIDDEN.findall(form)}
        for form in re.findall(r"<form .*?</form>", page, flags=re.S)
    ]


def _deep_link_form(browser: FlaskClient, course: str = ACME, who: str = "theo") -> dict[str, str]:
    home = browser.get("/dev-lms/", base_url=TOOL).get_data(as_text=True)
    assert "Add Rebound by Deep Linking" in home
    block = home.split('id="deep-linking-title"', 1)[1]
    form = _forms(block)[0]
    hint = re.search(rf'<option value="([^"]+)">{re.escape(lms.course(course).title)}</option>', block)  # type: ignore[union-attr]
    assert hint
    return {**form, "login_hint": who, "lti_message_hint": hint.group(1)}


def _answer(browser: FlaskClient, picker: str, **fields: str) -> tuple[str, str]:
    """Pick in Rebound's picker; the return URL and the signed JWT the page posts back."""
    page = browser.get(picker, base_url=TOOL).get_data(as_text=True)
    launch_id = re.search(r'name="launch" type="hidden" value="(\d+)"', page).group(1)  # type: ignore[union-attr]
    answer = browser.post("/lti/deep-link", base_url=TOOL,
                          data={"csrf_token": csrf_token_from(page), "launch": launch_id, "add": "1", **fields})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    text = answer.get_data(as_text=True)
    action = html.unescape(re.search(r'<form id="autopost" method="post" action="([^"]+)"', text).group(1))  # type: ignore[union-attr]
    token = re.search(r'name="JWT" value="([^"]+)"', text).group(1)  # type: ignore[union-attr]
    return action, token


def _return(browser: FlaskClient, action: str, token: str) -> Any:
    parts = urlsplit(action)
    return browser.post(f"{parts.path}?{parts.query}", data={"JWT": token}, base_url=TOOL)


def test_a_trainer_places_a_single_case_by_deep_linking_and_it_launches_onto_it(
    app: Flask, dev_lms: FlaskClient
) -> None:
    picker = _launch(dev_lms, _deep_link_form(dev_lms))
    assert picker.startswith("/lti/deep-link?launch=")
    action, token = _answer(dev_lms, picker, item="case:pizza-wrong-crust", title="Pizza practice", pass_mark="70")
    assert action == f"{TOOL}/dev-lms/deep-link-return?course={ACME}"
    added = _return(dev_lms, action, token)
    assert added.status_code == 200, added.get_data(as_text=True)
    assert "Added to <strong>Social media at Acme</strong>" in added.get_data(as_text=True)

    home = dev_lms.get("/dev-lms/", base_url=TOOL).get_data(as_text=True)
    assert "Launch “Pizza practice”" in home
    link_form = next(f for f in _forms(home) if "link" in lms.decode_hint(f.get("lti_message_hint", "")))
    learner = dev_lms.application.test_client()
    target = _launch(learner, {**link_form, "login_hint": "lena"})
    placement = db.session.scalar(select(Placement).where(Placement.title == "Pizza practice"))
    assert placement is not None
    assert target == f"/p/{placement.id}/cases/pizza-wrong-crust"
    assert placement.settings == {"pass_mark": 70}
    # The link got its own gradebook column, the one its launches name for AGS.
    link_id = lms.decode_hint(link_form["lti_message_hint"])["link"]
    assert placement.resource_link_id == link_id
    with service_state(Path(app.config["REBOUND_SETTINGS"].data_dir)) as state:
        line_item = state["lineitems"][ACME][link_id]
    assert line_item == {"scoreMaximum": 100, "label": "Pizza practice", "resourceId": "case:pizza-wrong-crust",
                         "tag": "rebound", "resourceLinkId": link_id}
    assert placement.lineitem_url is not None and f"/lineitems/{link_id}/lineitem" in placement.lineitem_url


def test_a_learner_asking_to_add_content_is_refused_by_rebound(dev_lms: FlaskClient) -> None:
    target = _launch(dev_lms, _deep_link_form(dev_lms, who="lena"))
    assert target == "/lti/deep-link/refused"
    assert dev_lms.get(target, base_url=TOOL).status_code == 403


def test_a_response_is_accepted_once(dev_lms: FlaskClient) -> None:
    action, token = _answer(dev_lms, _launch(dev_lms, _deep_link_form(dev_lms)), item="course")
    assert _return(dev_lms, action, token).status_code == 200
    again = _return(dev_lms, action, token)
    assert again.status_code == 400
    assert "already answered" in again.get_data(as_text=True)


def test_a_response_for_another_course_is_refused(dev_lms: FlaskClient) -> None:
    action, token = _answer(dev_lms, _launch(dev_lms, _deep_link_form(dev_lms)), item="course")
    refused = _return(dev_lms, action.replace(ACME, "acme-onboarding"), token)
    assert refused.status_code == 400
    assert "does not match a deep-linking request this course made" in refused.get_data(as_text=True)


def test_a_response_signed_by_a_key_the_tool_does_not_publish_is_refused(app: Flask, dev_lms: FlaskClient) -> None:
    now = utcnow()
    forged = sign_jwt(_response_claims(dl.new_request(_data_dir(app), ACME, now)),
                      Keyring((generate_key(now - timedelta(minutes=1)),)), now)
    refused = _return(dev_lms, f"{TOOL}/dev-lms/deep-link-return?course={ACME}", forged)
    assert refused.status_code == 400
    assert "which the tool&#39;s JWKS does not publish" in refused.get_data(as_text=True)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"aud": "https://another-lms.example.edu"}, "Audience doesn"),
        ({"iss": "someone-else"}, "Invalid issuer"),
        ({c.MESSAGE_TYPE: "LtiResourceLinkRequest"}, "message_type must be"),
        ({c.DEPLOYMENT_ID: "other-deployment"}, "deployment_id must be"),
        ({"nonce": None}, "nonce"),
        ({c.DL_CONTENT_ITEMS: [{"type": "file", "url": "https://rebound.test/f.pdf"}]}, "accepts only ltiResourceLink"),
        ({c.DL_CONTENT_ITEMS: [{"type": "ltiResourceLink", "url": "https://evil.example/lti"}]}, "not on the tool"),
        ({c.DL_CONTENT_ITEMS: [{"type": "ltiResourceLink", "custom": {"a": 1}}]}, "map strings to strings"),
        ({c.DL_CONTENT_ITEMS: [{"type": "ltiResourceLink", "lineItem": {"label": "x"}}]}, "scoreMaximum above 0"),
        ({c.DL_CONTENT_ITEMS: "everything"}, "must be a list of objects"),
    ],
)
def test_malformed_responses_are_refused_with_the_reason(
    app: Flask, dev_lms: FlaskClient, change: dict[str, Any], message: str
) -> None:
    now = utcnow()
    claims = {k: v for k, v in {**_response_claims(dl.new_request(_data_dir(app), ACME, now)), **change}.items()
              if v is not None}
    refused = _return(dev_lms, f"{TOOL}/dev-lms/deep-link-return?course={ACME}", sign_jwt(claims, web.keyring(now), now))
    assert refused.status_code == 400
    assert message in html.unescape(refused.get_data(as_text=True))
    assert dl.links(_data_dir(app)) == []


def test_a_return_without_a_jwt_or_course_is_refused(dev_lms: FlaskClient) -> None:
    missing = dev_lms.post(f"/dev-lms/deep-link-return?course={ACME}", data={}, base_url=TOOL)
    assert missing.status_code == 400 and "no JWT" in missing.get_data(as_text=True)
    nowhere = dev_lms.post("/dev-lms/deep-link-return?course=nope", data={"JWT": "x"}, base_url=TOOL)
    assert nowhere.status_code == 400 and "names no course" in nowhere.get_data(as_text=True)


def test_a_launch_of_an_unknown_link_is_refused(dev_lms: FlaskClient) -> None:
    form = _deep_link_form(dev_lms)
    login = dev_lms.post("/lti/login", base_url=TOOL,
                         data={**form, "login_hint": "lena", "lti_message_hint": lms.encode_hint(
                             {"course": ACME, "link": "dl-nope"})})
    auth = dev_lms.get(login.headers["Location"].removeprefix(TOOL), base_url=TOOL)
    assert auth.status_code == 400
    assert "names a link this course does not have" in auth.get_data(as_text=True)


def test_links_are_kept_in_the_data_directory_for_every_process(tmp_path: Path) -> None:
    now = utcnow()
    tokens: list[str] = []

    def ask() -> None:
        tokens.append(dl.new_request(tmp_path, ACME, now))

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with service_state(tmp_path) as state:
        assert set(state["deep_link_requests"]) == set(tokens) and len(tokens) == 20
    items = [{"type": "ltiResourceLink", "title": "Own", "url": f"{TOOL}/lti/launch",
              "custom": {"rebound_target": "module:own"}}]
    created = dl.accept_response(tmp_path, {c.DL_DATA: tokens[0], c.DL_CONTENT_ITEMS: items}, course_id=ACME,
                                 tool_base_url=TOOL, now=now)
    # A new reader (another process) finds the same link in the file.
    assert dl.find_link(tmp_path, created[0].id) == created[0]
    assert dl.links(tmp_path)[0].custom == {"rebound_target": "module:own"}


def _data_dir(app: Flask) -> Path:
    return Path(app.config["REBOUND_SETTINGS"].data_dir)


def _response_claims(data: str) -> dict[str, Any]:
    return {
        "iss": lms.CLIENT_ID,
        "aud": lms.urls(TOOL)["issuer"],
        "nonce": "n-1",
        c.MESSAGE_TYPE: c.DEEP_LINKING_RESPONSE,
        c.VERSION: c.LTI_VERSION,
        c.DEPLOYMENT_ID: lms.DEPLOYMENT_ID,
        c.DL_DATA: data,
        c.DL_CONTENT_ITEMS: [{"type": "ltiResourceLink", "title": "Rebound", "url": f"{TOOL}/lti/launch"}],
    }
