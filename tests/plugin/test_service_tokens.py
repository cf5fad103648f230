"""Access tokens for LTI Advantage services: the signed assertion, the cache, and failures."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import jwt
import pytest
import requests
import responses
from flask import Flask

from course.database import db
from course.models import Platform
from plugin import claims as c
from plugin.models import ServiceAccessToken
from plugin.service_tokens import (
    ASSERTION_TYPE,
    ServiceClient,
    TokenError,
    access_token,
    client_for,
    ensure_signing_key,
    forget_token,
)
from plugin.stores import KeyringStore
from plugin.web import USER_AGENT

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SCORE = [c.SCOPE_AGS_SCORE]


@pytest.fixture
def services(app: Flask) -> ServiceClient:
    client = client_for(app)
    ensure_signing_key(db.session, client, NOW)
    return client


@pytest.fixture
def platform(make_platform) -> Platform:  # type: ignore[no-untyped-def]
    return make_platform()


def token_answer(token: str = "tok-1", expires_in: int = 3600, **extra: object) -> dict[str, object]:
    return {"access_token": token, "token_type": "Bearer", "expires_in": expires_in, **extra}


def form_of(call: responses.Call) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(str(call.request.body)).items()}


@responses.activate
def test_token_request_sends_a_client_assertion_signed_with_the_tools_current_key(
    app: Flask, platform: Platform, services: ServiceClient
) -> None:
    responses.post(platform.auth_token_url, json=token_answer())
    assert access_token(db.session, platform, SCORE, NOW, services) == "tok-1"

    call = responses.calls[0]
    form = form_of(call)
    assert form["grant_type"] == "client_credentials"
    assert form["client_assertion_type"] == ASSERTION_TYPE
    assert form["scope"] == c.SCOPE_AGS_SCORE
    assert call.request.headers["User-Agent"] == USER_AGENT
    keyring = KeyringStore(db.session, app.config["SECRET_KEY"]).load()
    header = jwt.get_unverified_header(form["client_assertion"])
    key = keyring.signing_key(NOW)
    assert header["kid"] == key.kid and header["alg"] == "RS256"
    claims = jwt.decode(
        form["client_assertion"],
        key.private_key.public_key(),
        algorithms=["RS256"],
        audience=platform.auth_token_url,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["iss"] == claims["sub"] == platform.client_id
    assert claims["jti"]
    assert claims["iat"] == int(NOW.timestamp())
    assert 0 < claims["exp"] - claims["iat"] <= 300


@responses.activate
def test_assertion_audience_is_the_platforms_configured_audience_when_it_has_one(
    make_platform, services: ServiceClient  # type: ignore[no-untyped-def]
) -> None:
    platform = make_platform(auth_token_audience="https://auth.brightspace.com/core/connect/token")
    responses.post(platform.auth_token_url, json=token_answer())
    access_token(db.session, platform, SCORE, NOW, services)
    assertion = form_of(responses.calls[0])["client_assertion"]
    claims = jwt.decode(assertion, options={"verify_signature": False})
    assert claims["aud"] == "https://auth.brightspace.com/core/connect/token"


@responses.activate
def test_every_assertion_has_its_own_jti(platform: Platform, services: ServiceClient) -> None:
    responses.post(platform.auth_token_url, json=token_answer())
    access_token(db.session, platform, SCORE, NOW, services)
    access_token(db.session, platform, [c.SCOPE_NRPS_MEMBERSHIP_READONLY], NOW, services)
    jtis = {jwt.decode(form_of(call)["client_assertion"], options={"verify_signature": False})["jti"]
            for call in responses.calls}
    assert len(jtis) == 2


@responses.activate
def test_token_is_cached_per_platform_and_sorted_scopes_until_shortly_before_it_expires(
    platform: Platform, services: ServiceClient
) -> None:
    responses.post(platform.auth_token_url, json=token_answer("first", expires_in=3600))
    both = [c.SCOPE_AGS_SCORE, c.SCOPE_AGS_LINEITEM]
    assert access_token(db.session, platform, both, NOW, services) == "first"
    assert access_token(db.session, platform, list(reversed(both)), NOW + timedelta(minutes=58), services) == "first"
    assert len(responses.calls) == 1
    stored = db.session.get(ServiceAccessToken, (platform.id, " ".join(sorted(both))))
    assert stored is not None and stored.expires_at == NOW + timedelta(seconds=3600 - 60)

    responses.replace(responses.POST, platform.auth_token_url, json=token_answer("second"))
    assert access_token(db.session, platform, both, NOW + timedelta(minutes=59), services) == "second"
    assert len(responses.calls) == 2


@responses.activate
def test_other_scopes_or_another_platform_get_their_own_token(
    make_platform, services: ServiceClient  # type: ignore[no-untyped-def]
) -> None:
    one, two = make_platform(), make_platform()
    responses.post(one.auth_token_url, json=token_answer("one"))
    responses.post(two.auth_token_url, json=token_answer("two"))
    assert access_token(db.session, one, SCORE, NOW, services) == "one"
    assert access_token(db.session, two, SCORE, NOW, services) == "two"
    access_token(db.session, one, [c.SCOPE_NRPS_MEMBERSHIP_READONLY], NOW, services)
    assert len(responses.calls) == 3


@responses.activate
def test_a_forgotten_token_is_requested_again(platform: Platform, services: ServiceClient) -> None:
    responses.post(platform.auth_token_url, json=token_answer())
    access_token(db.session, platform, SCORE, NOW, services)
    forget_token(db.session, platform.id, SCORE)
    access_token(db.session, platform, SCORE, NOW, services)
    assert len(responses.calls) == 2


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("<html>Service unavailable</html>", "not JSON"),
        (json.dumps(["tok"]), "not an object"),
        (json.dumps({"token_type": "Bearer", "expires_in": 3600}), "without an access_token"),
        (json.dumps(token_answer(token_type="mac")), "not Bearer"),
        (json.dumps(token_answer(expires_in=-5)), "not a positive number"),
        (json.dumps(token_answer(scope="https://example.com/other")), "did not grant"),
    ],
)
@responses.activate
def test_a_malformed_token_response_is_a_clear_error_and_caches_nothing(
    platform: Platform, services: ServiceClient, body: str, problem: str
) -> None:
    responses.post(platform.auth_token_url, body=body, content_type="application/json")
    with pytest.raises(TokenError, match=problem):
        access_token(db.session, platform, SCORE, NOW, services)
    assert db.session.get(ServiceAccessToken, (platform.id, c.SCOPE_AGS_SCORE)) is None


@responses.activate
def test_a_refusal_names_the_status_and_the_platforms_own_words(platform: Platform, services: ServiceClient) -> None:
    responses.post(
        platform.auth_token_url, status=401,
        json={"error": "invalid_client", "error_description": "unknown kid"},
    )
    with pytest.raises(TokenError) as raised:
        access_token(db.session, platform, SCORE, NOW, services)
    assert raised.value.status == 401
    assert "HTTP 401: invalid_client - unknown kid" in str(raised.value)


@responses.activate
def test_a_server_error_is_reported_with_its_status(platform: Platform, services: ServiceClient) -> None:
    responses.post(platform.auth_token_url, status=503, body="down for maintenance", headers={"Retry-After": "120"})
    with pytest.raises(TokenError) as raised:
        access_token(db.session, platform, SCORE, NOW, services)
    assert raised.value.status == 503 and raised.value.retry_after == 120
    assert "down for maintenance" in str(raised.value)


@pytest.mark.parametrize("failure", [requests.exceptions.ReadTimeout(), requests.exceptions.ConnectTimeout()])
@responses.activate
def test_a_timeout_is_a_clear_error(platform: Platform, services: ServiceClient, failure: Exception) -> None:
    responses.post(platform.auth_token_url, body=failure)
    with pytest.raises(TokenError, match="did not answer within 15 s") as raised:
        access_token(db.session, platform, SCORE, NOW, services)
    assert raised.value.status is None


@responses.activate
def test_an_unreachable_token_endpoint_is_a_clear_error(platform: Platform, services: ServiceClient) -> None:
    responses.post(platform.auth_token_url, body=requests.exceptions.ConnectionError("refused"))
    with pytest.raises(TokenError, match="could not be reached"):
        access_token(db.session, platform, SCORE, NOW, services)


@responses.activate
def test_a_redirect_is_not_followed(platform: Platform, services: ServiceClient) -> None:
    responses.post(platform.auth_token_url, status=302, headers={"Location": "https://elsewhere.example/token"})
    with pytest.raises(TokenError, match="HTTP 302"):
        access_token(db.session, platform, SCORE, NOW, services)
    assert len(responses.calls) == 1


def test_a_plain_http_token_url_is_refused_in_production(platform: Platform, services: ServiceClient) -> None:
    platform.auth_token_url = "http://lms.example.edu/token"
    production = ServiceClient(http=requests.Session(), secret_key=services.secret_key, allow_http=False)
    with pytest.raises(TokenError, match="must use https"):
        access_token(db.session, platform, SCORE, NOW, production)


@responses.activate
def test_no_token_is_asked_for_before_the_tool_has_a_key_the_lms_can_see(app: Flask, platform: Platform) -> None:
    # A key made in the same transaction would be invisible to the LMS checking /lti/jwks.
    with pytest.raises(TokenError, match="no signing key yet"):
        access_token(db.session, platform, SCORE, NOW, client_for(app))
    assert len(responses.calls) == 0
