"""Specification of id_token validation: one test per way a launch is refused."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from plugin import claims as c
from plugin.errors import LaunchError
from plugin.id_token import Routing, peek_routing


def rejected(validate, token, code, **overrides) -> LaunchError:
    with pytest.raises(LaunchError) as caught:
        validate(token, **overrides)
    assert caught.value.code == code, caught.value
    assert caught.value.reason and caught.value.hint
    assert 400 <= caught.value.status < 600
    return caught.value


# --- the happy paths ---------------------------------------------------------------


def test_valid_resource_link_launch_is_accepted(validate, lti, nonce_store):
    message = validate(lti.token())

    assert message.issuer == lti.issuer
    assert message.client_id == lti.client_id
    assert message.subject == "user-42"
    assert message.deployment_id == lti.deployment_id
    assert message.is_resource_link
    assert message.resource_link is not None and message.resource_link.id == "link-1"
    assert message.context is not None and message.context.id == "course-1"
    assert message.clock_skew_seconds == 0
    assert (lti.issuer, "nonce-1") in nonce_store.used


def test_valid_deep_linking_launch_is_accepted(validate, lti):
    message = validate(lti.sign(lti.deep_linking_claims()))

    assert message.is_deep_linking
    assert message.deep_linking is not None
    assert message.deep_linking.deep_link_return_url == "https://lms.example.edu/deep_links"
    assert message.deep_linking.data == "opaque-platform-state"


def test_anonymous_launch_without_sub_is_accepted_with_no_subject(validate, lti):
    claims = lti.claims()
    del claims["sub"]

    message = validate(lti.sign(claims))

    assert message.subject is None
    assert message.is_anonymous


def test_audience_as_list_with_matching_azp_is_accepted(validate, lti):
    token = lti.token(aud=[lti.client_id, "another-client"], azp=lti.client_id)

    assert validate(token).audience == (lti.client_id, "another-client")


def test_single_audience_in_a_list_needs_no_azp(validate, lti):
    assert validate(lti.token(aud=[lti.client_id])).client_id == lti.client_id


def test_unrelated_header_fields_like_an_embedded_jwk_are_ignored(validate, lti):
    # The classic "trust the key in the header" attack: we only ever use the JWKS.
    token = lti.sign(
        lti.claims(), lti.attacker_key, kid=lti.platform_key.kid, jwk=lti.attacker_key.public_jwk
    )

    rejected(validate, token, "signature-invalid")


# --- shape and header ----------------------------------------------------------------


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d", "a..c", ".b.c", "%%%.%%%.%%%"])
def test_malformed_token_is_rejected(validate, token):
    rejected(validate, token, "token-malformed")


def test_oversized_token_is_rejected_before_any_work(validate, lti, fetch):
    rejected(validate, lti.token(padding="x" * 200_000), "token-malformed")
    assert fetch.calls == []


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_rejected(validate, lti, fetch, nonce_store, alg):
    token = lti.hand_made({"alg": alg, "kid": lti.platform_key.kid}, lti.claims(), b"")
    assert token.endswith(".")  # an unsecured JWS has an empty signature part

    rejected(validate, token, "alg-not-allowed")
    assert fetch.calls == []
    assert nonce_store.used == {}


def test_hs256_signed_with_the_platform_public_key_pem_is_rejected(validate, lti, nonce_store):
    header = {"alg": "HS256", "typ": "JWT", "kid": lti.platform_key.kid}
    token = lti.hs256(header, lti.claims(), lti.platform_key.public_pem)

    error = rejected(validate, token, "alg-not-allowed")

    assert error.details["alg"] == "HS256"
    assert nonce_store.used == {}


@pytest.mark.parametrize("alg", ["RS512", "PS256", "ES256", "HS512", "rs256"])
def test_any_other_algorithm_is_rejected(validate, lti, alg):
    token = lti.hand_made({"alg": alg, "kid": lti.platform_key.kid}, lti.claims(), b"sig")

    rejected(validate, token, "alg-not-allowed")


def test_missing_kid_is_rejected(validate, lti):
    token = lti.hand_made({"alg": "RS256"}, lti.claims(), b"sig")

    rejected(validate, token, "kid-missing")


def test_critical_header_extensions_are_rejected(validate, lti):
    token = lti.sign(lti.claims(), crit=["exp"])

    rejected(validate, token, "token-malformed")


# --- signature -----------------------------------------------------------------------


def test_forged_signature_is_rejected(validate, lti):
    token = lti.sign(lti.claims(), lti.attacker_key, kid=lti.platform_key.kid)

    rejected(validate, token, "signature-invalid")


def test_tampered_payload_is_rejected(validate, lti):
    header, _, signature = lti.token().split(".")
    tampered_claims = lti.claims(
        **{c.ROLES: ["http://purl.imsglobal.org/vocab/lis/v2/institution/person#Administrator"]}
    )
    _, tampered_body, _ = lti.sign(tampered_claims).split(".")

    rejected(validate, f"{header}.{tampered_body}.{signature}", "signature-invalid")


def test_forged_token_does_not_consume_the_nonce(validate, lti, nonce_store):
    forged = lti.sign(lti.claims(), lti.attacker_key, kid=lti.platform_key.kid)
    rejected(validate, forged, "signature-invalid")

    assert nonce_store.used == {}
    assert validate(lti.token()).nonce == "nonce-1"


def test_unknown_kid_is_refetched_and_the_rotated_key_accepted(validate, lti, fetch):
    validate(lti.token(nonce="before-rotation"))
    fetch.serve(lti.jwks(lti.platform_key, lti.rotated_key))

    message = validate(
        lti.sign(lti.claims(nonce="after-rotation"), lti.rotated_key), now=lti.now + timedelta(minutes=5)
    )

    assert message.nonce == "after-rotation"
    assert len(fetch.calls) == 2


def test_kid_still_unknown_after_refetch_is_rejected(validate, lti, fetch):
    token = lti.sign(lti.claims(), lti.attacker_key)

    error = rejected(validate, token, "kid-unknown")

    assert error.details["kid"] == lti.attacker_key.kid
    assert len(fetch.calls) == 1


def test_jwks_unreachable_is_rejected(validate, lti, fetch):
    from plugin.platform_keys import FetchError

    fetch.serve(FetchError("connection refused"))

    error = rejected(validate, lti.token(), "jwks-unreachable")

    assert error.status == 400


def test_malformed_jwks_is_rejected(validate, lti, fetch):
    fetch.serve("<html>Sign in</html>")

    rejected(validate, lti.token(), "jwks-malformed")


# --- issuer and audience -------------------------------------------------------------


def test_wrong_issuer_is_rejected(validate, lti):
    rejected(validate, lti.token(iss="https://evil.example.com"), "issuer-mismatch")


def test_issuer_must_match_exactly_including_trailing_slash(validate, lti):
    rejected(validate, lti.token(iss=lti.issuer + "/"), "issuer-mismatch")


def test_wrong_audience_is_rejected(validate, lti):
    rejected(validate, lti.token(aud="someone-else"), "audience-mismatch")


def test_audience_list_without_our_client_id_is_rejected(validate, lti):
    # pylti1p3 only looked at aud[0]; we look at the whole list.
    rejected(validate, lti.token(aud=["a", "b"], azp="a"), "audience-mismatch")


def test_several_audiences_without_azp_are_rejected(validate, lti):
    rejected(validate, lti.token(aud=[lti.client_id, "other"]), "azp-missing")


def test_several_audiences_with_wrong_azp_are_rejected(validate, lti):
    rejected(validate, lti.token(aud=[lti.client_id, "other"], azp="other"), "azp-mismatch")


def test_single_audience_with_wrong_azp_is_rejected(validate, lti):
    rejected(validate, lti.token(azp="other"), "azp-mismatch")


def test_missing_audience_is_rejected(validate, lti):
    claims = lti.claims()
    del claims["aud"]

    rejected(validate, lti.sign(claims), "claim-missing")


# --- time ------------------------------------------------------------------------------


def test_expired_token_is_rejected(validate, lti):
    error = rejected(validate, lti.token(), "token-expired", now=lti.now + timedelta(seconds=300 + 61))

    assert error.details["leeway_seconds"] == 60


def test_expiry_within_leeway_is_accepted(validate, lti):
    assert validate(lti.token(), now=lti.now + timedelta(seconds=300 + 59)).subject


def test_iat_in_the_future_beyond_leeway_is_rejected(validate, lti):
    iat = int(lti.now.timestamp()) + 120

    error = rejected(validate, lti.token(iat=iat, exp=iat + 300), "iat-in-future")

    assert error.details["clock_skew_seconds"] == 120


def test_clock_skew_within_leeway_is_accepted_and_reported(validate, lti):
    iat = int(lti.now.timestamp()) + 45

    message = validate(lti.token(iat=iat, exp=iat + 300))

    assert message.clock_skew_seconds == 45


def test_platform_clock_behind_is_reported_as_negative_skew(validate, lti):
    assert validate(lti.token(), now=lti.now + timedelta(seconds=30)).clock_skew_seconds == -30


def test_leeway_is_configurable(validate, lti):
    iat = int(lti.now.timestamp()) + 45

    rejected(validate, lti.token(iat=iat, exp=iat + 300), "iat-in-future", leeway_seconds=10)


def test_token_issued_too_long_ago_is_rejected_even_if_exp_allows(validate, lti):
    iat = int(lti.now.timestamp()) - 7200

    rejected(validate, lti.token(iat=iat, exp=iat + 86400), "token-too-old")


def test_not_before_in_the_future_is_rejected(validate, lti):
    rejected(validate, lti.token(nbf=int(lti.now.timestamp()) + 600), "token-not-yet-valid")


@pytest.mark.parametrize("claim", ["exp", "iat"])
def test_missing_time_claim_is_rejected(validate, lti, claim):
    claims = lti.claims()
    del claims[claim]

    error = rejected(validate, lti.sign(claims), "claim-missing")

    assert error.details["claim"] == claim


@pytest.mark.parametrize(
    "change",
    [{"exp": "tomorrow"}, {"exp": float("inf")}, {"iat": float("nan")}, {"iat": True}],
)
def test_non_numeric_or_non_finite_times_are_rejected(validate, lti, change):
    rejected(validate, lti.token(**change), "claim-invalid")


def test_nonce_is_kept_no_longer_than_the_token_could_be_replayed(validate, lti, nonce_store):
    validate(lti.token())

    expires_at = nonce_store.used[(lti.issuer, "nonce-1")]
    assert expires_at == lti.now + timedelta(seconds=300 + 60)


def test_naive_now_is_a_programming_error(validate, lti):
    with pytest.raises(ValueError):
        validate(lti.token(), now=lti.now.replace(tzinfo=None))


# --- nonce -----------------------------------------------------------------------------


def test_replayed_nonce_is_rejected(validate, lti):
    token = lti.token()
    validate(token)

    error = rejected(validate, token, "nonce-replayed")

    assert "again from the LMS" in error.reason


def test_same_nonce_in_a_fresh_token_is_rejected(validate, lti):
    validate(lti.token(nonce="n"))

    rejected(validate, lti.token(nonce="n", sub="someone-else"), "nonce-replayed")


def test_missing_nonce_is_rejected(validate, lti):
    claims = lti.claims()
    del claims["nonce"]

    rejected(validate, lti.sign(claims), "nonce-missing")


def test_nonce_different_from_the_login_is_rejected(validate, lti, nonce_store):
    rejected(validate, lti.token(), "nonce-mismatch", expected_nonce="sent-at-login")

    assert nonce_store.used == {}


def test_nonce_equal_to_the_login_is_accepted(validate, lti):
    assert validate(lti.token(), expected_nonce="nonce-1").nonce == "nonce-1"


def test_rejected_genuine_token_does_not_consume_the_nonce(validate, lti, nonce_store):
    rejected(validate, lti.token(**{c.DEPLOYMENT_ID: "unknown"}), "deployment-unknown")

    assert nonce_store.used == {}


# --- LTI claims ----------------------------------------------------------------------


def test_unknown_deployment_is_rejected(validate, lti):
    error = rejected(validate, lti.token(**{c.DEPLOYMENT_ID: "deployment-9"}), "deployment-unknown")

    assert error.status == 403
    assert error.details["deployment_id"] == "deployment-9"


def test_second_registered_deployment_is_accepted(validate, lti, registration):
    registration = dataclasses.replace(
        registration, deployment_ids=frozenset({lti.deployment_id, "deployment-2"})
    )

    message = validate(lti.token(**{c.DEPLOYMENT_ID: "deployment-2"}), registration=registration)

    assert message.deployment_id == "deployment-2"


def test_missing_deployment_id_is_rejected(validate, lti):
    claims = lti.claims()
    del claims[c.DEPLOYMENT_ID]

    error = rejected(validate, lti.sign(claims), "claim-missing")

    assert error.details["claim"] == c.DEPLOYMENT_ID


@pytest.mark.parametrize("version", ["1.1", "1.3", "2.0.0"])
def test_wrong_version_is_rejected(validate, lti, version):
    rejected(validate, lti.token(**{c.VERSION: version}), "version-unsupported")


@pytest.mark.parametrize(
    "message_type", ["LtiSubmissionReviewRequest", "LtiDeepLinkingResponse", "basic-lti-launch"]
)
def test_wrong_message_type_is_rejected(validate, lti, message_type):
    rejected(validate, lti.token(**{c.MESSAGE_TYPE: message_type}), "message-type-unsupported")


def test_target_link_uri_on_a_foreign_host_is_rejected(validate, lti):
    token = lti.token(**{c.TARGET_LINK_URI: "https://evil.example.com/lti/launch"})

    rejected(validate, token, "target-link-uri-foreign")


def test_target_link_uri_on_a_look_alike_host_is_rejected(validate, lti):
    token = lti.token(**{c.TARGET_LINK_URI: f"https://{lti.tool_host}.evil.com/lti/launch"})

    rejected(validate, token, "target-link-uri-foreign")


def test_target_link_uri_with_userinfo_trick_is_rejected(validate, lti):
    token = lti.token(**{c.TARGET_LINK_URI: f"https://{lti.tool_host}@evil.com/lti/launch"})

    rejected(validate, token, "target-link-uri-foreign")


def test_target_link_uri_host_match_ignores_case_and_accepts_explicit_port(validate, lti):
    token = lti.token(**{c.TARGET_LINK_URI: "https://Rebound.Example.com:8443/lti/launch"})

    assert validate(token, tool_hosts={"rebound.example.com:8443"}).subject


def test_target_link_uri_on_another_port_of_our_host_is_rejected(validate, lti):
    token = lti.token(**{c.TARGET_LINK_URI: f"https://{lti.tool_host}:8443/lti/launch"})

    rejected(validate, token, "target-link-uri-foreign")


def test_target_link_uri_with_explicit_default_port_is_accepted(validate, lti):
    assert validate(lti.token(**{c.TARGET_LINK_URI: f"https://{lti.tool_host}:443/x"})).subject


@pytest.mark.parametrize("uri", ["javascript:alert(1)", "ftp://rebound.example.com/x", "/lti/launch"])
def test_target_link_uri_that_is_not_a_web_url_is_rejected(validate, lti, uri):
    rejected(validate, lti.token(**{c.TARGET_LINK_URI: uri}), "target-link-uri-foreign")


def test_resource_link_without_target_link_uri_is_rejected(validate, lti):
    claims = lti.claims()
    del claims[c.TARGET_LINK_URI]

    error = rejected(validate, lti.sign(claims), "claim-missing")

    assert error.details["claim"] == c.TARGET_LINK_URI


def test_resource_link_without_resource_link_id_is_rejected(validate, lti):
    error = rejected(validate, lti.token(**{c.RESOURCE_LINK: {"title": "no id"}}), "claim-missing")

    assert error.details["claim"] == c.RESOURCE_LINK + "#id"


def test_resource_link_without_roles_claim_is_rejected(validate, lti):
    claims = lti.claims()
    del claims[c.ROLES]

    rejected(validate, lti.sign(claims), "claim-missing")


def test_deep_linking_without_settings_is_rejected(validate, lti):
    claims = lti.deep_linking_claims()
    del claims[c.DEEP_LINKING_SETTINGS]

    error = rejected(validate, lti.sign(claims), "claim-missing")

    assert error.details["claim"] == c.DEEP_LINKING_SETTINGS


def test_deep_linking_without_return_url_is_rejected(validate, lti):
    claims = lti.deep_linking_claims(**{c.DEEP_LINKING_SETTINGS: {"accept_types": ["ltiResourceLink"]}})

    error = rejected(validate, lti.sign(claims), "claim-missing")

    assert error.details["claim"] == c.DEEP_LINKING_SETTINGS + "#deep_link_return_url"


def test_rejection_for_missing_claim_keeps_nonce_unused(validate, lti, nonce_store):
    claims = lti.deep_linking_claims()
    del claims[c.DEEP_LINKING_SETTINGS]
    rejected(validate, lti.sign(claims), "claim-missing")

    assert nonce_store.used == {}


def test_errors_never_echo_the_raw_token(validate, lti):
    token = lti.token(aud="someone-else")

    error = rejected(validate, token, "audience-mismatch")

    assert token not in str(error.to_dict())


# --- finding the registration ----------------------------------------------------------------


def test_peek_routing_reads_issuer_client_and_deployment_without_keys(lti, fetch):
    token = lti.token(aud=["other", lti.client_id], azp=lti.client_id)

    assert peek_routing(token) == Routing(lti.issuer, (lti.client_id, "other"), lti.deployment_id)
    assert fetch.calls == []


def test_peek_routing_refuses_what_validation_would_refuse_on_sight(lti):
    with pytest.raises(LaunchError) as caught:
        peek_routing(lti.hand_made({"alg": "none", "kid": "k"}, lti.claims(), b""))
    assert caught.value.code == "alg-not-allowed"

    claims = lti.claims()
    del claims["iss"]
    with pytest.raises(LaunchError) as caught:
        peek_routing(lti.sign(claims))
    assert caught.value.code == "claim-missing"


def test_unknown_kids_in_a_flood_of_tokens_cost_one_refetch_a_minute(validate, lti, fetch):
    validate(lti.token(nonce="warm-up"))
    for second in range(0, 60, 5):
        token = lti.sign(lti.claims(), lti.attacker_key, kid=f"made-up-{second}")
        rejected(validate, token, "kid-unknown", now=lti.now + timedelta(minutes=2, seconds=second))

    assert len(fetch.calls) == 2
