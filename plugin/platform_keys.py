"""A platform's public keys: fetched from its JWKS URL, cached in shared storage.

Nothing lives only in process memory: the cached key set and the time of the last
fetch attempt go through ``JwksStore``, so several app processes share one cache and
one rate limit. Network fetches happen

* when nothing is cached or the cache is older than ``max_age`` (default 24 h), and
* when a token names a ``kid`` the cached set lacks (the platform rotated its keys),

and never more than once per ``min_refetch_interval`` (default one minute) per JWKS
URL, whatever the outcome of the previous attempt; so a flood of tokens with made-up
``kid`` values, or an unreachable platform, costs at most one request a minute.
The cache fails closed: keys older than ``max_age`` are not used if the refetch fails.

Each process may keep a copy of the keys it verified with (``KeyMemory``) for a few
minutes, so a launch need not read and parse the stored key set again: the copy is never
newer than the store, a token naming a ``kid`` it lacks goes to the store (and the fetch
rules above), and it is read afresh from the store every ``MEMORY_TTL``, so a key the
platform withdrew stops working within minutes of another process refetching.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from plugin.errors import LaunchError

ALGORITHM = "RS256"
MIN_RSA_BITS = 2048
DEFAULT_MAX_AGE = timedelta(hours=24)
DEFAULT_MIN_REFETCH_INTERVAL = timedelta(minutes=1)
MAX_JWKS_BYTES = 256 * 1024
MEMORY_TTL = timedelta(minutes=5)


class FetchError(Exception):
    """The JWKS URL could not be read; the message says why, for the administrator."""


Fetch = Callable[[str], str]
"""Return the body of a GET on the URL, or raise ``FetchError``."""


class JwksStore(Protocol):
    """Shared storage for cached key sets and fetch attempts, keyed by JWKS URL.

    A database table with columns (jwks_url primary key, jwks_json, fetched_at,
    attempted_at) implements all three methods.
    """

    def get(self, jwks_url: str) -> tuple[str, datetime] | None:
        """Return the cached JWKS document and when it was fetched, or None."""
        ...

    def put(self, jwks_url: str, jwks_json: str, fetched_at: datetime) -> None:
        """Store a freshly fetched, well-formed JWKS document."""
        ...

    def try_begin_fetch(self, jwks_url: str, now: datetime, min_interval: timedelta) -> bool:
        """Record a fetch attempt at ``now`` and return True, unless one was recorded
        less than ``min_interval`` ago: then record nothing and return False.

        Must be atomic across processes, e.g. ``INSERT ... ON CONFLICT (jwks_url) DO
        UPDATE SET attempted_at = :now WHERE attempted_at <= :now - :interval
        RETURNING jwks_url`` (PostgreSQL, SQLite >= 3.35).
        """
        ...


class KeySource(Protocol):
    """Anything that can give the public key a platform signed with."""

    def key_for(self, kid: str, *, now: datetime) -> jwt.PyJWK:
        """Return the RS256 key with this kid, or raise ``LaunchError``."""
        ...


class KeyMemory:
    """A process's copy of the keys it verified with, per JWKS URL (thread-safe)."""

    def __init__(self, ttl: timedelta = MEMORY_TTL) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[datetime, datetime, dict[str, jwt.PyJWK]]] = {}
        self._lock = threading.Lock()

    def key(self, jwks_url: str, kid: str, *, now: datetime, max_age: timedelta) -> jwt.PyJWK | None:
        """The remembered key, if the copy is recent and the key set it came from still fresh."""
        with self._lock:
            entry = self._entries.get(jwks_url)
        if entry is None:
            return None
        remembered_at, fetched_at, keys = entry
        if now - remembered_at >= self.ttl or now - fetched_at > max_age:
            return None
        return keys.get(kid)

    def remember(self, jwks_url: str, kid: str, key: jwt.PyJWK, *, fetched_at: datetime, now: datetime) -> None:
        """Keep a key just verified from the key set fetched at `fetched_at`."""
        with self._lock:
            entry = self._entries.get(jwks_url)
            if entry is None or entry[1] != fetched_at or now - entry[0] >= self.ttl:
                entry = (now, fetched_at, {})
                self._entries[jwks_url] = entry
            entry[2][kid] = key


@dataclass(frozen=True)
class PlatformKeySet:
    """The key set behind one platform JWKS URL; implements ``KeySource``."""

    jwks_url: str
    fetch: Fetch
    store: JwksStore
    max_age: timedelta = DEFAULT_MAX_AGE
    min_refetch_interval: timedelta = DEFAULT_MIN_REFETCH_INTERVAL
    memory: KeyMemory | None = None

    def key_for(self, kid: str, *, now: datetime) -> jwt.PyJWK:
        """Return the key for ``kid``, fetching or refetching the JWKS when needed."""
        if self.memory is not None:
            remembered = self.memory.key(self.jwks_url, kid, now=now, max_age=self.max_age)
            if remembered is not None:
                return remembered
        cached = self._fresh_cache(now)
        if cached is not None and _find(cached[0], kid) is not None:
            return self._key(cached[0], kid, cached[1], now)
        if self.store.try_begin_fetch(self.jwks_url, now, self.min_refetch_interval):
            document = self._download()
            self.store.put(self.jwks_url, json.dumps(document), now)
            return self._key(document, kid, now, now)
        # Another request fetched (or tried to) moments ago; use what it stored.
        cached = self._fresh_cache(now)
        if cached is None:
            raise LaunchError(
                "jwks-unreachable",
                "Rebound could not check this launch with the LMS just now. Please try again in a minute.",
                f"The platform's key set at {self.jwks_url} could not be fetched recently; "
                "Rebound retries at most once a minute. Check that the URL is right and "
                "reachable from Rebound's servers.",
                status=400,
                details={"jwks_url": self.jwks_url},
            )
        return self._key(cached[0], kid, cached[1], now)

    def _fresh_cache(self, now: datetime) -> tuple[dict[str, Any], datetime] | None:
        entry = self.store.get(self.jwks_url)
        if entry is None:
            return None
        text, fetched_at = entry
        if now - fetched_at > self.max_age:
            return None
        try:
            return _parse_jwks(text, self.jwks_url), fetched_at
        except LaunchError:
            # A corrupt cache row is treated like a missing one: fetch again.
            return None

    def _download(self) -> dict[str, Any]:
        try:
            text = self.fetch(self.jwks_url)
        except FetchError as error:
            raise LaunchError(
                "jwks-unreachable",
                "Rebound could not check this launch with the LMS just now. Please try again in a minute.",
                f"Fetching the platform's key set from {self.jwks_url} failed: {error}. "
                "Check the JWKS URL registered for this platform.",
                status=400,
                details={"jwks_url": self.jwks_url, "error": str(error)},
            ) from error
        return _parse_jwks(text, self.jwks_url)

    def _key(self, document: dict[str, Any], kid: str, fetched_at: datetime, now: datetime) -> jwt.PyJWK:
        jwk = _find(document, kid)
        if jwk is None:
            raise LaunchError(
                "kid-unknown",
                "The LMS signed this launch with a key Rebound cannot find. Please try again in a minute.",
                f"The id_token names key {kid!r}, which is not in the key set at "
                f"{self.jwks_url} (fetched {fetched_at.isoformat()}). Check that the "
                "registered JWKS URL belongs to this platform and client.",
                details={"kid": kid, "jwks_url": self.jwks_url},
            )
        key = _rsa_key(jwk, kid, self.jwks_url)
        if self.memory is not None:
            self.memory.remember(self.jwks_url, kid, key, fetched_at=fetched_at, now=now)
        return key


def requests_fetch(
    session: requests.Session | None = None,
    *,
    timeout: float = 5.0,
    allow_http: bool = False,
    max_bytes: int = MAX_JWKS_BYTES,
) -> Fetch:
    """Return a ``Fetch`` using ``requests``: HTTPS only, no redirects, bounded size."""
    http = session or requests.Session()

    def fetch(url: str) -> str:
        if not url.startswith("https://") and not (allow_http and url.startswith("http://")):
            raise FetchError("the JWKS URL must use https")
        try:
            response = http.get(
                url,
                timeout=timeout,
                allow_redirects=False,
                stream=True,
                headers={"Accept": "application/json, application/jwk-set+json"},
            )
        except requests.RequestException as error:
            raise FetchError(f"{type(error).__name__}: {error}") from error
        with response:
            if response.is_redirect:
                # Trust is anchored on the registered URL; a redirect must be re-registered.
                location = response.headers.get("Location", "?")
                raise FetchError(f"it redirects to {location}; register that URL instead")
            if response.status_code != 200:
                raise FetchError(f"HTTP status {response.status_code}")
            try:
                body = response.raw.read(max_bytes + 1, decode_content=True)
            except (requests.RequestException, OSError) as error:
                raise FetchError(f"reading the response failed: {error}") from error
        if len(body) > max_bytes:
            raise FetchError(f"the response is larger than {max_bytes} bytes")
        return body.decode(response.encoding or "utf-8", errors="replace")

    return fetch


def _parse_jwks(text: str, jwks_url: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise _malformed(jwks_url, "the response is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise _malformed(jwks_url, 'the response is not a JWK Set (no "keys" list)')
    if not all(isinstance(key, dict) for key in document["keys"]):
        raise _malformed(jwks_url, 'an entry of "keys" is not a JSON object')
    return document


def _find(document: dict[str, Any], kid: str) -> dict[str, Any] | None:
    matches = [key for key in document["keys"] if key.get("kid") == kid]
    if len(matches) > 1:
        raise LaunchError(
            "jwks-malformed",
            "Rebound could not check this launch with the LMS.",
            f"The platform's key set publishes key id {kid!r} more than once; key ids "
            "must be unique. Report this to the LMS vendor.",
            status=400,
            details={"kid": kid},
        )
    return matches[0] if matches else None


def _rsa_key(jwk: dict[str, Any], kid: str, jwks_url: str) -> jwt.PyJWK:
    problem = None
    if jwk.get("kty") != "RSA":
        problem = f"it is a {jwk.get('kty')!r} key, not RSA"
    elif jwk.get("use") not in (None, "sig"):
        problem = f"its use is {jwk.get('use')!r}, not 'sig'"
    elif jwk.get("alg") not in (None, ALGORITHM):
        problem = f"its alg is {jwk.get('alg')!r}, not {ALGORITHM}"
    if problem is None:
        try:
            key = jwt.PyJWK(jwk, algorithm=ALGORITHM)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError) as error:
            problem = f"it cannot be read ({error})"
        else:
            public = key.key
            if not isinstance(public, rsa.RSAPublicKey):
                problem = "it is not an RSA public key"
            elif public.key_size < MIN_RSA_BITS:
                problem = f"it has {public.key_size} bits, fewer than {MIN_RSA_BITS}"
            else:
                return key
    raise LaunchError(
        "key-unsuitable",
        "The LMS signed this launch with a key Rebound does not accept.",
        f"Key {kid!r} in {jwks_url} cannot verify an RS256 id_token: {problem}. LTI 1.3 "
        "requires RSA keys of at least 2048 bits used for signatures.",
        details={"kid": kid, "jwks_url": jwks_url, "problem": problem},
    )


def _malformed(jwks_url: str, problem: str) -> LaunchError:
    return LaunchError(
        "jwks-malformed",
        "Rebound could not check this launch with the LMS.",
        f"The platform's key set at {jwks_url} is unusable: {problem}. Check that the "
        "registered JWKS URL points at the platform's JWK Set, not a web page.",
        status=400,
        details={"jwks_url": jwks_url, "problem": problem},
    )
