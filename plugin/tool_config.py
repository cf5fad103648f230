"""What Rebound tells LMSes about itself: the Canvas JSON and the dynamic-registration body."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from plugin import claims as c

TOOL_NAME = "Rebound"
DESCRIPTION = "A course on social media mistakes: recognise them, own them, learn from them."
SCOPES = (
    c.SCOPE_AGS_LINEITEM,
    c.SCOPE_AGS_LINEITEM_READONLY,
    c.SCOPE_AGS_RESULT_READONLY,
    c.SCOPE_AGS_SCORE,
    c.SCOPE_NRPS_MEMBERSHIP_READONLY,
)
CLAIMS = ("iss", "sub", "name", "given_name", "family_name", "email")


def endpoints(base_url: str) -> dict[str, str]:
    """The tool's standard endpoint URLs under its public base URL."""
    return {
        "login": f"{base_url}/lti/login",
        "launch": f"{base_url}/lti/launch",
        "jwks": f"{base_url}/lti/jwks",
        "register": f"{base_url}/lti/register",
        "config": f"{base_url}/lti/config.json",
    }


def canvas_configuration(base_url: str) -> dict[str, Any]:
    """Canvas's "Paste JSON / Enter URL" developer-key configuration."""
    urls = endpoints(base_url)
    domain = urlsplit(base_url).netloc
    return {
        "title": TOOL_NAME,
        "description": DESCRIPTION,
        "oidc_initiation_url": urls["login"],
        "target_link_uri": urls["launch"],
        "public_jwk_url": urls["jwks"],
        "scopes": list(SCOPES),
        "extensions": [
            {
                "domain": domain,
                "tool_id": "rebound",
                "platform": "canvas.instructure.com",
                "privacy_level": "public",
                "settings": {
                    "text": TOOL_NAME,
                    "placements": [
                        {
                            "placement": "link_selection",
                            "message_type": c.DEEP_LINKING_REQUEST,
                            "target_link_uri": urls["launch"],
                            "text": "Add Rebound content",
                        },
                        {
                            "placement": "assignment_selection",
                            "message_type": c.DEEP_LINKING_REQUEST,
                            "target_link_uri": urls["launch"],
                            "text": "Rebound",
                        },
                        {
                            "placement": "course_navigation",
                            "message_type": c.RESOURCE_LINK_REQUEST,
                            "target_link_uri": urls["launch"],
                            "text": TOOL_NAME,
                            "default": "disabled",
                        },
                    ],
                },
            }
        ],
        "custom_fields": {},
    }


def registration_request(base_url: str, scopes_supported: list[str] | None) -> dict[str, Any]:
    """The client registration Rebound posts to a platform (LTI Dynamic Registration §3.5)."""
    urls = endpoints(base_url)
    wanted = [s for s in SCOPES if scopes_supported is None or s in scopes_supported]
    return {
        "application_type": "web",
        "response_types": ["id_token"],
        "grant_types": ["implicit", "client_credentials"],
        "initiate_login_uri": urls["login"],
        "redirect_uris": [urls["launch"]],
        "client_name": TOOL_NAME,
        "jwks_uri": urls["jwks"],
        "token_endpoint_auth_method": "private_key_jwt",
        "scope": " ".join(wanted),
        c.TOOL_CONFIGURATION: {
            "domain": urlsplit(base_url).netloc,
            "description": DESCRIPTION,
            "target_link_uri": urls["launch"],
            "claims": list(CLAIMS),
            "messages": [
                {"type": c.RESOURCE_LINK_REQUEST, "target_link_uri": urls["launch"], "label": TOOL_NAME},
                {
                    "type": c.DEEP_LINKING_REQUEST,
                    "target_link_uri": urls["launch"],
                    "label": "Add Rebound content",
                },
            ],
        },
    }
