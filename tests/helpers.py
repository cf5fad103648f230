"""Small helpers for driving forms the way a browser does (with their CSRF token)."""

from __future__ import annotations

import re

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

_TOKEN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def csrf_token_from(html: str) -> str:
    """The CSRF token of the first form on a page."""
    match = _TOKEN.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def sign_in(client: FlaskClient, username: str, password: str, **extra: str) -> TestResponse:
    """Submit the staff sign-in form as a browser would."""
    token = csrf_token_from(client.get("/auth/login").get_data(as_text=True))
    data = {"csrf_token": token, "username": username, "password": password, **extra}
    return client.post("/auth/login", data=data)
