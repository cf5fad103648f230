"""Fixtures for the LTI security core: keys, signed tokens and in-memory fakes.

Self-contained on purpose: no Flask, no database. The fakes implement the storage
protocols the way the real tables must behave (atomic, shared), in memory.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from plugin import claims as c
from plugin.claims import LaunchMessage
from plugin.id_token import validate_id_token
from plugin.platform_keys import FetchError, PlatformKeySet
from plugin.tool_keys import jwk_thumbprint

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
ISSUER = "https://lms.example.edu"
CLIENT_ID = "rebound-client-1"
DEPLOYMENT_ID = "deployment-1"
JWKS_URL = "https://lms.example.edu/.well-known/jwks.json"
TOOL_HOST = "rebound.example.com"
LAUNCH_URL = f"https://{TOOL_HOST}/lti/launch"


@dataclass(frozen=True)
class SigningKey:
    """A platform RSA key with its kid and public JWK."""

    private: rsa.RSAPrivateKey
    kid: str

    @property
    def public_jwk(self) -> dict[str, Any]:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}

    @property
    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _new_key() -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return SigningKey(private, jwk_thumbprint(jwk))


@pytest.fixture(scope="session")
def platform_key() -> SigningKey:
    """The key the test platform signs launches with."""
    return _new_key()


@pytest.fixture(scope="session")
def rotated_key() -> SigningKey:
    """The platform's next key, published only after a rotation."""
    return _new_key()


@pytest.fixture(scope="session")
def attacker_key() -> SigningKey:
    """A key nobody registered."""
    return _new_key()


def jwks(*keys: SigningKey | dict[str, Any]) -> str:
    """Serialise a JWK Set from signing keys or raw JWK dicts."""
    return json.dumps({"keys": [key.public_jwk if isinstance(key, SigningKey) else key for key in keys]})


@dataclass
class FakeFetch:
    """A ``Fetch`` that serves queued responses and counts calls."""

    responses: list[str | Exception] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def serve(self, *responses: str | Exception) -> None:
        self.responses = list(responses)

    def __call__(self, url: str) -> str:
        self.calls.append(url)
        if not self.responses:
            raise FetchError("no response queued")
        response = self.responses[0] if len(self.responses) == 1 else self.responses.pop(0)
        if isinstance(response, Exception):
            raise response
        return response


@dataclass
class MemoryJwksStore:
    """In-memory ``JwksStore``; the production one is a shared table."""

    documents: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    attempts: dict[str, datetime] = field(default_factory=dict)

    def get(self, jwks_url: str) -> tuple[str, datetime] | None:
        return self.documents.get(jwks_url)

    def put(self, jwks_url: str, jwks_json: str, fetched_at: datetime) -> None:
        self.documents[jwks_url] = (jwks_json, fetched_at)

    def try_begin_fetch(self, jwks_url: str, now: datetime, min_interval: timedelta) -> bool:
        last = self.attempts.get(jwks_url)
        if last is not None and now - last < min_interval:
            return False
        self.attempts[jwks_url] = now
        return True


@dataclass
class MemoryNonceStore:
    """In-memory ``NonceStore``; the production one is a table with a unique key."""

    used: dict[tuple[str, str], datetime] = field(default_factory=dict)

    def consume(self, issuer: str, nonce: str, expires_at: datetime) -> bool:
        if (issuer, nonce) in self.used:
            return False
        self.used[(issuer, nonce)] = expires_at
        return True


@dataclass(frozen=True)
class Reg:
    """A platform registration as the validator sees it."""

    issuer: str = ISSUER
    client_id: str = CLIENT_ID
    deployment_ids: frozenset[str] = frozenset({DEPLOYMENT_ID})


@pytest.fixture
def fetch(platform_key: SigningKey) -> FakeFetch:
    """A platform JWKS endpoint publishing ``platform_key``."""
    return FakeFetch([jwks(platform_key)])


@pytest.fixture
def jwks_store() -> MemoryJwksStore:
    return MemoryJwksStore()


@pytest.fixture
def nonce_store() -> MemoryNonceStore:
    return MemoryNonceStore()


@pytest.fixture
def key_set(fetch: FakeFetch, jwks_store: MemoryJwksStore) -> PlatformKeySet:
    return PlatformKeySet(JWKS_URL, fetch, jwks_store)


class Lti:
    """Factory for platform-side test data: claims, signed tokens, forged tokens.

    Reached through the ``lti`` fixture so tests never import this conftest.
    """

    now = NOW
    issuer = ISSUER
    client_id = CLIENT_ID
    deployment_id = DEPLOYMENT_ID
    jwks_url = JWKS_URL
    tool_host = TOOL_HOST
    launch_url = LAUNCH_URL

    def __init__(self, platform: SigningKey, rotated: SigningKey, attacker: SigningKey) -> None:
        self.platform_key = platform
        self.rotated_key = rotated
        self.attacker_key = attacker

    @staticmethod
    def jwks(*keys: SigningKey | dict[str, Any]) -> str:
        """Serialise a JWK Set from signing keys or raw JWK dicts."""
        return jwks(*keys)

    @staticmethod
    def claims(**overrides: Any) -> dict[str, Any]:
        """A complete, valid LtiResourceLinkRequest payload issued at NOW."""
        iat = int(NOW.timestamp())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": CLIENT_ID,
            "sub": "user-42",
            "iat": iat,
            "exp": iat + 300,
            "nonce": "nonce-1",
            "name": "Ada Lovelace",
            "given_name": "Ada",
            "family_name": "Lovelace",
            "email": "ada@example.com",
            c.VERSION: "1.3.0",
            c.MESSAGE_TYPE: c.RESOURCE_LINK_REQUEST,
            c.DEPLOYMENT_ID: DEPLOYMENT_ID,
            c.TARGET_LINK_URI: LAUNCH_URL,
            c.RESOURCE_LINK: {"id": "link-1", "title": "Own it"},
            c.ROLES: ["http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"],
            c.CONTEXT: {"id": "course-1", "title": "Social media mistakes", "label": "SMM"},
        }
        claims.update(overrides)
        return claims

    @classmethod
    def deep_linking_claims(cls, **overrides: Any) -> dict[str, Any]:
        """A complete, valid LtiDeepLinkingRequest payload issued at NOW."""
        claims = cls.claims(
            **{
                c.MESSAGE_TYPE: c.DEEP_LINKING_REQUEST,
                c.ROLES: ["http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"],
                c.DEEP_LINKING_SETTINGS: {
                    "deep_link_return_url": "https://lms.example.edu/deep_links",
                    "accept_types": ["ltiResourceLink"],
                    "accept_presentation_document_targets": ["iframe", "window"],
                    "accept_multiple": True,
                    "data": "opaque-platform-state",
                },
            }
        )
        del claims[c.RESOURCE_LINK]
        claims.update(overrides)
        return claims

    def sign(
        self,
        claims: dict[str, Any],
        key: SigningKey | None = None,
        *,
        kid: str | None = None,
        **headers: Any,
    ) -> str:
        """Sign claims with RS256 the way a platform does (platform key by default)."""
        key = key or self.platform_key
        return jwt.encode(claims, key.private, algorithm="RS256", headers={"kid": kid or key.kid, **headers})

    def token(self, **overrides: Any) -> str:
        """A valid resource link launch token, claims overridden as given."""
        return self.sign(self.claims(**overrides))

    @staticmethod
    def hand_made(header: dict[str, Any], claims: dict[str, Any], signature: bytes) -> str:
        """Assemble a compact JWS by hand, for attacks PyJWT refuses to produce."""
        return ".".join(
            (_b64url(json.dumps(header).encode()), _b64url(json.dumps(claims).encode()), _b64url(signature))
        )

    @staticmethod
    def hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
        """An HS256 token keyed with ``secret`` (the public-key-as-HMAC-secret attack)."""
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64url(mac)}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@pytest.fixture
def lti(platform_key: SigningKey, rotated_key: SigningKey, attacker_key: SigningKey) -> Lti:
    """Claims and tokens as the test platform would send them."""
    return Lti(platform_key, rotated_key, attacker_key)


@pytest.fixture
def make_key_set(jwks_store: MemoryJwksStore) -> Callable[..., PlatformKeySet]:
    """Build a ``PlatformKeySet`` on the shared test store with a given fetch."""

    def build(fetch: FakeFetch, **options: Any) -> PlatformKeySet:
        return PlatformKeySet(JWKS_URL, fetch, jwks_store, **options)

    return build


@pytest.fixture
def registration() -> Reg:
    return Reg()


Validate = Callable[..., LaunchMessage]


@pytest.fixture
def validate(key_set: PlatformKeySet, nonce_store: MemoryNonceStore) -> Iterator[Validate]:
    """Call ``validate_id_token`` with the test registration; keywords override."""

    def run(token: str, **overrides: Any) -> LaunchMessage:
        arguments: dict[str, Any] = {
            "registration": Reg(),
            "key_source": key_set,
            "nonce_store": nonce_store,
            "now": NOW,
            "tool_hosts": {TOOL_HOST},
        }
        arguments.update(overrides)
        return validate_id_token(token, **arguments)

    yield run
