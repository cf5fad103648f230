"""The development LMS: a small but real LTI 1.3 platform living beside the tool.

It signs id_tokens with its own RSA key, publishes a JWKS, answers the OIDC
authentication request, and registers the tool by LTI Dynamic Registration, so a launch
from it takes exactly the path a launch from Moodle or Canvas takes. It exists only in
development mode.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from plugin import claims as c
from plugin.tool_keys import Keyring, ToolKey, generate_key, sign_jwt

CLIENT_ID = "rebound-dev-client"
DEPLOYMENT_ID = "dev-deployment-1"
PRODUCT = "rebound-dev-lms"
KEY_FILE = "dev-lms-key.pem"
_ROLE = "http://purl.imsglobal.org/vocab/lis/v2/"


@dataclass(frozen=True)
class Person:
    """Someone the development LMS can launch as."""

    key: str
    name: str
    given_name: str
    family_name: str
    email: str
    roles: tuple[str, ...]
    label: str


PEOPLE: tuple[Person, ...] = (
    Person("lena", "Lena Learner", "Lena", "Learner", "lena@example.com",
           (_ROLE + "membership#Learner",), "Learner"),
    Person("leo", "Léo Lambert", "Léo", "Lambert", "leo@example.com",
           (_ROLE + "membership#Learner",), "Learner"),
    Person("theo", "Theo Trainer", "Theo", "Trainer", "theo@example.com",
           (_ROLE + "membership#Instructor",), "Trainer (Instructor)"),
    Person("hana", "Hana Hughes", "Hana", "Hughes", "hana@example.com",
           (_ROLE + "institution/person#Administrator", _ROLE + "membership#Learner"), "HR (Administrator)"),
)


@dataclass(frozen=True)
class Course:
    """A course (LTI context) in the development LMS, with one placement of Rebound."""

    id: str
    label: str
    title: str
    resource_link_id: str
    resource_link_title: str


COURSES: tuple[Course, ...] = (
    Course("acme-social-101", "SOC101", "Social media at Acme", "rl-acme-rebound", "Rebound: social media mistakes"),
    Course("acme-onboarding", "ONB", "New starter onboarding", "rl-onboarding-rebound", "Rebound (onboarding)"),
)


def person(key: str) -> Person | None:
    return next((p for p in PEOPLE if p.key == key), None)


def course(course_id: str) -> Course | None:
    return next((x for x in COURSES if x.id == course_id), None)


def lms_base_url(tool_base_url: str) -> str:
    """The LMS lives on the other loopback name, so the tool's cookies are really third-party."""
    parts = urlsplit(tool_base_url)
    swap = {"127.0.0.1": "localhost", "localhost": "127.0.0.1"}
    host = parts.hostname or ""
    if host not in swap:
        return tool_base_url + "/dev-lms"
    netloc = swap[host] + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, "/dev-lms", "", ""))


def urls(tool_base_url: str) -> dict[str, str]:
    """The development LMS's own endpoints (its issuer is its base URL)."""
    base = lms_base_url(tool_base_url)
    return {
        "issuer": base,
        "home": base + "/",
        "auth": base + "/auth",
        "token": base + "/token",
        "jwks": base + "/jwks",
        "openid_configuration": base + "/.well-known/openid-configuration",
        "registration": base + "/register",
    }


def load_key(data_dir: Path, now: datetime) -> Keyring:
    """The LMS's signing key, made once and kept (mode 600) in the data directory."""
    path = data_dir / KEY_FILE
    if path.exists():
        key = ToolKey.from_pem(path.read_text(), created_at=now, activated_at=now - timedelta(days=1))
        return Keyring((key,))
    data_dir.mkdir(parents=True, exist_ok=True)
    key = generate_key(now - timedelta(days=1))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_key(data_dir, now)  # another worker wrote it first
    with os.fdopen(fd, "w") as handle:
        handle.write(key.export_pem())
    return Keyring((key,))


def openid_configuration(tool_base_url: str) -> dict[str, Any]:
    """What the LMS publishes for dynamic registration."""
    u = urls(tool_base_url)
    return {
        "issuer": u["issuer"],
        "authorization_endpoint": u["auth"],
        "token_endpoint": u["token"],
        "jwks_uri": u["jwks"],
        "registration_endpoint": u["registration"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["id_token"],
        "scopes_supported": ["openid", c.SCOPE_AGS_LINEITEM, c.SCOPE_AGS_SCORE,
                             c.SCOPE_AGS_RESULT_READONLY, c.SCOPE_AGS_LINEITEM_READONLY,
                             c.SCOPE_NRPS_MEMBERSHIP_READONLY],
        "claims_supported": ["iss", "sub", "name", "given_name", "family_name", "email"],
        c.PLATFORM_CONFIGURATION: {
            "product_family_code": PRODUCT,
            "version": "1.0",
            "messages_supported": [{"type": c.RESOURCE_LINK_REQUEST}, {"type": c.DEEP_LINKING_REQUEST}],
        },
    }


class RegistrationRefused(ValueError):
    """The tool's registration request lacks something an LMS requires."""


def accept_registration(body: Any, tool_base_url: str) -> dict[str, Any]:
    """Check the tool's registration request and answer with the client id and deployment."""
    if not isinstance(body, dict):
        raise RegistrationRefused("the registration request must be a JSON object")
    for key in ("initiate_login_uri", "redirect_uris", "jwks_uri", c.TOOL_CONFIGURATION):
        if not body.get(key):
            raise RegistrationRefused(f"the registration request lacks {key}")
    if body.get("token_endpoint_auth_method") != "private_key_jwt":
        raise RegistrationRefused("token_endpoint_auth_method must be private_key_jwt")
    tool = tool_base_url.rstrip("/")
    if body["initiate_login_uri"] != tool + "/lti/login" or tool + "/lti/launch" not in body["redirect_uris"]:
        raise RegistrationRefused("the tool's URLs are not on the tool's base URL")
    return {
        **body,
        "client_id": CLIENT_ID,
        c.TOOL_CONFIGURATION: {**body[c.TOOL_CONFIGURATION], "deployment_id": DEPLOYMENT_ID},
    }


def encode_hint(data: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, sort_keys=True).encode()).decode().rstrip("=")


def decode_hint(hint: str) -> dict[str, str]:
    try:
        padded = hint + "=" * (-len(hint) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError):
        return {}
    return data if isinstance(data, dict) else {}


def id_token(
    *,
    tool_base_url: str,
    keyring: Keyring,
    who: Person,
    where: Course,
    nonce: str,
    now: datetime,
    message_type: str = c.RESOURCE_LINK_REQUEST,
    custom: dict[str, str] | None = None,
    resource_link: tuple[str, str] | None = None,
    deep_link_data: str | None = None,
) -> str:
    """Sign the id_token this LMS sends to the tool."""
    u = urls(tool_base_url)
    launch_url = tool_base_url.rstrip("/") + "/lti/launch"
    claims: dict[str, Any] = {
        "iss": u["issuer"],
        "aud": CLIENT_ID,
        "azp": CLIENT_ID,
        "sub": f"dev-{who.key}",
        "nonce": nonce,
        "name": who.name,
        "given_name": who.given_name,
        "family_name": who.family_name,
        "email": who.email,
        c.MESSAGE_TYPE: message_type,
        c.VERSION: c.LTI_VERSION,
        c.DEPLOYMENT_ID: DEPLOYMENT_ID,
        c.TARGET_LINK_URI: launch_url,
        c.ROLES: list(who.roles),
        c.CONTEXT: {"id": where.id, "label": where.label, "title": where.title,
                    "type": ["http://purl.imsglobal.org/vocab/lis/v2/course#CourseOffering"]},
        c.LIS: {"person_sourcedid": f"acme:{who.key}"},
        c.LAUNCH_PRESENTATION: {"document_target": "iframe", "return_url": u["home"]},
        c.TOOL_PLATFORM: {"guid": "rebound-dev-lms", "name": "Rebound development LMS",
                          "product_family_code": PRODUCT, "url": u["home"]},
        c.CUSTOM: dict(custom or {}),
    }
    from plugin.dev_lms.services import launch_claims  # the services build on this module

    if message_type == c.RESOURCE_LINK_REQUEST:
        link_id, link_title = resource_link or (where.resource_link_id, where.resource_link_title)
        claims[c.RESOURCE_LINK] = {"id": link_id, "title": link_title}
        claims.update(launch_claims(tool_base_url, where.id, link_id))
    else:
        claims.update(launch_claims(tool_base_url, where.id, None))
        claims[c.DEEP_LINKING_SETTINGS] = {
            "deep_link_return_url": u["home"] + f"deep-link-return?course={where.id}",
            "accept_types": ["ltiResourceLink"],
            "accept_presentation_document_targets": ["iframe", "window"],
            "accept_multiple": False,
            "accept_lineitem": True,
            "data": deep_link_data or "",
        }
    return sign_jwt(claims, keyring, now, expires_in=timedelta(minutes=5))
