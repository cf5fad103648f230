"""OAuth2 access tokens for LTI Advantage services (AGS, NRPS), and the HTTP calls made with them.

A token is requested by the client-credentials grant with a JWT assertion signed by the
tool's current key (1EdTech Security Framework §4.1), and cached in `lti_service_tokens`
per (platform, sorted scopes) until shortly before it expires, so every app process and
worker shares one token instead of asking the LMS for one per grade.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import Flask
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from course.models import Platform
from plugin.models import ServiceAccessToken
from plugin.stores import KeyringStore
from plugin.tool_keys import client_assertion
from plugin.web import USER_AGENT

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Refresh this long before the LMS says a token expires, so a call never races the expiry.
EXPIRY_MARGIN = timedelta(seconds=60)
# Used when a token response omits expires_in (it is only RECOMMENDED by RFC 6749).
DEFAULT_LIFETIME = timedelta(minutes=5)
MAX_ERROR_BODY = 300

logger = logging.getLogger("rebound.lti")


class ServiceError(Exception):
    """A call to an LMS service failed; the message says what failed and where, for operators.

    `status` is the HTTP status the LMS answered (None for timeouts, unreachable hosts and
    malformed answers); `retry_after` is the LMS's Retry-After, in seconds, when it sent one.
    """

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class TokenError(ServiceError):
    """The platform's token endpoint gave no usable access token."""


@dataclass(frozen=True)
class ServiceClient:
    """What calling an LMS's services needs: an HTTP session, the tool's key secret, limits."""

    http: requests.Session
    secret_key: str
    allow_http: bool = False
    connect_timeout: float = 5.0
    read_timeout: float = 15.0

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)


def client_for(app: Flask, **limits: float) -> ServiceClient:
    """The service client of an app: its shared HTTP session (with Rebound's User-Agent)."""
    settings = app.config["REBOUND_SETTINGS"]
    return ServiceClient(
        http=app.extensions["rebound.http_session"],
        secret_key=app.config["SECRET_KEY"],
        allow_http=not settings.is_production,
        **limits,
    )


def ensure_signing_key(session: Session, client: ServiceClient, now: datetime) -> None:
    """Make the tool's first key if there is none; callers commit before calling the LMS."""
    KeyringStore(session, client.secret_key).ensure(now)


def scope_key(scopes: list[str] | tuple[str, ...] | set[str]) -> str:
    """The cache key of a set of scopes: sorted, space separated (the form OAuth2 sends)."""
    return " ".join(sorted(set(scopes)))


def access_token(
    session: Session, platform: Platform, scopes: list[str] | tuple[str, ...], now: datetime, client: ServiceClient
) -> str:
    """A bearer token for these scopes on this platform: the cached one, or a new one."""
    key = scope_key(scopes)
    cached = session.execute(
        select(ServiceAccessToken.access_token, ServiceAccessToken.expires_at).where(
            ServiceAccessToken.platform_id == platform.id, ServiceAccessToken.scopes == key
        )
    ).first()
    if cached is not None and cached.expires_at > now:
        return str(cached.access_token)
    token, lifetime = request_token(platform, key, now, client, KeyringStore(session, client.secret_key))
    # Keep it until shortly before the LMS's expiry; a very short-lived token is used once.
    expires_at = now + lifetime - min(EXPIRY_MARGIN, lifetime / 2)
    table = ServiceAccessToken.__table__
    insert = (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert
    try:
        with session.begin_nested():
            session.execute(
                insert(table)
                .values(platform_id=platform.id, scopes=key, access_token=token, expires_at=expires_at)
                .on_conflict_do_update(
                    index_elements=[table.c.platform_id, table.c.scopes],
                    set_={"access_token": token, "expires_at": expires_at},
                )
            )
    except OperationalError as error:
        # SQLite refuses to turn this read into a write when another process wrote since
        # (another worker caching its token): the token is good all the same, just not cached.
        logger.info("service token not cached", extra={"platform_id": platform.id, "error": str(error.orig)})
    return token


def forget_token(session: Session, platform_id: int, scopes: list[str] | tuple[str, ...]) -> None:
    """Drop a cached token the LMS refused (401), so the next call asks for a new one."""
    session.execute(
        delete(ServiceAccessToken).where(
            ServiceAccessToken.platform_id == platform_id, ServiceAccessToken.scopes == scope_key(scopes)
        )
    )


def request_token(
    platform: Platform, scopes: str, now: datetime, client: ServiceClient, keys: KeyringStore
) -> tuple[str, timedelta]:
    """Ask the platform's token endpoint for a token; returns it and its lifetime."""
    url = platform.auth_token_url
    audience = platform.auth_token_audience or url
    keyring = keys.load()
    if not any(key.may_sign(now) for key in keyring.keys):
        # A key made here would be uncommitted while the LMS checks the assertion against
        # /lti/jwks, so it could not verify it: the caller makes keys and commits first.
        raise TokenError("Rebound has no signing key yet; `rebound keys list` makes the first one.")
    assertion = client_assertion(platform.client_id, audience, keyring, now)
    response = service_request(
        client,
        "POST",
        url,
        what="the token endpoint",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
            "scope": scopes,
        },
        headers={"Accept": "application/json"},
        error=TokenError,
    )
    document = _json_object(response, "the token endpoint", TokenError)
    token = document.get("access_token")
    if not isinstance(token, str) or not token:
        raise TokenError(f"The token endpoint {url} answered without an access_token.")
    token_type = document.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise TokenError(f"The token endpoint {url} answered token_type {token_type!r}, not Bearer.")
    expires_in = document.get("expires_in", int(DEFAULT_LIFETIME.total_seconds()))
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)  # some platforms send it quoted
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
        raise TokenError(f"The token endpoint {url} answered expires_in {expires_in!r}, not a positive number.")
    granted = document.get("scope")
    if isinstance(granted, str) and granted.strip():
        missing = sorted(set(scopes.split()) - set(granted.split()))
        if missing:
            raise TokenError(
                f"The platform did not grant {', '.join(missing)}; ask the LMS administrator to "
                "allow these services for Rebound."
            )
    return token, timedelta(seconds=float(expires_in))


def service_request(
    client: ServiceClient,
    method: str,
    url: str,
    *,
    what: str,
    token: str | None = None,
    error: type[ServiceError] = ServiceError,
    **options: Any,
) -> requests.Response:
    """Make one call to an LMS service; any failure becomes a `ServiceError` in plain words.

    Redirects are not followed: a bearer token must never travel to another address.
    """
    parts = urlsplit(url)
    if parts.scheme != "https" and not (client.allow_http and parts.scheme == "http"):
        raise error(f"{what} URL {url!r} must use https.")
    headers = {"User-Agent": USER_AGENT, **options.pop("headers", {})}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        response = client.http.request(
            method, url, headers=headers, timeout=client.timeout, allow_redirects=False, **options
        )
    except requests.Timeout:
        raise error(f"{what} at {url} did not answer within {client.read_timeout:g} s.") from None
    except requests.RequestException as failure:
        raise error(f"{what} at {url} could not be reached ({type(failure).__name__}).") from None
    if response.status_code >= 300:
        raise error(
            f"{what} at {url} answered HTTP {response.status_code}{_explain(response)}.",
            status=response.status_code,
            retry_after=_retry_after(response),
        )
    return response


def _json_object(response: requests.Response, what: str, error: type[ServiceError]) -> dict[str, Any]:
    try:
        document = json.loads(response.text)
    except (ValueError, RecursionError):
        raise error(f"{what} at {response.url} answered with something that is not JSON.") from None
    if not isinstance(document, dict):
        raise error(f"{what} at {response.url} answered with JSON that is not an object.")
    return document


def json_object(response: requests.Response, what: str) -> dict[str, Any]:
    """The response body as a JSON object, or a `ServiceError` saying it is malformed."""
    return _json_object(response, what, ServiceError)


def _explain(response: requests.Response) -> str:
    """The LMS's own words for a refusal: OAuth2 `error`/`error_description`, or the body's start."""
    text = (response.text or "").strip()
    if not text:
        return ""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return ": " + " ".join(text[:MAX_ERROR_BODY].split())
    if isinstance(document, dict):
        parts = [str(document[k]) for k in ("error", "error_description", "message", "reason") if document.get(k)]
        if parts:
            return ": " + " - ".join(parts)[:MAX_ERROR_BODY]
    return ": " + " ".join(text[:MAX_ERROR_BODY].split())


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None
