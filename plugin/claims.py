"""LTI 1.3 claim names and the launch message built from validated claims.

Policy for claim values: anything the tool acts on (identifiers, URLs it calls or
redirects to, roles) must have the type the specs give it, or the launch is refused
with ``claim-invalid``; purely descriptive values (titles, names, labels) of the
wrong type are dropped to ``None`` instead, so a platform's cosmetic bug never
blocks a learner. Required claims that are absent give ``claim-missing``, naming
the claim.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from plugin.errors import LaunchError

_LTI = "https://purl.imsglobal.org/spec/lti/claim/"

MESSAGE_TYPE = _LTI + "message_type"
VERSION = _LTI + "version"
DEPLOYMENT_ID = _LTI + "deployment_id"
TARGET_LINK_URI = _LTI + "target_link_uri"
RESOURCE_LINK = _LTI + "resource_link"
CONTEXT = _LTI + "context"
ROLES = _LTI + "roles"
ROLE_SCOPE_MENTOR = _LTI + "role_scope_mentor"
CUSTOM = _LTI + "custom"
LIS = _LTI + "lis"
LAUNCH_PRESENTATION = _LTI + "launch_presentation"
TOOL_PLATFORM = _LTI + "tool_platform"
LTI11_LEGACY_USER_ID = _LTI + "lti11_legacy_user_id"

AGS_ENDPOINT = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
NRPS = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"

_DL = "https://purl.imsglobal.org/spec/lti-dl/claim/"
DEEP_LINKING_SETTINGS = _DL + "deep_linking_settings"
DL_CONTENT_ITEMS = _DL + "content_items"
DL_DATA = _DL + "data"
DL_MSG = _DL + "msg"
DL_LOG = _DL + "log"
DL_ERRORMSG = _DL + "errormsg"
DL_ERRORLOG = _DL + "errorlog"

TOOL_CONFIGURATION = "https://purl.imsglobal.org/spec/lti-tool-configuration"
PLATFORM_CONFIGURATION = "https://purl.imsglobal.org/spec/lti-platform-configuration"

LTI_VERSION = "1.3.0"
RESOURCE_LINK_REQUEST = "LtiResourceLinkRequest"
DEEP_LINKING_REQUEST = "LtiDeepLinkingRequest"
DEEP_LINKING_RESPONSE = "LtiDeepLinkingResponse"
LAUNCH_MESSAGE_TYPES = frozenset({RESOURCE_LINK_REQUEST, DEEP_LINKING_REQUEST})

SCOPE_AGS_LINEITEM = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
SCOPE_AGS_LINEITEM_READONLY = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly"
SCOPE_AGS_RESULT_READONLY = "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly"
SCOPE_AGS_SCORE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
SCOPE_NRPS_MEMBERSHIP_READONLY = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"


@dataclass(frozen=True)
class Context:
    """The course (context) the launch comes from."""

    id: str
    title: str | None = None
    label: str | None = None
    types: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResourceLink:
    """The placement of the tool inside the context."""

    id: str
    title: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class AgsEndpoint:
    """Assignment and Grade Services endpoint claim."""

    scopes: tuple[str, ...] = ()
    lineitems_url: str | None = None
    lineitem_url: str | None = None

    @property
    def can_post_scores(self) -> bool:
        """Whether the platform granted the score scope and named a line item."""
        return SCOPE_AGS_SCORE in self.scopes and self.lineitem_url is not None


@dataclass(frozen=True)
class NamesRoleService:
    """Names and Role Provisioning Services claim."""

    context_memberships_url: str
    service_versions: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeepLinkingSettings:
    """Deep Linking 2.0 settings of an ``LtiDeepLinkingRequest``."""

    deep_link_return_url: str
    accept_types: tuple[str, ...]
    accept_presentation_document_targets: tuple[str, ...] = ()
    accept_media_types: str | None = None
    accept_multiple: bool | None = None
    accept_lineitem: bool | None = None
    auto_create: bool | None = None
    title: str | None = None
    text: str | None = None
    # Opaque: must be echoed back verbatim in the deep linking response.
    data: Any = None


@dataclass(frozen=True)
class LaunchPresentation:
    """How the platform shows the tool (iframe, window) and where to return."""

    document_target: str | None = None
    return_url: str | None = None
    locale: str | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class ToolPlatform:
    """Facts about the platform instance that sent the launch."""

    guid: str | None = None
    name: str | None = None
    product_family_code: str | None = None
    version: str | None = None
    url: str | None = None
    contact_email: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class LaunchMessage:
    """A validated LTI launch, built only from claims that passed validation."""

    issuer: str
    client_id: str
    audience: tuple[str, ...]
    subject: str | None
    deployment_id: str
    message_type: str
    version: str
    nonce: str
    issued_at: datetime
    expires_at: datetime
    target_link_uri: str | None
    roles: tuple[str, ...]
    role_scope_mentor: tuple[str, ...] = ()
    # Personal data stays out of repr() so logging a message never leaks it.
    name: str | None = field(default=None, repr=False)
    given_name: str | None = field(default=None, repr=False)
    family_name: str | None = field(default=None, repr=False)
    email: str | None = field(default=None, repr=False)
    locale: str | None = None
    lis_person_sourcedid: str | None = field(default=None, repr=False)
    context: Context | None = None
    resource_link: ResourceLink | None = None
    custom: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    ags: AgsEndpoint | None = None
    nrps: NamesRoleService | None = None
    deep_linking: DeepLinkingSettings | None = None
    launch_presentation: LaunchPresentation | None = None
    tool_platform: ToolPlatform | None = None
    # Seconds the platform's clock runs ahead of ours (iat - now); negative if behind.
    clock_skew_seconds: float = 0.0
    claims: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False, compare=False)

    @property
    def is_anonymous(self) -> bool:
        """True when the platform sent no ``sub``: nobody to record progress for."""
        return self.subject is None

    @property
    def is_deep_linking(self) -> bool:
        """True for an ``LtiDeepLinkingRequest``."""
        return self.message_type == DEEP_LINKING_REQUEST

    @property
    def is_resource_link(self) -> bool:
        """True for an ``LtiResourceLinkRequest``."""
        return self.message_type == RESOURCE_LINK_REQUEST


def claim_missing(claim: str, message_type: str | None = None) -> LaunchError:
    """Build the error for a required claim the platform did not send."""
    where = f" in an {message_type}" if message_type else ""
    return LaunchError(
        "claim-missing",
        f"The LMS did not send information this activity needs ({_short(claim)}).",
        f"The platform must send the claim {claim}{where}. Check the tool's LTI 1.3 "
        "configuration in the LMS (privacy and placement settings), or report it to the "
        "LMS vendor.",
        details={"claim": claim, "message_type": message_type},
    )


def claim_invalid(claim: str, expected: str) -> LaunchError:
    """Build the error for a claim whose value has the wrong type or form."""
    return LaunchError(
        "claim-invalid",
        f"The LMS sent information this activity cannot use ({_short(claim)}).",
        f"The claim {claim} must be {expected}. Report this to the LMS vendor; it is "
        "not something the learner can fix.",
        details={"claim": claim, "expected": expected},
    )


def require_str(claims: Mapping[str, Any], name: str, message_type: str | None = None) -> str:
    """Return a required non-empty string claim, or raise a ``LaunchError`` naming it."""
    value = claims.get(name)
    if value is None or value == "":
        raise claim_missing(name, message_type)
    if not isinstance(value, str):
        raise claim_invalid(name, "a string")
    return value


def require_time(claims: Mapping[str, Any], name: str) -> float:
    """Return a required NumericDate claim (seconds since the epoch)."""
    value = claims.get(name)
    if value is None:
        raise claim_missing(name)
    # bool is an int subclass; a boolean is never a timestamp.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise claim_invalid(name, "a number of seconds since 1970 (NumericDate)")
    return float(value)


def audiences(claims: Mapping[str, Any]) -> tuple[str, ...]:
    """Return the ``aud`` claim as a tuple, whether sent as a string or a list."""
    aud = claims.get("aud")
    if aud is None or aud == "" or aud == []:
        raise claim_missing("aud")
    if isinstance(aud, str):
        return (aud,)
    if isinstance(aud, list) and all(isinstance(item, str) and item for item in aud):
        return tuple(aud)
    raise claim_invalid("aud", "a string or a list of strings")


def parse_launch(
    claims: Mapping[str, Any], *, client_id: str, clock_skew_seconds: float = 0.0
) -> LaunchMessage:
    """Build a ``LaunchMessage`` from claims whose signature was already verified.

    Checks presence and types of the claims each message type requires, and the
    ``version`` and ``message_type`` values; it does not check signature, issuer,
    audience, times, nonce, deployment or target host (``validate_id_token`` does).
    """
    issuer = require_str(claims, "iss")
    audience = audiences(claims)
    issued_at = _timestamp(require_time(claims, "iat"), "iat")
    expires_at = _timestamp(require_time(claims, "exp"), "exp")
    nonce = require_str(claims, "nonce")

    version = require_str(claims, VERSION)
    if version != LTI_VERSION:
        raise unsupported_version(version)
    message_type = require_str(claims, MESSAGE_TYPE)
    if message_type not in LAUNCH_MESSAGE_TYPES:
        raise unsupported_message_type(message_type)
    deployment_id = require_str(claims, DEPLOYMENT_ID, message_type)

    resource_link = None
    deep_linking = None
    if message_type == RESOURCE_LINK_REQUEST:
        target_link_uri: str | None = require_str(claims, TARGET_LINK_URI, message_type)
        resource_link = _resource_link(claims, message_type)
        roles = _roles(claims, ROLES, required_in=message_type)
    else:
        target_link_uri = _optional_id(claims, TARGET_LINK_URI)
        deep_linking = _deep_linking(claims, message_type)
        # Deep Linking requests usually carry roles; an absent claim means none.
        roles = _roles(claims, ROLES, required_in=None)

    lis = _object(claims, LIS)
    return LaunchMessage(
        issuer=issuer,
        client_id=client_id,
        audience=audience,
        subject=_subject(claims),
        deployment_id=deployment_id,
        message_type=message_type,
        version=version,
        nonce=nonce,
        issued_at=issued_at,
        expires_at=expires_at,
        target_link_uri=target_link_uri,
        roles=roles,
        role_scope_mentor=_roles(claims, ROLE_SCOPE_MENTOR, required_in=None),
        name=_text(claims.get("name")),
        given_name=_text(claims.get("given_name")),
        family_name=_text(claims.get("family_name")),
        email=_text(claims.get("email")),
        locale=_text(claims.get("locale")),
        lis_person_sourcedid=_text(lis.get("person_sourcedid")) if lis else None,
        context=_context(claims),
        resource_link=resource_link,
        custom=_custom(claims),
        ags=_ags(claims),
        nrps=_nrps(claims),
        deep_linking=deep_linking,
        launch_presentation=_launch_presentation(claims),
        tool_platform=_tool_platform(claims),
        clock_skew_seconds=clock_skew_seconds,
        claims=MappingProxyType(copy.deepcopy(dict(claims))),
    )


def unsupported_version(version: object) -> LaunchError:
    """Build the error for an LTI version other than 1.3.0."""
    return LaunchError(
        "version-unsupported",
        "This launch uses an LTI version Rebound does not support.",
        f"Rebound accepts LTI {LTI_VERSION} launches; the platform sent version "
        f"{version!r}. Register Rebound as an LTI 1.3 (LTI Advantage) tool.",
        details={"version": version},
    )


def unsupported_message_type(message_type: object) -> LaunchError:
    """Build the error for a message type the tool does not handle."""
    return LaunchError(
        "message-type-unsupported",
        "The LMS asked Rebound for something it does not offer.",
        f"Rebound handles {RESOURCE_LINK_REQUEST} and {DEEP_LINKING_REQUEST} messages; "
        f"the platform sent {message_type!r}. Remove that placement from the tool's "
        "configuration in the LMS.",
        details={"message_type": message_type},
    )


def _short(claim: str) -> str:
    return claim.rsplit("/", 1)[-1]


def _timestamp(seconds: float, claim: str) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise claim_invalid(claim, "a NumericDate within the supported range") from None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value != "" else None


def _object(claims: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise claim_invalid(name, "a JSON object")
    return value


def _optional_id(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise claim_invalid(name, "a string")
    return value


def _url(value: object, claim: str) -> str | None:
    if value is None or value == "":
        return None
    return _required_url(value, claim, None)


def _required_url(value: object, claim: str, message_type: str | None) -> str:
    if value is None or value == "":
        raise claim_missing(claim, message_type)
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise claim_invalid(claim, "an absolute http(s) URL")
    return value


def _absolute_url_or_none(value: object) -> str | None:
    if isinstance(value, str) and value.startswith(("https://", "http://")):
        return value
    return None


def _strings(value: object, claim: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise claim_invalid(claim, "a list of strings")
    return tuple(value)


def _flag(value: object) -> bool | None:
    # Some platforms send JSON booleans as strings; accept both spellings.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        return value.lower() == "true"
    return None


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _subject(claims: Mapping[str, Any]) -> str | None:
    sub = claims.get("sub")
    # An empty sub identifies nobody; treat it like an absent one (anonymous launch).
    if sub is None or sub == "":
        return None
    if not isinstance(sub, str):
        raise claim_invalid("sub", "a string")
    return sub


def _roles(claims: Mapping[str, Any], name: str, *, required_in: str | None) -> tuple[str, ...]:
    if name not in claims:
        if required_in is not None:
            raise claim_missing(name, required_in)
        return ()
    return _strings(claims[name], name)


def _resource_link(claims: Mapping[str, Any], message_type: str) -> ResourceLink:
    link = _object(claims, RESOURCE_LINK)
    if link is None:
        raise claim_missing(RESOURCE_LINK, message_type)
    link_id = link.get("id")
    if link_id is None or link_id == "":
        raise claim_missing(RESOURCE_LINK + "#id", message_type)
    if not isinstance(link_id, str):
        raise claim_invalid(RESOURCE_LINK + "#id", "a string")
    return ResourceLink(
        id=link_id, title=_text(link.get("title")), description=_text(link.get("description"))
    )


def _context(claims: Mapping[str, Any]) -> Context | None:
    context = _object(claims, CONTEXT)
    if context is None:
        return None
    context_id = context.get("id")
    if context_id is None or context_id == "":
        raise claim_missing(CONTEXT + "#id")
    if not isinstance(context_id, str):
        raise claim_invalid(CONTEXT + "#id", "a string")
    return Context(
        id=context_id,
        title=_text(context.get("title")),
        label=_text(context.get("label")),
        types=_strings(context.get("type"), CONTEXT + "#type"),
    )


def _custom(claims: Mapping[str, Any]) -> Mapping[str, str]:
    custom = _object(claims, CUSTOM)
    if not custom:
        return MappingProxyType({})
    values: dict[str, str] = {}
    for key, value in custom.items():
        # The spec says values are strings; some platforms send numbers or booleans.
        values[str(key)] = value if isinstance(value, str) else json.dumps(value)
    return MappingProxyType(values)


def _ags(claims: Mapping[str, Any]) -> AgsEndpoint | None:
    endpoint = _object(claims, AGS_ENDPOINT)
    if endpoint is None:
        return None
    return AgsEndpoint(
        scopes=_strings(endpoint.get("scope"), AGS_ENDPOINT + "#scope"),
        lineitems_url=_url(endpoint.get("lineitems"), AGS_ENDPOINT + "#lineitems"),
        lineitem_url=_url(endpoint.get("lineitem"), AGS_ENDPOINT + "#lineitem"),
    )


def _nrps(claims: Mapping[str, Any]) -> NamesRoleService | None:
    service = _object(claims, NRPS)
    if service is None:
        return None
    return NamesRoleService(
        context_memberships_url=_required_url(
            service.get("context_memberships_url"), NRPS + "#context_memberships_url", None
        ),
        service_versions=_strings(service.get("service_versions"), NRPS + "#service_versions"),
    )


def _deep_linking(claims: Mapping[str, Any], message_type: str) -> DeepLinkingSettings:
    settings = _object(claims, DEEP_LINKING_SETTINGS)
    if settings is None:
        raise claim_missing(DEEP_LINKING_SETTINGS, message_type)
    url = _required_url(
        settings.get("deep_link_return_url"),
        DEEP_LINKING_SETTINGS + "#deep_link_return_url",
        message_type,
    )
    accept_types = _strings(settings.get("accept_types"), DEEP_LINKING_SETTINGS + "#accept_types")
    if not accept_types:
        raise claim_missing(DEEP_LINKING_SETTINGS + "#accept_types", message_type)
    return DeepLinkingSettings(
        deep_link_return_url=url,
        accept_types=accept_types,
        accept_presentation_document_targets=_strings(
            settings.get("accept_presentation_document_targets"),
            DEEP_LINKING_SETTINGS + "#accept_presentation_document_targets",
        ),
        accept_media_types=_text(settings.get("accept_media_types")),
        accept_multiple=_flag(settings.get("accept_multiple")),
        accept_lineitem=_flag(settings.get("accept_lineitem")),
        auto_create=_flag(settings.get("auto_create")),
        title=_text(settings.get("title")),
        text=_text(settings.get("text")),
        data=copy.deepcopy(settings.get("data")),
    )


def _launch_presentation(claims: Mapping[str, Any]) -> LaunchPresentation | None:
    presentation = _object(claims, LAUNCH_PRESENTATION)
    if presentation is None:
        return None
    return LaunchPresentation(
        document_target=_text(presentation.get("document_target")),
        # Only ever used as a redirect target, so an unusable value is dropped, not fatal.
        return_url=_absolute_url_or_none(presentation.get("return_url")),
        locale=_text(presentation.get("locale")),
        width=_int(presentation.get("width")),
        height=_int(presentation.get("height")),
    )


def _tool_platform(claims: Mapping[str, Any]) -> ToolPlatform | None:
    platform = _object(claims, TOOL_PLATFORM)
    if platform is None:
        return None
    return ToolPlatform(
        guid=_text(platform.get("guid")),
        name=_text(platform.get("name")),
        product_family_code=_text(platform.get("product_family_code")),
        version=_text(platform.get("version")),
        url=_text(platform.get("url")),
        contact_email=_text(platform.get("contact_email")),
        description=_text(platform.get("description")),
    )
