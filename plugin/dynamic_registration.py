"""LTI Dynamic Registration 1.0: read the platform's configuration, register, store it."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from sqlalchemy.orm import Session

from course.models import Platform
from plugin import claims as c
from plugin.registrations import RegistrationError, check_url, register_platform
from plugin.tool_config import registration_request

logger = logging.getLogger("rebound.lti.registration")
TIMEOUT_SECONDS = 10
MAX_BODY_BYTES = 256 * 1024


class DynamicRegistrationError(Exception):
    """Registration failed; `reason` says what happened, for the LMS administrator."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class HttpResult:
    """A minimal HTTP response: status and body text."""

    status: int
    text: str


HttpGet = Callable[[str], HttpResult]
HttpPost = Callable[[str, dict[str, Any], dict[str, str]], HttpResult]


def requests_get(http: requests.Session) -> HttpGet:
    def get(url: str) -> HttpResult:
        response = http.get(url, timeout=TIMEOUT_SECONDS, headers={"Accept": "application/json"})
        return HttpResult(response.status_code, response.text[:MAX_BODY_BYTES])

    return get


def requests_post(http: requests.Session) -> HttpPost:
    def post(url: str, body: dict[str, Any], headers: dict[str, str]) -> HttpResult:
        response = http.post(url, json=body, timeout=TIMEOUT_SECONDS, headers=headers)
        return HttpResult(response.status_code, response.text[:MAX_BODY_BYTES])

    return post


def _json(text: str, what: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except ValueError:
        raise DynamicRegistrationError(f"The {what} is not valid JSON.", 502) from None
    if not isinstance(document, dict):
        raise DynamicRegistrationError(f"The {what} is not a JSON object.", 502)
    return document


@dataclass(frozen=True)
class PlatformConfiguration:
    """The parts of a platform's openid-configuration Rebound relies on."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    registration_endpoint: str
    scopes_supported: list[str] | None
    product: str | None


def read_configuration(url: str, get: HttpGet, *, allow_http: bool) -> PlatformConfiguration:
    """Fetch and check the platform's openid-configuration."""
    hosts = ("localhost", "127.0.0.1", "::1") if allow_http else ()
    try:
        check_url(url, "openid_configuration", allow_http_hosts=hosts)
    except RegistrationError as error:
        raise DynamicRegistrationError(str(error)) from None
    try:
        result = get(url)
    except requests.RequestException as error:
        raise DynamicRegistrationError(
            f"Rebound could not reach the platform's configuration at {url} ({type(error).__name__}).", 502
        ) from None
    if result.status != 200:
        raise DynamicRegistrationError(
            f"The platform's configuration at {url} answered HTTP {result.status}.", 502
        )
    document = _json(result.text, "platform's openid-configuration")
    missing = [
        key
        for key in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri", "registration_endpoint")
        if not isinstance(document.get(key), str) or not document.get(key)
    ]
    if missing:
        raise DynamicRegistrationError(
            f"The platform's openid-configuration lacks {', '.join(missing)}.", 502
        )
    issuer = document["issuer"]
    # The spec ties the configuration to its issuer: it must live under the issuer's URL.
    if not url.startswith(issuer.rstrip("/")):
        raise DynamicRegistrationError(
            f"The configuration URL {url} is not under the issuer it declares ({issuer}).", 502
        )
    algorithms = document.get("id_token_signing_alg_values_supported")
    if isinstance(algorithms, list) and "RS256" not in algorithms:
        raise DynamicRegistrationError("The platform does not sign id_tokens with RS256.", 502)
    platform_config = document.get(c.PLATFORM_CONFIGURATION) or {}
    scopes = document.get("scopes_supported")
    return PlatformConfiguration(
        issuer=issuer,
        authorization_endpoint=document["authorization_endpoint"],
        token_endpoint=document["token_endpoint"],
        jwks_uri=document["jwks_uri"],
        registration_endpoint=document["registration_endpoint"],
        scopes_supported=[s for s in scopes if isinstance(s, str)] if isinstance(scopes, list) else None,
        product=platform_config.get("product_family_code") if isinstance(platform_config, dict) else None,
    )


def register_with_platform(
    session: Session,
    *,
    openid_configuration: str,
    registration_token: str | None,
    base_url: str,
    get: HttpGet,
    post: HttpPost,
    allow_http: bool,
) -> Platform:
    """Run the whole dynamic registration and store the platform and its deployment."""
    config = read_configuration(openid_configuration, get, allow_http=allow_http)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if registration_token:
        headers["Authorization"] = f"Bearer {registration_token}"
    body = registration_request(base_url, config.scopes_supported)
    try:
        result = post(config.registration_endpoint, body, headers)
    except requests.RequestException as error:
        raise DynamicRegistrationError(
            f"Rebound could not reach the platform's registration endpoint ({type(error).__name__}).", 502
        ) from None
    if result.status not in (200, 201):
        detail = result.text.strip()[:300]
        raise DynamicRegistrationError(
            f"The platform refused the registration (HTTP {result.status}): {detail or 'no reason given'}.",
            502,
        )
    answer = _json(result.text, "platform's registration response")
    client_id = answer.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        raise DynamicRegistrationError("The platform's registration response has no client_id.", 502)
    tool_config = answer.get(c.TOOL_CONFIGURATION) or {}
    deployment_id = tool_config.get("deployment_id") if isinstance(tool_config, dict) else None
    name = config.product or config.issuer
    try:
        platform = register_platform(
            session,
            name=f"{name} ({config.issuer})",
            issuer=config.issuer,
            client_id=client_id,
            auth_login_url=config.authorization_endpoint,
            auth_token_url=config.token_endpoint,
            jwks_url=config.jwks_uri,
            deployment_ids=[deployment_id] if isinstance(deployment_id, str) and deployment_id else [],
            registration="dynamic",
            http_hosts_allowed=allow_http,
        )
    except RegistrationError as error:
        raise DynamicRegistrationError(str(error), 409) from None
    logger.info(
        "platform registered dynamically",
        extra={"issuer": config.issuer, "client_id": client_id, "deployment_id": deployment_id},
    )
    return platform
