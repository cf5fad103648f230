"""The tool's own RSA keys: generation, kid, rotation, the public JWKS and signing.

Plain data in, plain data out: a ``Keyring`` is an immutable tuple of ``ToolKey``
values whose fields map one-to-one onto table columns; storing them is the caller's
job. Rotation without downtime works in two overlapping windows:

* ``publish_ahead``: the new key appears in the JWKS before it signs anything, so a
  platform that caches the tool's JWKS (Canvas: up to five minutes) already has it
  when the first message signed with it arrives.
* ``grace``: after the new key starts signing, the old one stays published for this
  long, so messages the old key signed shortly before the switch still verify.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ALGORITHM = "RS256"
KEY_SIZES = frozenset({2048, 3072, 4096})
DEFAULT_KEY_SIZE = 2048


class NoSigningKeyError(RuntimeError):
    """The keyring holds no key that may sign at the given time."""


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """Return the RFC 7638 SHA-256 thumbprint of an RSA JWK, base64url without padding."""
    if jwk.get("kty") != "RSA" or not jwk.get("n") or not jwk.get("e"):
        raise ValueError("an RSA JWK with 'n' and 'e' is required for a thumbprint")
    # RFC 7638 §3: only the required members, in lexicographic order, no whitespace.
    canonical = json.dumps(
        {"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"), sort_keys=True
    )
    digest = hashlib.sha256(canonical.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class ToolKey:
    """One RSA key of the tool, with the times that decide what it may do."""

    kid: str
    private_key_pem: str = field(repr=False)
    created_at: datetime
    activated_at: datetime
    retire_after: datetime | None = None

    def __post_init__(self) -> None:
        for name in ("created_at", "activated_at", "retire_after"):
            value = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                raise ValueError(f"ToolKey.{name} must be timezone-aware")

    @classmethod
    def from_pem(
        cls,
        pem: str | bytes,
        *,
        created_at: datetime,
        activated_at: datetime,
        retire_after: datetime | None = None,
        password: bytes | None = None,
    ) -> ToolKey:
        """Load a stored private key; the kid is recomputed, never trusted from storage."""
        data = pem.encode("ascii") if isinstance(pem, str) else pem
        key = serialization.load_pem_private_key(data, password=password)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("tool keys must be RSA private keys")
        if key.key_size not in KEY_SIZES:
            raise ValueError(f"tool keys must have {sorted(KEY_SIZES)} bits, not {key.key_size}")
        return cls(
            kid=_kid(key.public_key()),
            private_key_pem=_pkcs8(key, None),
            created_at=created_at,
            activated_at=activated_at,
            retire_after=retire_after,
        )

    @cached_property
    def private_key(self) -> rsa.RSAPrivateKey:
        """The loaded private key (parsed once per instance)."""
        key = serialization.load_pem_private_key(self.private_key_pem.encode("ascii"), None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("tool keys must be RSA private keys")
        return key

    def public_jwk(self) -> dict[str, str]:
        """Return the public half as a JWK with kid, use=sig and alg=RS256."""
        jwk = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {
            "kty": "RSA",
            "n": jwk["n"],
            "e": jwk["e"],
            "kid": self.kid,
            "use": "sig",
            "alg": ALGORITHM,
        }

    def export_pem(self, password: bytes | None = None) -> str:
        """Return the private key as PKCS#8 PEM, encrypted when a password is given."""
        return _pkcs8(self.private_key, password)

    def is_published(self, now: datetime) -> bool:
        """Whether the key belongs in the public JWKS at ``now``."""
        return self.retire_after is None or now < self.retire_after

    def may_sign(self, now: datetime) -> bool:
        """Whether the key is activated and not retired at ``now``."""
        return self.activated_at <= now and self.is_published(now)


def generate_key(
    now: datetime, *, bits: int = DEFAULT_KEY_SIZE, activate_at: datetime | None = None
) -> ToolKey:
    """Generate a new RSA key whose kid is its RFC 7638 thumbprint."""
    if bits not in KEY_SIZES:
        raise ValueError(f"key size must be one of {sorted(KEY_SIZES)}, not {bits}")
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return ToolKey(
        kid=_kid(key.public_key()),
        private_key_pem=_pkcs8(key, None),
        created_at=now,
        activated_at=activate_at or now,
    )


@dataclass(frozen=True)
class Keyring:
    """The tool's keys; immutable, so every change returns a new keyring to store."""

    keys: tuple[ToolKey, ...] = ()

    def __post_init__(self) -> None:
        kids = [key.kid for key in self.keys]
        if len(kids) != len(set(kids)):
            raise ValueError("a keyring cannot hold the same key twice")

    def signing_key(self, now: datetime) -> ToolKey:
        """Return the newest activated, unretired key."""
        candidates = [(index, key) for index, key in enumerate(self.keys) if key.may_sign(now)]
        if not candidates:
            raise NoSigningKeyError("no tool key may sign now; generate one (e.g. `rebound keys rotate`)")
        # Ties (a rotation in the same instant) go to the key added last.
        _, newest = max(candidates, key=lambda pair: (pair[1].activated_at, pair[0]))
        return newest

    def public_jwks(self, now: datetime) -> dict[str, list[dict[str, str]]]:
        """Return the JWKS to publish: every key not past retire_after, public parts only."""
        published = sorted(
            (pair for pair in enumerate(self.keys) if pair[1].is_published(now)),
            key=lambda pair: (pair[1].activated_at, pair[0]),
            reverse=True,
        )
        return {"keys": [key.public_jwk() for _, key in published]}

    def find(self, kid: str) -> ToolKey | None:
        """Return the key with this kid, if the keyring holds it."""
        return next((key for key in self.keys if key.kid == kid), None)

    def rotate(
        self,
        now: datetime,
        grace: timedelta,
        *,
        bits: int = DEFAULT_KEY_SIZE,
        publish_ahead: timedelta = timedelta(0),
    ) -> Keyring:
        """Add a new key that signs from ``now + publish_ahead``; retire the others after grace.

        Every key still published gets ``retire_after = activation of the new key +
        grace`` unless it already retires sooner.
        """
        if grace < timedelta(0) or publish_ahead < timedelta(0):
            raise ValueError("grace and publish_ahead cannot be negative")
        new = generate_key(now, bits=bits, activate_at=now + publish_ahead)
        retire_at = new.activated_at + grace
        kept = tuple(
            replace(key, retire_after=retire_at)
            if key.is_published(now) and (key.retire_after is None or key.retire_after > retire_at)
            else key
            for key in self.keys
        )
        return Keyring((*kept, new))

    def prune(self, now: datetime) -> Keyring:
        """Return the keyring without keys past their retire_after."""
        return Keyring(tuple(key for key in self.keys if key.is_published(now)))


def sign_jwt(
    claims: Mapping[str, Any],
    keyring: Keyring,
    now: datetime,
    *,
    expires_in: timedelta = timedelta(minutes=5),
) -> str:
    """Sign a JWT with the current key, ``kid`` in the header.

    ``iat``, ``exp`` (``now + expires_in``) and a random ``jti`` are added unless the
    claims already carry them.
    """
    key = keyring.signing_key(now)
    payload = dict(claims)
    payload.setdefault("iat", int(now.timestamp()))
    payload.setdefault("exp", int((now + expires_in).timestamp()))
    payload.setdefault("jti", secrets.token_urlsafe(18))
    return jwt.encode(payload, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": "JWT"})


def client_assertion(client_id: str, audience: str, keyring: Keyring, now: datetime) -> str:
    """Sign the client-credentials assertion (RFC 7523) for an LTI Advantage token request.

    ``audience`` is the platform's token endpoint URL, or its ``authorization_server``
    when the platform published one.
    """
    return sign_jwt({"iss": client_id, "sub": client_id, "aud": audience}, keyring, now)


def _kid(public_key: rsa.RSAPublicKey) -> str:
    return jwk_thumbprint(RSAAlgorithm.to_jwk(public_key, as_dict=True))


def _pkcs8(key: rsa.RSAPrivateKey, password: bytes | None) -> str:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode("ascii")
