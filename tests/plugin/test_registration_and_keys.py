"""Registering LMSes (dynamic, static, Canvas JSON), the tool's keys, and the development LMS."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import urlsplit

import jwt
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from course.database import db, utcnow
from course.models import LocalAccount, Platform, User
from plugin.dynamic_registration import HttpResult
from plugin.platform_keys import FetchError
from plugin.stores import KeyringStore
from tests.conftest import DEFAULT_PASSWORD
from tests.helpers import sign_in

TOOL = "https://rebound.test"
LMS_CONFIG = "https://moodle.example.edu/mod/lti/openid-configuration.php"


def _moodle_configuration(**overrides: object) -> dict[str, object]:
    config: dict[str, object] = {
        "issuer": "https://moodle.example.edu",
        "authorization_endpoint": "https://moodle.example.edu/mod/lti/auth.php",
        "token_endpoint": "https://moodle.example.edu/mod/lti/token.php",
        "jwks_uri": "https://moodle.example.edu/mod/lti/certs.php",
        "registration_endpoint": "https://moodle.example.edu/mod/lti/openid-registration.php",
        "scopes_supported": ["openid", "https://purl.imsglobal.org/spec/lti-ags/scope/score"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "https://purl.imsglobal.org/spec/lti-platform-configuration": {"product_family_code": "moodle"},
    }
    config.update(overrides)
    return config


class FakeMoodle:
    """The two HTTP calls of dynamic registration, answered as Moodle would."""

    def __init__(self) -> None:
        self.configuration: object = _moodle_configuration()
        self.config_error: Exception | None = None
        self.registration_status = 200
        self.registration_answer: object = {
            "client_id": "moodle-client-9",
            "https://purl.imsglobal.org/spec/lti-tool-configuration": {"deployment_id": "7"},
        }
        self.posted: list[tuple[str, dict, dict]] = []

    def get(self, url: str) -> HttpResult:
        if self.config_error:
            raise self.config_error
        body = self.configuration if isinstance(self.configuration, str) else json.dumps(self.configuration)
        return HttpResult(200, body)

    def post(self, url: str, body: dict, headers: dict) -> HttpResult:
        self.posted.append((url, body, headers))
        answer = self.registration_answer
        return HttpResult(self.registration_status, answer if isinstance(answer, str) else json.dumps(answer))


@pytest.fixture
def moodle(app: Flask) -> FakeMoodle:
    fake = FakeMoodle()
    app.extensions["rebound.http_get"] = fake.get
    app.extensions["rebound.http_post"] = fake.post
    return fake


def _register(client: FlaskClient, token: str | None = "reg-token-1"):  # type: ignore[no-untyped-def]
    query = {"openid_configuration": LMS_CONFIG}
    if token:
        query["registration_token"] = token
    return client.get("/lti/register", query_string=query)


# --- dynamic registration ------------------------------------------------------------------


def test_dynamic_registration_registers_the_platform_and_closes_the_window(
    client: FlaskClient, moodle: FakeMoodle
) -> None:
    response = _register(client)
    page = response.get_data(as_text=True)
    assert response.status_code == 200, page
    assert "Rebound is registered" in page and "registration-close.js" in page
    platform = db.session.scalar(select(Platform).where(Platform.issuer == "https://moodle.example.edu"))
    assert platform is not None
    assert (platform.client_id, platform.registration) == ("moodle-client-9", "dynamic")
    assert [d.deployment_id for d in platform.deployments] == ["7"]
    assert platform.jwks_url == "https://moodle.example.edu/mod/lti/certs.php"

    url, body, headers = moodle.posted[0]
    assert url.endswith("openid-registration.php")
    assert headers["Authorization"] == "Bearer reg-token-1"
    assert body["initiate_login_uri"] == f"{TOOL}/lti/login"
    assert body["redirect_uris"] == [f"{TOOL}/lti/launch"]
    assert body["jwks_uri"] == f"{TOOL}/lti/jwks"
    assert body["token_endpoint_auth_method"] == "private_key_jwt"
    assert body["scope"] == "https://purl.imsglobal.org/spec/lti-ags/scope/score"
    messages = body["https://purl.imsglobal.org/spec/lti-tool-configuration"]["messages"]
    assert {m["type"] for m in messages} == {"LtiResourceLinkRequest", "LtiDeepLinkingRequest"}


def test_registration_close_message_is_the_one_the_spec_asks_for(client: FlaskClient) -> None:
    with client.get("/lti/static/registration-close.js") as response:
        script = response.get_data(as_text=True)
    assert '{ subject: "org.imsglobal.lti.close" }' in script


@pytest.mark.parametrize(
    ("setup", "message", "status"),
    [
        (lambda m: setattr(m, "config_error", requests.ConnectionError("refused")), "could not reach the platform", 502),
        (lambda m: setattr(m, "configuration", "<html>not json"), "is not valid JSON", 502),
        (lambda m: setattr(m, "configuration", {"issuer": "https://moodle.example.edu"}), "lacks authorization_endpoint", 502),
        (lambda m: setattr(m, "configuration", _moodle_configuration(issuer="https://elsewhere.example")), "not under the issuer", 502),
        (lambda m: setattr(m, "registration_status", 403), "refused the registration (HTTP 403)", 502),
        (lambda m: setattr(m, "registration_answer", {"no": "client"}), "has no client_id", 502),
    ],
)
def test_failed_registrations_say_why_and_store_nothing(
    client: FlaskClient, moodle: FakeMoodle, setup: Callable[[FakeMoodle], None], message: str, status: int
) -> None:
    setup(moodle)
    response = _register(client)
    assert response.status_code == status
    assert message in response.get_data(as_text=True)
    assert db.session.scalar(select(Platform)) is None


def test_registering_the_same_client_twice_is_refused(client: FlaskClient, moodle: FakeMoodle) -> None:
    assert _register(client).status_code == 200
    again = _register(client)
    assert again.status_code == 409
    assert "already registered" in again.get_data(as_text=True)


def test_registration_url_opened_by_hand_explains_itself(client: FlaskClient) -> None:
    response = client.get("/lti/register")
    assert response.status_code == 400
    assert "paste it into the LMS" in response.get_data(as_text=True)


# --- Canvas JSON and JWKS -------------------------------------------------------------------


def test_canvas_json_configuration(client: FlaskClient) -> None:
    config = client.get("/lti/config.json").get_json()
    assert config["oidc_initiation_url"] == f"{TOOL}/lti/login"
    assert config["target_link_uri"] == f"{TOOL}/lti/launch"
    assert config["public_jwk_url"] == f"{TOOL}/lti/jwks"
    placements = config["extensions"][0]["settings"]["placements"]
    assert {p["message_type"] for p in placements} == {"LtiDeepLinkingRequest", "LtiResourceLinkRequest"}


def test_jwks_publishes_a_generated_key_and_never_private_parts(client: FlaskClient) -> None:
    keys = client.get("/lti/jwks").get_json()["keys"]
    assert len(keys) == 1
    assert keys[0]["kty"] == "RSA" and keys[0]["alg"] == "RS256" and keys[0]["use"] == "sig"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(keys[0])
    assert client.get("/lti/jwks").get_json()["keys"] == keys  # generated once, then kept


def test_private_keys_are_stored_encrypted(app: Flask, client: FlaskClient) -> None:
    client.get("/lti/jwks")
    from plugin.models import ToolKeyRecord

    record = db.session.scalar(select(ToolKeyRecord))
    assert record is not None and "ENCRYPTED PRIVATE KEY" in record.private_key_pem


def test_key_rotation_keeps_the_old_key_published_until_the_grace_ends(app: Flask, client: FlaskClient) -> None:
    old_kid = client.get("/lti/jwks").get_json()["keys"][0]["kid"]
    result = app.test_cli_runner().invoke(args=["keys", "rotate", "--grace-hours", "1", "--publish-ahead-minutes", "0"])
    assert result.exit_code == 0, result.output
    kids = [k["kid"] for k in client.get("/lti/jwks").get_json()["keys"]]
    assert old_kid in kids and len(kids) == 2
    keyring = KeyringStore(db.session, app.config["SECRET_KEY"]).load()
    now = utcnow()
    assert keyring.signing_key(now).kid != old_kid
    assert old_kid not in [k["kid"] for k in keyring.public_jwks(now + timedelta(hours=2))["keys"]]
    listing = app.test_cli_runner().invoke(args=["keys", "list"]).output
    assert "signing" in listing and "published" in listing


def test_new_key_can_be_published_before_it_signs(app: Flask, client: FlaskClient) -> None:
    old_kid = client.get("/lti/jwks").get_json()["keys"][0]["kid"]
    app.test_cli_runner().invoke(args=["keys", "rotate", "--publish-ahead-minutes", "10"])
    keyring = KeyringStore(db.session, app.config["SECRET_KEY"]).load()
    assert keyring.signing_key(utcnow()).kid == old_kid
    assert len(client.get("/lti/jwks").get_json()["keys"]) == 2


# --- static registration from the command line ---------------------------------------------


def _add(app: Flask, *extra: str):  # type: ignore[no-untyped-def]
    return app.test_cli_runner().invoke(
        args=[
            "platforms", "add", "--name", "Acme Canvas", "--issuer", "https://canvas.instructure.com",
            "--client-id", "10000000000001", "--auth-login-url", "https://sso.canvaslms.com/api/lti/authorize_redirect",
            "--auth-token-url", "https://sso.canvaslms.com/login/oauth2/token",
            "--jwks-url", "https://sso.canvaslms.com/api/lti/security/jwks", *extra,
        ]
    )


def test_platforms_add_list_show_and_remove(app: Flask) -> None:
    added = _add(app, "--deployment-id", "12:abc", "--frame-origin", "https://acme.instructure.com")
    assert added.exit_code == 0, added.output
    assert "Registered platform" in added.output and f"{TOOL}/lti/login" in added.output
    # Canvas cloud shares one issuer between customers: a second client is another tenant.
    assert _add(app).exit_code != 0
    second = app.test_cli_runner().invoke(
        args=["platforms", "add", "--name", "Other", "--issuer", "https://canvas.instructure.com", "--client-id", "2",
              "--auth-login-url", "https://sso.canvaslms.com/a", "--auth-token-url", "https://sso.canvaslms.com/t",
              "--jwks-url", "https://sso.canvaslms.com/j"]
    )
    assert second.exit_code == 0, second.output
    listing = app.test_cli_runner().invoke(args=["platforms", "list"]).output
    assert "Acme Canvas" in listing and "12:abc" in listing and "Other" in listing
    platform = db.session.scalar(select(Platform).where(Platform.client_id == "10000000000001"))
    assert platform is not None
    shown = app.test_cli_runner().invoke(args=["platforms", "show", str(platform.id)]).output
    assert "frame_origins: https://acme.instructure.com" in shown
    assert app.test_cli_runner().invoke(args=["platforms", "add-deployment", str(platform.id), "99"]).exit_code == 0
    assert app.test_cli_runner().invoke(args=["platforms", "remove", str(platform.id), "--yes"]).exit_code == 0
    assert db.session.get(Platform, platform.id) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--jwks-url", "http://lms.example.edu/jwks"], "jwks_url must use https"),
        (["--auth-login-url", "not a url"], "auth_login_url must be an absolute https URL"),
        (["--role-override", "nonsense"], "use ROLE_URI=role"),
        (["--role-override", "http://purl.imsglobal.org/vocab/lis/v2/membership#Mentor=boss"], "unknown Rebound role"),
    ],
)
def test_platforms_add_explains_bad_input_and_stores_nothing(app: Flask, args: list[str], message: str) -> None:
    base = {
        "--name": "X", "--issuer": "https://lms.example.edu", "--client-id": "c",
        "--auth-login-url": "https://lms.example.edu/a", "--auth-token-url": "https://lms.example.edu/t",
        "--jwks-url": "https://lms.example.edu/j",
    }
    options = dict(zip(args[::2], args[1::2], strict=True))
    merged = {**base, **{k: v for k, v in options.items() if k in base}}
    extra = [x for k, v in options.items() if k not in base for x in (k, v)]
    result = app.test_cli_runner().invoke(args=["platforms", "add", *[x for kv in merged.items() for x in kv], *extra])
    assert result.exit_code != 0
    assert message in result.output
    assert db.session.scalar(select(Platform)) is None


def test_platforms_show_unknown_platform(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["platforms", "show", "999"])
    assert result.exit_code == 1 and "No platform has id 999" in result.output


# --- the admins' health page and tenancy -----------------------------------------------------


def test_health_page_shows_each_platform_to_a_cross_tenant_admin(
    app: Flask, client: FlaskClient, make_platform: Callable[..., Platform], make_account: Callable[..., LocalAccount]
) -> None:
    one = make_platform(name="Acme Moodle")
    one.last_error = "audience-mismatch: check the client id"
    one.last_error_at = utcnow()
    db.session.commit()
    make_platform(name="Globex Canvas")
    make_account(username="ops", role="admin")
    sign_in(client, "ops", DEFAULT_PASSWORD)
    page = client.get("/admin/platforms").get_data(as_text=True)
    assert "Acme Moodle" in page and "Globex Canvas" in page
    assert "audience-mismatch: check the client id" in page


def test_health_page_shows_an_lms_administrator_only_their_own_platform(
    app: Flask, client: FlaskClient, make_platform: Callable[..., Platform]
) -> None:
    mine, theirs = make_platform(name="Acme Moodle"), make_platform(name="Globex Canvas")
    user = User(platform_id=mine.id, sub="admin-1")
    db.session.add(user)
    db.session.commit()
    with client.session_transaction() as session:
        session["_user_id"] = user.get_id()
        session["_fresh"] = True
        session["lti_roles"] = ["hr", "admin"]
    page = client.get("/admin/platforms").get_data(as_text=True)
    assert "Acme Moodle" in page and theirs.name not in page


def test_health_page_is_closed_to_learners_and_hr(
    client: FlaskClient, make_account: Callable[..., LocalAccount]
) -> None:
    make_account(username="hana", role="hr")
    sign_in(client, "hana", DEFAULT_PASSWORD)
    assert client.get("/admin/platforms").status_code == 403


# --- the development LMS -----------------------------------------------------------------


def _route_http_to(app: Flask, client: FlaskClient) -> None:
    """Let the tool's server-side HTTP calls reach this same app, as they do over the network."""

    def path_of(url: str) -> str:
        parts = urlsplit(url)
        assert parts.netloc == "rebound.test", url
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def fetch(url: str) -> str:
        response = client.get(path_of(url), base_url=TOOL)
        if response.status_code != 200:
            raise FetchError(f"HTTP status {response.status_code}")
        return response.get_data(as_text=True)

    app.extensions["rebound.http_fetch"] = fetch
    app.extensions["rebound.http_get"] = lambda url: HttpResult(200, fetch(url))
    app.extensions["rebound.http_post"] = lambda url, body, headers: (
        lambda r: HttpResult(r.status_code, r.get_data(as_text=True))
    )(client.post(path_of(url), json=body, headers=headers, base_url=TOOL))


def test_development_lms_registers_itself_and_launches_a_learner_through_the_real_path(
    app: Flask, client: FlaskClient
) -> None:
    _route_http_to(app, app.test_client())
    home = client.get("/dev-lms/", base_url=TOOL).get_data(as_text=True)
    assert "Step 1: register Rebound" in home
    register_url = re.search(r'name="registration" src="([^"]+)"', home).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    assert client.get(register_url.removeprefix(TOOL), base_url=TOOL).status_code == 200

    home = client.get("/dev-lms/", base_url=TOOL).get_data(as_text=True)
    assert "Launch Rebound" in home
    form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', home))
    hint = re.search(r'<option value="([^"]+)">Social media at Acme', home).group(1)  # type: ignore[union-attr]
    login = client.post("/lti/login", data={**form, "login_hint": "lena", "lti_message_hint": hint}, base_url=TOOL)
    assert login.status_code == 302
    auth = client.get(login.headers["Location"].removeprefix(TOOL), base_url=TOOL)
    page = auth.get_data(as_text=True)
    id_token = re.search(r'name="id_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    state = re.search(r'name="state" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    claims = jwt.decode(id_token, options={"verify_signature": False})
    assert claims["sub"] == "dev-lena" and claims["iss"] == f"{TOOL}/dev-lms"

    launched = client.post("/lti/launch", data={"id_token": id_token, "state": state}, base_url=TOOL)
    assert launched.status_code == 303, launched.get_data(as_text=True)
    user = db.session.scalar(select(User).where(User.sub == "dev-lena"))
    assert user is not None and user.name == "Lena Learner"


def test_development_lms_refuses_a_wrong_authentication_request(client: FlaskClient) -> None:
    response = client.get("/dev-lms/auth?scope=openid&client_id=wrong", base_url=TOOL)
    assert response.status_code == 400
    assert "missing or wrong" in response.get_data(as_text=True)


def test_development_lms_does_not_exist_in_production(app_factory: Callable[..., Flask], database_url: str) -> None:
    production = app_factory(
        DATABASE_URL=database_url, ENV="production", BASE_URL="https://rebound.example.com"
    )
    assert not [r for r in production.url_map.iter_rules() if r.rule.startswith("/dev-lms")]
    client = production.test_client()
    assert client.get("/dev-lms/").status_code == 404
    assert client.get("/dev-lms/jwks").status_code == 404
    assert "development LMS" not in client.get("/").get_data(as_text=True)
    db.state(production).engine.dispose()


def test_registration_page_may_be_framed_by_an_lms_not_registered_yet(client: FlaskClient, moodle: FakeMoodle) -> None:
    response = _register(client)
    assert "frame-ancestors *" in response.headers["Content-Security-Policy"]
    assert "frame-ancestors *" not in client.get("/").headers["Content-Security-Policy"]


def test_a_new_registration_may_frame_rebound_at_once(client: FlaskClient, moodle: FakeMoodle) -> None:
    assert "https://moodle.example.edu" not in client.get("/").headers["Content-Security-Policy"]
    _register(client)
    assert "https://moodle.example.edu" in client.get("/").headers["Content-Security-Policy"]


def test_development_lms_page_may_frame_the_tool(client: FlaskClient) -> None:
    csp = client.get("/dev-lms/", base_url=TOOL).headers["Content-Security-Policy"]
    assert f"frame-src 'self' {TOOL}" in csp
