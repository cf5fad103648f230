"""Assignment and Grade Services: scores to a line item, and line items the tool creates.

Scores reach the LMS only through the outbox (plugin.outbox); this module is the AGS
protocol itself: the URLs, the documents and one HTTP call each.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from sqlalchemy.orm import Session

from course.models import Placement, Platform
from plugin import claims as c
from plugin.service_tokens import ServiceClient, ServiceError, access_token, json_object, service_request

SCORE_TYPE = "application/vnd.ims.lis.v1.score+json"
LINEITEM_TYPE = "application/vnd.ims.lis.v2.lineitem+json"
LINEITEMS_TYPE = "application/vnd.ims.lis.v2.lineitemcontainer+json"
SCORE_SCOPES = (c.SCOPE_AGS_SCORE,)
LINEITEM_SCOPES = (c.SCOPE_AGS_LINEITEM,)
# Marks the line items Rebound made, so a second launch finds one instead of making another.
LINEITEM_TAG = "rebound"
DEFAULT_SCORE_MAXIMUM = 100.0

logger = logging.getLogger("rebound.ags")


def scores_url(lineitem_url: str) -> str:
    """`{lineitem}/scores`, keeping the line item's query (Moodle's and Canvas's carry ?type_id=)."""
    parts = urlsplit(lineitem_url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/scores"))


def with_query(url: str, **params: str) -> str:
    """The URL with parameters added to whatever query it already has."""
    parts = urlsplit(url)
    extra = urlencode(params)
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


def timestamp(moment: datetime) -> str:
    """ISO 8601 with milliseconds and an offset, as AGS requires (`2026-05-01T12:00:00.123+00:00`)."""
    if moment.utcoffset() is None:
        raise ValueError("an AGS timestamp needs a timezone-aware datetime")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def score_document(
    *,
    user_sub: str,
    score_given: float,
    score_maximum: float,
    activity_progress: str,
    grading_progress: str,
    scored_at: datetime,
    comment: str | None = None,
) -> dict[str, Any]:
    """The score JSON (AGS 2.0 §3.4) for one learner."""
    document: dict[str, Any] = {
        "userId": user_sub,
        "scoreGiven": score_given,
        "scoreMaximum": score_maximum,
        "activityProgress": activity_progress,
        "gradingProgress": grading_progress,
        "timestamp": timestamp(scored_at),
    }
    if comment:
        document["comment"] = comment
    return document


def post_score(client: ServiceClient, lineitem_url: str, document: dict[str, Any], token: str) -> None:
    """POST one score to `{lineitem}/scores`; a refusal raises `ServiceError` with the status."""
    service_request(
        client,
        "POST",
        scores_url(lineitem_url),
        what="the LMS's score service",
        token=token,
        json=document,
        headers={"Content-Type": SCORE_TYPE},
    )


def may_create_lineitem(placement: Placement, scopes: list[str] | tuple[str, ...]) -> bool:
    """Whether the placement lacks a line item the LMS lets Rebound create."""
    return not placement.lineitem_url and bool(placement.lineitems_url) and c.SCOPE_AGS_LINEITEM in scopes


def ensure_lineitem(
    session: Session,
    placement: Placement,
    scopes: list[str] | tuple[str, ...],
    now: datetime,
    client: ServiceClient,
    *,
    label: str | None = None,
    score_maximum: float = DEFAULT_SCORE_MAXIMUM,
) -> str | None:
    """Give a placement a line item when the LMS offered a line items URL but none for it.

    Looks for one Rebound made before (by resource link and tag), else creates it, and
    stores its URL on the placement. Returns the line item URL, or None when the
    placement has one already, has no line items URL, or the scope does not allow it.
    """
    if not may_create_lineitem(placement, scopes):
        return None
    platform = session.get(Platform, placement.platform_id)
    assert platform is not None  # the foreign key guarantees it
    token = access_token(session, platform, LINEITEM_SCOPES, now, client)
    found = service_request(
        client,
        "GET",
        with_query(placement.lineitems_url, resource_link_id=placement.resource_link_id, tag=LINEITEM_TAG),
        what="the LMS's line items service",
        token=token,
        headers={"Accept": LINEITEMS_TYPE},
    )
    url = _existing_lineitem(found, placement.resource_link_id)
    if url is None:
        created = service_request(
            client,
            "POST",
            placement.lineitems_url,
            what="the LMS's line items service",
            token=token,
            json={
                "scoreMaximum": score_maximum,
                "label": (label or placement.title or "Rebound")[:200],
                "resourceLinkId": placement.resource_link_id,
                "tag": LINEITEM_TAG,
            },
            headers={"Content-Type": LINEITEM_TYPE, "Accept": LINEITEM_TYPE},
        )
        url = json_object(created, "the LMS's line items service").get("id")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise ServiceError(f"The line item the LMS created at {placement.lineitems_url} has no id URL.")
        logger.info("line item created", extra={"placement_id": placement.id, "lineitem": url})
    placement.lineitem_url = url
    session.flush()
    return url


def _existing_lineitem(response: Any, resource_link_id: str) -> str | None:
    # A garbled answer must not pass for "none yet": that would create a duplicate line item.
    try:
        items = response.json()
    except ValueError:
        raise ServiceError(f"The line items service at {response.url} answered with something not JSON.") from None
    if not isinstance(items, list):
        raise ServiceError(f"The line items service at {response.url} answered with JSON that is not a list.")
    # Platforms that ignore the query's filters list every line item: check them here too.
    urls = [
        item.get("id")
        for item in items
        if isinstance(item, dict) and item.get("tag") == LINEITEM_TAG and item.get("resourceLinkId") == resource_link_id
    ]
    return next((u for u in urls if isinstance(u, str) and u.startswith(("https://", "http://"))), None)
