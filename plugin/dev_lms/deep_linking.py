"""Deep Linking in the development LMS: it asks Rebound for content (an LtiDeepLinkingRequest),
checks the signed LtiDeepLinkingResponse that comes back, and adds each returned
ltiResourceLink to the course as a new placement with its own line item and custom
parameters, so launching it lands where the trainer chose.

Like a strict real platform it refuses a response that is not signed by a key of the
tool's JWKS, is addressed to another platform, is stale, names another deployment, or
does not echo the `data` of a request it made (each request's `data` is used once). The
state (requests in flight, created links) lives in the services' JSON file, behind its lock,
so every app process sees it.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
from flask import Blueprint, Flask, current_app, render_template, request

from course.access import public
from course.database import utcnow
from course.extensions import csrf
from plugin import claims as c
from plugin.dev_lms import platform as lms
from plugin.dev_lms.services import service_state

bp = Blueprint("dev_lms_deep_linking", __name__, template_folder="templates")

REQUEST_TTL = timedelta(hours=1)
LEEWAY_SECONDS = 60
MAX_LINKS_PER_COURSE = 50


class ResponseRefused(Exception):
    """The tool's deep-linking response cannot be accepted; the message says why."""


@dataclass(frozen=True)
class CreatedLink:
    """A resource link the development LMS added to a course from a deep-linking response."""

    id: str
    course: str
    title: str
    url: str
    custom: Mapping[str, str]
    line_item: Mapping[str, Any] | None

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> CreatedLink:
        return cls(data["id"], data["course"], data["title"], data["url"], dict(data.get("custom") or {}),
                   data.get("line_item"))


def _data_dir() -> Path:
    return Path(current_app.config["REBOUND_SETTINGS"].data_dir)


def _tool_base() -> str:
    return current_app.config["REBOUND_SETTINGS"].base_url  # type: ignore[no-any-return]


def new_request(data_dir: Path, course_id: str, now: datetime) -> str:
    """Remember a deep-linking request to a course; its `data` value names it in the answer."""
    token = secrets.token_urlsafe(16)
    with service_state(data_dir) as state:
        pending = state.setdefault("deep_link_requests", {})
        for key in [k for k, v in pending.items() if v["expires_at"] < now.timestamp()]:
            del pending[key]
        pending[token] = {"course": course_id, "expires_at": (now + REQUEST_TTL).timestamp()}
    return token


def links(data_dir: Path) -> list[CreatedLink]:
    """Every link added by Deep Linking, oldest first."""
    with service_state(data_dir) as state:
        return [CreatedLink.of(link) for link in state.setdefault("links", {}).values()]


def find_link(data_dir: Path, link_id: str) -> CreatedLink | None:
    """A link added by Deep Linking, by its resource link id."""
    return next((link for link in links(data_dir) if link.id == link_id), None)


def verify_response(
    token: str, *, jwks: Mapping[str, Any], issuer: str, client_id: str, now: datetime
) -> dict[str, Any]:
    """Check a deep-linking response against the tool's published keys and this platform."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        key = next((k for k in jwt.PyJWKSet.from_dict(dict(jwks)).keys if k.key_id == kid), None)
        if key is None:
            raise ResponseRefused(f"the response is signed with key {kid!r}, which the tool's JWKS does not publish")
        claims: dict[str, Any] = jwt.decode(
            token, key.key, algorithms=["RS256"], audience=issuer, issuer=client_id, leeway=LEEWAY_SECONDS,
            options={"require": ["iss", "aud", "exp", "iat", "nonce"]},
        )
    except jwt.PyJWTError as error:
        raise ResponseRefused(f"the response JWT is not valid: {error}") from None
    if abs(claims["iat"] - now.timestamp()) > 10 * 60 + LEEWAY_SECONDS:
        raise ResponseRefused("the response was issued too long ago, or in the future")
    expected = {
        c.MESSAGE_TYPE: c.DEEP_LINKING_RESPONSE,
        c.VERSION: c.LTI_VERSION,
        c.DEPLOYMENT_ID: lms.DEPLOYMENT_ID,
    }
    for claim, value in expected.items():
        if claims.get(claim) != value:
            raise ResponseRefused(f"{claim.rsplit('/', 1)[-1]} must be {value!r}, not {claims.get(claim)!r}")
    items = claims.get(c.DL_CONTENT_ITEMS, [])
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ResponseRefused("content_items must be a list of objects")
    return claims


def _resource_links(items: Sequence[Mapping[str, Any]], tool_base_url: str) -> list[dict[str, Any]]:
    tool_host = urlsplit(tool_base_url).netloc
    found = []
    for number, item in enumerate(items, start=1):
        if item.get("type") != "ltiResourceLink":
            raise ResponseRefused(f"item {number} is a {item.get('type')!r}; this course accepts only ltiResourceLink")
        url, title, custom = item.get("url") or tool_base_url + "/lti/launch", item.get("title"), item.get("custom", {})
        if not isinstance(url, str) or urlsplit(url).netloc != tool_host:
            raise ResponseRefused(f"item {number}'s url {url!r} is not on the tool's host {tool_host}")
        if not isinstance(custom, dict) or not all(isinstance(v, str) for v in custom.values()):
            raise ResponseRefused(f"item {number}'s custom parameters must map strings to strings")
        line_item = item.get("lineItem")
        if line_item is not None:
            maximum = line_item.get("scoreMaximum") if isinstance(line_item, dict) else None
            if isinstance(maximum, bool) or not isinstance(maximum, int | float) or maximum <= 0:
                raise ResponseRefused(f"item {number}'s lineItem needs a scoreMaximum above 0")
        found.append({"title": title if isinstance(title, str) and title else "Rebound", "url": url,
                      "custom": custom, "line_item": line_item})
    return found


def accept_response(
    data_dir: Path, claims: Mapping[str, Any], *, course_id: str, tool_base_url: str, now: datetime
) -> list[CreatedLink]:
    """Add the response's links to the course that asked, once per request."""
    new_links = _resource_links(claims.get(c.DL_CONTENT_ITEMS, []), tool_base_url)
    with service_state(data_dir) as state:
        pending = state.setdefault("deep_link_requests", {})
        asked = pending.get(str(claims.get(c.DL_DATA, "")))
        if asked is None or asked["course"] != course_id or asked["expires_at"] < now.timestamp():
            raise ResponseRefused(
                "the response's data does not match a deep-linking request this course made (or it was already "
                "answered, or is over an hour old); start again with “Add Rebound by Deep Linking”"
            )
        del pending[str(claims[c.DL_DATA])]
        stored = state.setdefault("links", {})
        if sum(1 for link in stored.values() if link["course"] == course_id) + len(new_links) > MAX_LINKS_PER_COURSE:
            raise ResponseRefused(f"a course holds at most {MAX_LINKS_PER_COURSE} links in the development LMS")
        created = []
        for link in new_links:
            link_id = f"dl-{secrets.token_hex(4)}"
            stored[link_id] = {"id": link_id, "course": course_id, **link, "created_at": now.isoformat()}
            if link["line_item"] is not None:
                # The line item AGS serves for this link (the services name it after the link).
                item = {k: link["line_item"][k] for k in ("scoreMaximum", "label", "resourceId", "tag")
                        if k in link["line_item"]}
                state["lineitems"].setdefault(course_id, {})[link_id] = {**item, "resourceLinkId": link_id}
            created.append(CreatedLink.of(stored[link_id]))
    return created


def _tool_jwks(now: datetime) -> dict[str, Any]:
    # The key set /lti/jwks publishes; a real LMS fetches it over HTTP, this one shares the
    # process (and a single-threaded server would wait on itself).
    from plugin import web

    return web.keyring(now).public_jwks(now)


@bp.route("/dev-lms/deep-link-return", methods=["POST"])
@public
def deep_link_return() -> tuple[str, int]:
    """Where Rebound posts its LtiDeepLinkingResponse (the `deep_link_return_url`)."""
    now = utcnow()
    course = lms.course(request.args.get("course", ""))
    try:
        if course is None:
            raise ResponseRefused("the return URL names no course of this LMS")
        token = request.form.get("JWT", "")
        if not token:
            raise ResponseRefused("the POST carried no JWT form field")
        claims = verify_response(token, jwks=_tool_jwks(now), issuer=lms.urls(_tool_base())["issuer"],
                                 client_id=lms.CLIENT_ID, now=now)
        created = accept_response(_data_dir(), claims, course_id=course.id, tool_base_url=_tool_base(), now=now)
    except ResponseRefused as error:
        return render_template("dev_lms/refused.html", message=f"The deep-linking response was refused: {error}."), 400
    return render_template(
        "dev_lms/deep_link_added.html", course=course, created=created,
        message=claims.get(c.DL_MSG), error=claims.get(c.DL_ERRORMSG),
    ), 200


def hint_for_link(link: CreatedLink) -> str:
    """The `lti_message_hint` that launches a created link."""
    return lms.encode_hint({"course": link.course, "link": link.id})


def launch_options(data_dir: Path, hint: Mapping[str, str], course_id: str, now: datetime) -> dict[str, Any] | None:
    """The id_token options a login hint asks for: a created link's, a deep-linking request's,
    or the course's own placement (an empty dict). None: the hint names an unknown link."""
    if hint.get("type") == "deep_linking":
        return {"message_type": c.DEEP_LINKING_REQUEST, "deep_link_data": new_request(data_dir, course_id, now)}
    if hint.get("link"):
        link = find_link(data_dir, hint["link"])
        if link is None or link.course != course_id:
            return None
        return {"resource_link": (link.id, link.title), "custom": dict(link.custom)}
    return {"custom": {"rebound_target": hint["target"]}} if hint.get("target") else {}


def init_app(app: Flask) -> None:
    """Add Deep Linking to the development LMS."""
    app.register_blueprint(bp)
    csrf.exempt(deep_link_return)
    app.add_template_global(hint_for_link, "dev_lms_link_hint")
    app.add_template_global(lambda: links(Path(app.config["REBOUND_SETTINGS"].data_dir)), "dev_lms_links")

