"""Launching Rebound from the built-in development LMS in tests, through the real path:
dynamic registration, the LMS's launch form, the OIDC round trip and the signed id_token."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import FreshRequestClient
from tests.plugin.test_registration_and_keys import TOOL, _route_http_to


class ToolBrowser(FreshRequestClient):
    """A browser that talks to the tool at its public address, where the LMS sent it."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("base_url", TOOL)
        return super().open(*args, **kwargs)


def dev_lms_launcher(app: Flask) -> Callable[[str], tuple[FlaskClient, str]]:
    """Register Rebound in the development LMS; return launch(person) -> (browser, landing path)."""
    _route_http_to(app, app.test_client())
    admin = ToolBrowser(app, app.response_class, use_cookies=True)
    home = admin.get("/dev-lms/").get_data(as_text=True)
    register_url = re.search(r'name="registration" src="([^"]+)"', home)
    assert register_url, "the development LMS offers no registration"
    registered = admin.get(register_url.group(1).replace("&amp;", "&").removeprefix(TOOL))
    assert registered.status_code == 200, registered.get_data(as_text=True)

    def launch(person: str) -> tuple[FlaskClient, str]:
        browser = ToolBrowser(app, app.response_class, use_cookies=True)
        page = browser.get("/dev-lms/").get_data(as_text=True)
        form = page.split('class="launch-form"')[1].split("</form>")[0]
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form))
        course = re.search(r'<option value="([^"]+)">Social media at Acme', form)
        assert course, "the development LMS lists no Acme course"
        login = browser.post(
            "/lti/login", data={**fields, "login_hint": person, "lti_message_hint": course.group(1)}
        )
        assert login.status_code == 302, login.get_data(as_text=True)
        auth = browser.get(login.headers["Location"].removeprefix(TOOL)).get_data(as_text=True)
        token = re.search(r'name="id_token" value="([^"]+)"', auth)
        state = re.search(r'name="state" value="([^"]+)"', auth)
        assert token and state, auth
        launched = browser.post("/lti/launch", data={"id_token": token.group(1), "state": state.group(1)})
        assert launched.status_code == 303, launched.get_data(as_text=True)
        landing = browser.get(launched.headers["Location"].removeprefix(TOOL))
        assert landing.status_code in (302, 303), landing.get_data(as_text=True)
        return browser, landing.headers["Location"].removeprefix(TOOL)

    return launch
