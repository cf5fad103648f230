"""LTI 1.3 launches end to end through /lti/login and /lti/launch.

Every refusal is a 4xx page that names the cause, and leaves no session and no user.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from course.database import db
from course.models import Context, Placement, Platform, User
from plugin import claims as c
from plugin.launches import state_cookie_name
from plugin.models import Launch, LoginState, UsedNonce
from plugin.tool_keys import jwk_thumbprint
from tests.plugin.lms_double import DEPLOYMENT_ID, ISSUER, JWKS_URL, TOOL, LmsDouble


def _rsa() -> tuple[rsa.RSAPrivateKey, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key, jwk_thumbprint(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True))


PLATFORM_KEY = _rsa()
OTHER_KEY = _rsa()


def _jwks(*keys: tuple[rsa.RSAPrivateKey, str]) -> str:
    return json.dumps(
        {
            "keys": [
                {**jwt.algorithms.RSAAlgorithm.to_jwk(k.public_key(), as_dict=True), "kid": kid, "alg": "RS256", "use": "sig"}
                for k, kid in keys
            ]
        }
    )


@pytest.fixture
def lms(app: Flask, client: FlaskClient) -> Iterator[LmsDouble]:
    double = LmsDouble(app=app, client=client, key=PLATFORM_KEY[0], kid=PLATFORM_KEY[1])
    double.jwks_documents[JWKS_URL] = _jwks(PLATFORM_KEY)
    app.extensions["rebound.http_fetch"] = double.fetch
    double.register()
    yield double


def _users() -> int:
    return db.session.scalar(select(func.count()).select_from(User)) or 0


def _refused(response, code: str, status: int = 400) -> None:  # type: ignore[no-untyped-def]
    page = response.get_data(as_text=True)
    assert response.status_code == status, page
    assert f"<code>{code}</code>" in page
    assert "Debug id" in page and response.headers["X-Request-ID"] in page


def _signed_in(client: FlaskClient) -> bool:
    with client.session_transaction() as session:
        return "_user_id" in session


# --- the happy path -------------------------------------------------------------------------


def test_learner_launch_signs_in_and_lands_with_post_redirect_get(lms: LmsDouble) -> None:
    response = lms.launch()
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/lti/landing?launch=")
    assert _signed_in(lms.client)
    landing = lms.client.get(response.headers["Location"])
    assert landing.status_code == 303

    user = db.session.scalar(select(User).where(User.sub == "user-42"))
    assert user is not None
    assert (user.name, user.email, user.lis_person_sourcedid) == ("Ada Lovelace", "ada@example.com", "sis-42")
    placement = db.session.scalar(select(Placement).where(Placement.resource_link_id == "link-1"))
    assert placement is not None and placement.target_kind == "course"
    context = db.session.get(Context, placement.context_id)
    assert context is not None and context.title == "Social media mistakes"
    with lms.client.session_transaction() as session:
        assert session["lti_placements"] == {str(placement.id): ["learner"]}


def test_names_and_emails_are_refreshed_on_every_launch(lms: LmsDouble) -> None:
    lms.launch()
    lms.launch(name="Ada King", email="ada.king@example.com")
    user = db.session.scalar(select(User).where(User.sub == "user-42"))
    assert user is not None and (user.name, user.email) == ("Ada King", "ada.king@example.com")
    assert _users() == 1


def test_instructor_launch_gets_trainer_role(lms: LmsDouble) -> None:
    lms.launch(**{c.ROLES: ["http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"]})
    with lms.client.session_transaction() as session:
        assert session["lti_roles"] == ["trainer"]


def test_administrator_launch_gets_hr(lms: LmsDouble) -> None:
    lms.launch(**{c.ROLES: ["http://purl.imsglobal.org/vocab/lis/v2/institution/person#Administrator"]})
    with lms.client.session_transaction() as session:
        assert set(session["lti_roles"]) == {"hr", "admin"}


def test_refreshing_after_a_launch_does_not_repost_the_token(lms: LmsDouble) -> None:
    login = lms.login()
    token = lms.sign(lms.claims(login))
    assert lms.post_launch(token, login.state).status_code == 303
    again = lms.post_launch(token, login.state)
    _refused(again, "state-replayed")


def test_a_custom_target_parameter_points_the_placement(lms: LmsDouble) -> None:
    lms.launch(**{c.CUSTOM: {"rebound_target": "lesson:own-apologizing-well"}})
    placement = db.session.scalar(select(Placement).where(Placement.resource_link_id == "link-1"))
    assert placement is not None
    assert (placement.target_kind, placement.target_ref) == ("lesson", "own-apologizing-well")


def test_launch_learns_the_lms_page_origin_for_frame_ancestors(lms: LmsDouble) -> None:
    lms.launch()
    csp = lms.client.get("/").headers["Content-Security-Policy"]
    assert "https://school.example.edu" in csp
    assert "https://lms.example.edu" in csp


def test_a_launched_browser_may_be_framed_even_where_this_process_read_the_origins_too_early(
    lms: LmsDouble, app: Flask
) -> None:
    lms.launch()
    # Another app process read the registered origins before this platform existed, and keeps
    # them for up to half a minute: the launched browser's session carries its own.
    kept = app.extensions["rebound.frame_ancestor_cache"]
    kept.forget()
    kept.origins(lambda: [])
    csp = lms.client.get("/").headers["Content-Security-Policy"]
    assert "https://school.example.edu" in csp and "https://lms.example.edu" in csp
    stranger = app.test_client().get("/").headers["Content-Security-Policy"]
    assert "https://school.example.edu" not in stranger  # kept for the TTL, then read afresh


def test_registered_origins_are_read_once_per_interval_and_again_after_a_local_platform_write(
    lms: LmsDouble, app: Flask
) -> None:
    from plugin.web import FrameAncestors

    reads: list[int] = []
    kept = FrameAncestors(ttl=timedelta(minutes=1))
    assert kept.origins(lambda: reads.append(1) or ["https://a.example"]) == ["https://a.example"]  # type: ignore[func-returns-value]
    assert kept.origins(lambda: reads.append(1) or ["https://b.example"]) == ["https://a.example"]  # type: ignore[func-returns-value]
    assert reads == [1]
    assert FrameAncestors(ttl=timedelta(0)).origins(lambda: ["https://b.example"]) == ["https://b.example"]

    app.test_client().get("/")
    platform = db.session.scalar(select(Platform).where(Platform.issuer == ISSUER))
    assert platform is not None
    platform.frame_origins = [*(platform.frame_origins or []), "https://moved.example.edu"]
    db.session.commit()  # this process wrote the platform: its kept origins are forgotten
    assert "https://moved.example.edu" in app.test_client().get("/").headers["Content-Security-Policy"]


def test_platform_health_records_the_launch_and_clock_skew(lms: LmsDouble) -> None:
    lms.launch(iat=int(time.time()) + 20)
    platform = db.session.scalar(select(Platform).where(Platform.issuer == ISSUER))
    assert platform is not None and platform.last_launch_at is not None
    assert platform.clock_skew_seconds is not None and 15 <= platform.clock_skew_seconds <= 25


def _platform() -> Platform:
    db.session.expire_all()
    platform = db.session.scalar(select(Platform).where(Platform.issuer == ISSUER))
    assert platform is not None
    return platform


def test_platform_health_is_written_at_most_once_a_minute_unless_something_changed(lms: LmsDouble) -> None:
    lms.launch()
    first = _platform().last_launch_at
    lms.launch(sub="another-learner")
    assert _platform().last_launch_at == first  # the busy tenant's row is not rewritten per launch

    lms.launch(sub="a-third", **{c.LAUNCH_PRESENTATION: {"return_url": "https://new-lms.example.edu/c/9"}})
    platform = _platform()
    assert "https://new-lms.example.edu" in (platform.frame_origins or [])  # a new origin: at once
    assert platform.last_launch_at is not None and first is not None and platform.last_launch_at > first

    lms.launch(iat=int(time.time()) + 30)
    assert 25 <= (_platform().clock_skew_seconds or 0) <= 35  # the platform's clock moved: at once

    platform = _platform()
    platform.last_launch_at = platform.last_launch_at - timedelta(minutes=2)  # type: ignore[operator]
    stale = platform.last_launch_at
    db.session.commit()
    lms.launch(iat=int(time.time()) + 30)
    assert _platform().last_launch_at > stale  # type: ignore[operator]


# --- the login step --------------------------------------------------------------------------


def test_login_redirects_to_the_platform_with_every_oidc_parameter(lms: LmsDouble) -> None:
    login = lms.login(lti_message_hint="hint-7")
    params = login.params
    assert params["scope"] == "openid" and params["response_type"] == "id_token"
    assert params["response_mode"] == "form_post" and params["prompt"] == "none"
    assert params["redirect_uri"] == f"{TOOL}/lti/launch"
    assert params["client_id"] == lms.client_id and params["login_hint"] == "user-42"
    assert params["lti_message_hint"] == "hint-7"
    assert len(login.state) >= 40 and len(login.nonce) >= 40


def test_login_works_by_get_too(lms: LmsDouble) -> None:
    response = lms.client.get(
        "/lti/login", query_string={"iss": ISSUER, "login_hint": "u", "target_link_uri": f"{TOOL}/lti/launch"}
    )
    assert response.status_code == 302


def test_login_cookie_is_cross_site_secure_and_partitioned(lms: LmsDouble) -> None:
    response = lms.client.post(
        "/lti/login", data={"iss": ISSUER, "login_hint": "u", "target_link_uri": f"{TOOL}/lti/launch"}
    )
    cookies = response.headers.getlist("Set-Cookie")
    state_cookie = next(cookie for cookie in cookies if cookie.startswith("rebound_lti_"))
    for attribute in ("Secure", "HttpOnly", "SameSite=None", "Partitioned"):
        assert attribute in state_cookie


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({"iss": "https://unknown.example", "login_hint": "u", "target_link_uri": f"{TOOL}/lti/launch"}, "issuer-unknown"),
        ({"iss": ISSUER, "client_id": "nope", "login_hint": "u", "target_link_uri": f"{TOOL}/lti/launch"}, "client-unknown"),
        ({"iss": ISSUER, "target_link_uri": f"{TOOL}/lti/launch"}, "login-parameter-missing"),
        ({"iss": ISSUER, "login_hint": "u", "target_link_uri": "https://evil.example/lti/launch"}, "target-link-uri-foreign"),
        ({"iss": ISSUER, "login_hint": "u", "target_link_uri": f"{TOOL}/lti/launch", "lti_deployment_id": "other"}, "deployment-unknown"),
    ],
)
def test_bad_logins_get_a_clear_400(lms: LmsDouble, data: dict[str, str], code: str) -> None:
    response = lms.client.post("/lti/login", data=data)
    _refused(response, code)
    assert db.session.scalar(select(func.count()).select_from(LoginState)) == 0


# --- every forged or broken launch is refused ------------------------------------------------


def _assert_nothing_kept(lms: LmsDouble) -> None:
    assert _users() == 0
    assert not _signed_in(lms.client)


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 4000}, "token-expired"),
        ({"aud": "someone-else"}, "audience-mismatch"),
        ({"aud": ["rebound-client-1", "other"]}, "azp-missing"),
        ({"iss": "https://impostor.example"}, "issuer-mismatch"),
        ({c.DEPLOYMENT_ID: "unknown-deployment"}, "deployment-unknown"),
        ({c.MESSAGE_TYPE: "LtiSubmissionReviewRequest"}, "message-type-unsupported"),
        ({c.VERSION: "1.1"}, "version-unsupported"),
        ({c.RESOURCE_LINK: None}, "claim-missing"),
        ({c.TARGET_LINK_URI: "https://evil.example/x"}, "target-link-uri-foreign"),
        ({"nonce": "not-the-login-nonce"}, "nonce-mismatch"),
    ],
)
def test_invalid_claims_are_refused_and_keep_nothing(lms: LmsDouble, overrides: dict, code: str) -> None:
    login = lms.login()
    response = lms.post_launch(lms.sign(lms.claims(login, **overrides)), login.state)
    expected_status = 403 if code == "deployment-unknown" else 400
    _refused(response, code, expected_status)
    _assert_nothing_kept(lms)


def test_token_signed_by_another_key_is_refused(lms: LmsDouble) -> None:
    login = lms.login()
    forged = lms.sign(lms.claims(login), key=OTHER_KEY[0], kid=PLATFORM_KEY[1])
    _refused(lms.post_launch(forged, login.state), "signature-invalid")
    _assert_nothing_kept(lms)


def test_tampered_payload_is_refused(lms: LmsDouble) -> None:
    login = lms.login()
    header, _payload, signature = lms.sign(lms.claims(login)).split(".")
    claims = lms.claims(login, sub="admin-1")
    import base64

    tampered_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    _refused(lms.post_launch(f"{header}.{tampered_payload}.{signature}", login.state), "signature-invalid")
    _assert_nothing_kept(lms)


def test_hmac_signed_with_the_platform_public_key_is_refused(lms: LmsDouble) -> None:
    login = lms.login()
    public_pem = PLATFORM_KEY[0].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'kid': PLATFORM_KEY[1]}).encode())}.{b64(json.dumps(lms.claims(login)).encode())}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    _refused(lms.post_launch(f"{signing_input}.{b64(mac)}", login.state), "alg-not-allowed")
    _assert_nothing_kept(lms)


def test_alg_none_is_refused(lms: LmsDouble) -> None:
    login = lms.login()
    unsigned = jwt.encode(lms.claims(login), key=None, algorithm="none")
    _refused(lms.post_launch(unsigned, login.state), "alg-not-allowed")


def test_garbage_token_is_refused(lms: LmsDouble) -> None:
    login = lms.login()
    _refused(lms.post_launch("not.a.jwt", login.state), "token-malformed")
    _refused(lms.post_launch("", login.state), "id-token-missing")


def test_unknown_state_is_refused(lms: LmsDouble) -> None:
    login = lms.login()
    _refused(lms.post_launch(lms.sign(lms.claims(login)), "made-up-state"), "state-unknown")


def test_state_of_another_browser_is_refused(lms: LmsDouble, app: Flask) -> None:
    login = lms.login()
    token = lms.sign(lms.claims(login))
    attacker_browser = app.test_client()
    attacker_browser.get("/lti/login")  # any visit: this browser keeps Rebound's cookies
    attacker_browser.set_cookie("rebound_cookies", "1", domain="localhost")
    _refused(lms.post_launch(token, login.state, client=attacker_browser), "state-mismatch")
    _assert_nothing_kept(lms)


def test_mismatched_state_cookie_is_refused(lms: LmsDouble) -> None:
    login = lms.login()
    lms.client.set_cookie(state_cookie_name(login.state), "another-state", domain="localhost")
    _refused(lms.post_launch(lms.sign(lms.claims(login)), login.state), "state-mismatch")


def test_expired_state_is_refused(lms: LmsDouble) -> None:
    from datetime import timedelta

    login = lms.login()
    record = db.session.get(LoginState, login.state)
    assert record is not None
    record.expires_at = record.created_at - timedelta(seconds=1)
    db.session.commit()
    _refused(lms.post_launch(lms.sign(lms.claims(login)), login.state), "state-expired")


def test_anonymous_launch_gets_a_clear_page_and_no_user(lms: LmsDouble) -> None:
    login = lms.login()
    response = lms.post_launch(lms.sign(lms.claims(login, sub=None)), login.state)
    _refused(response, "anonymous-launch", 403)
    assert "launched it anonymously" in response.get_data(as_text=True)
    _assert_nothing_kept(lms)


def test_refused_launch_still_uses_up_its_nonce(lms: LmsDouble) -> None:
    login = lms.login()
    lms.post_launch(lms.sign(lms.claims(login, sub=None)), login.state)
    assert db.session.scalar(select(UsedNonce).where(UsedNonce.nonce == login.nonce)) is not None


def test_refusal_is_recorded_for_the_platform_health_page(lms: LmsDouble) -> None:
    login = lms.login()
    lms.post_launch(lms.sign(lms.claims(login, aud="someone-else")), login.state)
    platform = db.session.scalar(select(Platform).where(Platform.issuer == ISSUER))
    assert platform is not None and platform.last_error is not None
    assert platform.last_error.startswith("audience-mismatch")


# --- platform keys: fetched once, refetched on an unknown kid --------------------------------


def test_platform_keys_are_fetched_once_and_cached_in_the_database(lms: LmsDouble) -> None:
    lms.launch()
    lms.launch()
    assert lms.fetches == [JWKS_URL]


def test_unknown_kid_refetches_the_platform_keys(lms: LmsDouble) -> None:
    lms.launch()
    lms.jwks_documents[JWKS_URL] = _jwks(PLATFORM_KEY, OTHER_KEY)
    from datetime import timedelta

    from plugin.models import JwksCacheEntry

    entry = db.session.get(JwksCacheEntry, JWKS_URL)
    assert entry is not None
    entry.attempted_at = entry.attempted_at - timedelta(minutes=2)
    db.session.commit()
    login = lms.login()
    rotated = lms.sign(lms.claims(login), key=OTHER_KEY[0], kid=OTHER_KEY[1])
    assert lms.post_launch(rotated, login.state).status_code == 303
    assert lms.fetches == [JWKS_URL, JWKS_URL]


def test_unknown_kid_is_refused_when_a_refetch_does_not_know_it(lms: LmsDouble) -> None:
    login = lms.login()
    token = lms.sign(lms.claims(login), key=OTHER_KEY[0], kid=OTHER_KEY[1])
    _refused(lms.post_launch(token, login.state), "kid-unknown")
    _assert_nothing_kept(lms)


def test_unreachable_platform_keys_are_a_clear_refusal(lms: LmsDouble) -> None:
    del lms.jwks_documents[JWKS_URL]
    login = lms.login()
    response = lms.post_launch(lms.sign(lms.claims(login)), login.state)
    assert response.status_code == 400
    assert "jwks" in response.get_data(as_text=True)


# --- browsers that keep no cookies in the LMS frame --------------------------------------------


def test_without_cookies_the_launch_completes_in_a_new_window_once(lms: LmsDouble, app: Flask) -> None:
    login = lms.login()
    cookieless = app.test_client(use_cookies=False)
    response = lms.post_launch(lms.sign(lms.claims(login)), login.state, client=cookieless)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Open Rebound in a new window" in page and "Ada Lovelace" in page
    link = page.split('href="/lti/continue?launch=')[1].split('"')[0]

    new_window = app.test_client()
    finished = new_window.get(f"/lti/continue?launch={link}")
    assert finished.status_code == 303
    assert _signed_in(new_window)
    _refused(app.test_client().get(f"/lti/continue?launch={link}"), "launch-link-used")


def test_platform_storage_confirms_the_state_when_cookies_are_blocked(lms: LmsDouble, app: Flask) -> None:
    response = lms.client.post(
        "/lti/login",
        data={
            "iss": ISSUER,
            "login_hint": "u",
            "target_link_uri": f"{TOOL}/lti/launch",
            "lti_storage_target": "post_message_forwarding",
        },
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'data-storage-target="post_message_forwarding"' in page
    assert 'data-platform-origin="https://lms.example.edu"' in page
    state = page.split('data-state="')[1].split('"')[0]
    nonce = db.session.get(LoginState, state).nonce  # type: ignore[union-attr]

    cookieless = app.test_client(use_cookies=False)
    claims = lms.claims(None, nonce=nonce)
    verify_page = lms.post_launch(lms.sign(claims), state, client=cookieless).get_data(as_text=True)
    assert 'id="lti-storage-verify"' in verify_page
    token = verify_page.split('name="launch" value="')[1].split('"')[0]

    browser = app.test_client()
    wrong = browser.post("/lti/launch/verify", data={"launch": token, "state": "forged"})
    _refused(wrong, "state-mismatch")
    right = browser.post("/lti/launch/verify", data={"launch": token, "state": state})
    assert right.status_code == 303
    assert _signed_in(browser)


def test_expired_or_unknown_landing_links_are_refused(lms: LmsDouble) -> None:
    _refused(lms.client.get("/lti/landing?launch=nope"), "launch-link-expired")
    _refused(lms.client.get("/lti/continue?launch=nope"), "launch-link-expired")


# --- several processes ---------------------------------------------------------------------


def test_login_on_one_process_and_launch_on_another(
    lms: LmsDouble, app_factory: Callable[..., Flask], database_url: str, app: Flask
) -> None:
    other_process = app_factory(DATABASE_URL=database_url)
    # Both "processes" share the test's transaction, as two real ones share the database.
    connection = db.state(app).sessions.kw["bind"]
    db.state(other_process).sessions.configure(bind=connection, join_transaction_mode="create_savepoint")
    other_process.extensions["rebound.http_fetch"] = lms.fetch
    login = lms.login()
    other_browser_tab = other_process.test_client()
    for cookie in lms.client._cookies.values():  # the same browser, talking to the other process
        other_browser_tab.set_cookie(cookie.key, cookie.value, domain=cookie.domain)
    response = lms.post_launch(lms.sign(lms.claims(login)), login.state, client=other_browser_tab)
    assert response.status_code == 303
    assert db.session.scalar(select(func.count()).select_from(Launch)) == 1
    db.state(other_process).engine.dispose()
    assert DEPLOYMENT_ID
