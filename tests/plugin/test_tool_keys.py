"""Specification of the tool's own keys: kid, storage form, rotation, signing."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from plugin.tool_keys import (
    Keyring,
    NoSigningKeyError,
    ToolKey,
    client_assertion,
    generate_key,
    jwk_thumbprint,
    sign_jwt,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi"}

# RFC 7638 §3.1 test vector.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
    "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY"
    "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f"
    "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.fixture(scope="module")
def key() -> ToolKey:
    return generate_key(NOW)


def verify(token: str, keyring: Keyring, now: datetime) -> dict:
    """Verify as a platform would: find the kid in the tool's published JWKS."""
    published = jwt.PyJWKSet.from_dict(keyring.public_jwks(now))
    signing_key = published[jwt.get_unverified_header(token)["kid"]]
    return jwt.decode(
        token,
        signing_key,
        algorithms=["RS256"],
        options={"verify_exp": False, "verify_iat": False, "verify_aud": False},
    )


# --- kid and thumbprints ----------------------------------------------------------------


def test_thumbprint_matches_the_rfc_7638_example():
    assert jwk_thumbprint({"kty": "RSA", "n": RFC7638_N, "e": "AQAB"}) == RFC7638_THUMBPRINT


def test_thumbprint_ignores_optional_members():
    jwk = {"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "kid": "2011-04-29", "alg": "RS256"}

    assert jwk_thumbprint(jwk) == RFC7638_THUMBPRINT


def test_thumbprint_needs_an_rsa_key():
    with pytest.raises(ValueError):
        jwk_thumbprint({"kty": "EC", "crv": "P-256", "x": "a", "y": "b"})


def test_generated_key_kid_is_its_thumbprint(key):
    jwk = key.public_jwk()

    assert key.kid == jwk_thumbprint(jwk)
    assert jwk["kid"] == key.kid


@pytest.mark.parametrize("bits", [2048, 3072])
def test_generate_supports_2048_and_3072_bits(bits):
    assert generate_key(NOW, bits=bits).private_key.key_size == bits


@pytest.mark.parametrize("bits", [1024, 2047, 8192])
def test_generate_refuses_other_sizes(bits):
    with pytest.raises(ValueError):
        generate_key(NOW, bits=bits)


def test_public_jwk_has_no_private_parts_and_says_how_to_use_it(key):
    jwk = key.public_jwk()

    assert PRIVATE_MEMBERS.isdisjoint(jwk)
    assert jwk["kty"] == "RSA" and jwk["use"] == "sig" and jwk["alg"] == "RS256"


def test_repr_never_shows_the_private_key(key):
    assert "PRIVATE" not in repr(key)


# --- storage form -------------------------------------------------------------------------


def test_pem_round_trip_keeps_the_kid(key):
    loaded = ToolKey.from_pem(key.export_pem(), created_at=key.created_at, activated_at=key.activated_at)

    assert loaded.kid == key.kid
    assert loaded.private_key_pem.startswith("-----BEGIN PRIVATE KEY-----")


def test_encrypted_pem_round_trip_needs_the_password(key):
    pem = key.export_pem(b"correct horse")
    assert "ENCRYPTED" in pem

    assert ToolKey.from_pem(pem, created_at=NOW, activated_at=NOW, password=b"correct horse").kid == key.kid
    with pytest.raises(ValueError):
        ToolKey.from_pem(pem, created_at=NOW, activated_at=NOW, password=b"wrong")


def test_from_pem_refuses_non_rsa_keys():
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )

    with pytest.raises(ValueError):
        ToolKey.from_pem(pem, created_at=NOW, activated_at=NOW)


def test_naive_datetimes_are_refused(key):
    with pytest.raises(ValueError):
        dataclasses.replace(key, activated_at=NOW.replace(tzinfo=None))


# --- the keyring -----------------------------------------------------------------------------


def test_empty_keyring_cannot_sign():
    with pytest.raises(NoSigningKeyError):
        Keyring().signing_key(NOW)


def test_keyring_refuses_the_same_key_twice(key):
    with pytest.raises(ValueError):
        Keyring((key, key))


def test_signing_key_is_the_newest_active_key(key):
    newer = generate_key(NOW + timedelta(days=1))
    keyring = Keyring((key, newer))

    assert keyring.signing_key(NOW).kid == key.kid
    assert keyring.signing_key(NOW + timedelta(days=2)).kid == newer.kid


def test_retired_key_neither_signs_nor_is_published(key):
    keyring = Keyring((dataclasses.replace(key, retire_after=NOW + timedelta(hours=1)),))
    later = NOW + timedelta(hours=1)

    with pytest.raises(NoSigningKeyError):
        keyring.signing_key(later)
    assert keyring.public_jwks(later) == {"keys": []}


def test_rotation_makes_the_new_key_the_signer_and_keeps_the_old_published(key):
    keyring = Keyring((key,)).rotate(NOW + timedelta(days=30), grace=timedelta(hours=1))
    rotated_at = NOW + timedelta(days=30)
    new = keyring.signing_key(rotated_at)

    assert new.kid != key.kid
    published = {jwk["kid"] for jwk in keyring.public_jwks(rotated_at)["keys"]}
    assert published == {key.kid, new.kid}
    assert keyring.find(key.kid).retire_after == rotated_at + timedelta(hours=1)

    after_grace = {jwk["kid"] for jwk in keyring.public_jwks(rotated_at + timedelta(hours=1))["keys"]}
    assert after_grace == {new.kid}


def test_token_signed_before_rotation_verifies_during_grace(key):
    before = Keyring((key,))
    token = sign_jwt({"iss": "rebound"}, before, NOW)

    after = before.rotate(NOW + timedelta(minutes=1), grace=timedelta(minutes=10))

    assert verify(token, after, NOW + timedelta(minutes=5))["iss"] == "rebound"
    with pytest.raises(KeyError):
        verify(token, after, NOW + timedelta(minutes=11))


def test_rotation_can_publish_the_new_key_before_it_signs(key):
    keyring = Keyring((key,)).rotate(NOW, grace=timedelta(minutes=10), publish_ahead=timedelta(minutes=10))
    new = next(k for k in keyring.keys if k.kid != key.kid)

    assert keyring.signing_key(NOW + timedelta(minutes=5)).kid == key.kid
    assert new.kid in {jwk["kid"] for jwk in keyring.public_jwks(NOW)["keys"]}
    assert keyring.signing_key(NOW + timedelta(minutes=10)).kid == new.kid
    assert keyring.find(key.kid).retire_after == NOW + timedelta(minutes=20)


def test_rotation_never_extends_an_earlier_retirement(key):
    soon = NOW + timedelta(minutes=5)
    old = dataclasses.replace(generate_key(NOW - timedelta(days=9)), retire_after=soon)

    keyring = Keyring((old, key)).rotate(NOW, grace=timedelta(days=1))

    assert keyring.find(old.kid).retire_after == soon


def test_rotation_refuses_negative_windows(key):
    with pytest.raises(ValueError):
        Keyring((key,)).rotate(NOW, grace=timedelta(seconds=-1))


def test_prune_drops_retired_keys(key):
    keyring = Keyring((key,)).rotate(NOW, grace=timedelta(hours=1))

    assert [k.kid for k in keyring.prune(NOW + timedelta(hours=2)).keys] == [keyring.signing_key(NOW).kid]


def test_public_jwks_lists_the_newest_key_first(key):
    keyring = Keyring((key,)).rotate(NOW, grace=timedelta(hours=1))

    assert keyring.public_jwks(NOW)["keys"][0]["kid"] == keyring.signing_key(NOW).kid


# --- signing ---------------------------------------------------------------------------------


def test_signed_jwt_names_its_key_and_verifies_with_the_published_jwks(key):
    keyring = Keyring((key,))

    token = sign_jwt({"iss": "rebound", "aud": "lms"}, keyring, NOW)

    header = jwt.get_unverified_header(token)
    assert header == {"alg": "RS256", "kid": key.kid, "typ": "JWT"}
    claims = verify(token, keyring, NOW)
    assert claims["iat"] == int(NOW.timestamp())
    assert claims["exp"] == int((NOW + timedelta(minutes=5)).timestamp())
    assert claims["jti"]


def test_sign_jwt_keeps_the_callers_times_and_jti(key):
    claims = {"iat": 1, "exp": 2, "jti": "mine"}

    signed = verify(sign_jwt(claims, Keyring((key,)), NOW), Keyring((key,)), NOW)

    assert (signed["iat"], signed["exp"], signed["jti"]) == (1, 2, "mine")


def test_each_signed_jwt_gets_a_fresh_jti(key):
    keyring = Keyring((key,))

    first = verify(sign_jwt({}, keyring, NOW), keyring, NOW)["jti"]
    second = verify(sign_jwt({}, keyring, NOW), keyring, NOW)["jti"]

    assert first != second


def test_client_assertion_has_the_claims_rfc_7523_requires(key):
    keyring = Keyring((key,))

    token = client_assertion("client-1", "https://lms.example.edu/token", keyring, NOW)

    claims = verify(token, keyring, NOW)
    assert claims["iss"] == claims["sub"] == "client-1"
    assert claims["aud"] == "https://lms.example.edu/token"
    assert claims["jti"] and claims["exp"] > claims["iat"]
