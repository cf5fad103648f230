"""Names and Role Provisioning Services: the members of an LMS context, kept in `roster_members`.

A sync reads every page of the context's membership (`Link: rel="next"`) before it writes
anything, so a malformed or failing page leaves the roster as it was. The platform's
`rel="differences"` link is kept on the context and used next time, to fetch only the
changes. After a full sync, members the LMS no longer lists are marked `Deleted` (NRPS
2.0: a member missing from the full list is no longer a member); they are kept, so HR still
sees who was once expected to take the course.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import current_app
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from course.models import Context, Platform, RosterMember
from plugin import claims as c
from plugin.service_tokens import ServiceClient, ServiceError, access_token, client_for, json_object, service_request

MEMBERSHIPS_TYPE = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
NRPS_SCOPES = (c.SCOPE_NRPS_MEMBERSHIP_READONLY,)
MEMBER_STATUSES = ("Active", "Inactive", "Deleted")
MAX_PAGES = 1000
# A differences link the LMS no longer honours: fall back to a full sync.
DIFFERENCES_GONE = frozenset({400, 404, 410})

logger = logging.getLogger("rebound.nrps")


class RosterError(ServiceError):
    """The LMS's membership answer cannot be used; the roster is left as it was."""


@dataclass(frozen=True)
class Member:
    """One member as NRPS reports them."""

    sub: str
    status: str
    roles: tuple[str, ...]
    name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    email: str | None = None
    lis_person_sourcedid: str | None = None


@dataclass
class SyncResult:
    """What a sync did to one context's roster."""

    context_id: int
    full: bool
    members: int = 0
    added: int = 0
    updated: int = 0
    removed: int = 0
    pages: int = 0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        kind = "full" if self.full else "differences"
        return (
            f"{kind} sync, {self.pages} page(s): {self.members} member(s) reported, {self.added} added, "
            f"{self.updated} updated, {self.removed} marked Deleted"
        )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_member(entry: Any, where: str) -> Member:
    """Read one entry of `members`; a `RosterError` names what is wrong with it."""
    if not isinstance(entry, dict):
        raise RosterError(f"{where}: a member is not a JSON object.")
    sub = entry.get("user_id")
    if not isinstance(sub, str) or not sub:
        raise RosterError(f"{where}: a member has no user_id.")
    status = entry.get("status", "Active")
    if status not in MEMBER_STATUSES:
        raise RosterError(f"{where}: member {sub!r} has status {status!r}, not one of {', '.join(MEMBER_STATUSES)}.")
    roles = entry.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise RosterError(f"{where}: member {sub!r} has roles that are not a list of strings.")
    return Member(
        sub=sub[:255],
        status=status,
        roles=tuple(roles),
        name=(_text(entry.get("name")) or "")[:300] or None,
        given_name=_text(entry.get("given_name")),
        family_name=_text(entry.get("family_name")),
        email=(_text(entry.get("email")) or "")[:320] or None,
        lis_person_sourcedid=(_text(entry.get("lis_person_sourcedid")) or "")[:255] or None,
    )


def _same_origin(url: str, origin_of: str) -> bool:
    a, b = urlsplit(url), urlsplit(origin_of)
    return (a.scheme, a.netloc.lower()) == (b.scheme, b.netloc.lower())


def _link(response: requests.Response, rel: str, first_url: str) -> str | None:
    url = response.links.get(rel, {}).get("url")
    if not url:
        return None
    if not _same_origin(url, first_url):
        # The bearer token goes with every page: never to another host.
        raise RosterError(f"The LMS's rel={rel!r} link {url!r} leaves {urlsplit(first_url).netloc}; not followed.")
    return str(url)


def fetch_members(client: ServiceClient, url: str, token: str) -> tuple[dict[str, Member], str | None, int]:
    """Every member listed at `url`, following rel="next"; with the rel="differences" link and page count."""
    members: dict[str, Member] = {}
    differences: str | None = None
    seen: set[str] = set()
    page_url: str | None = url
    while page_url is not None:
        if page_url in seen or len(seen) >= MAX_PAGES:
            raise RosterError(f"The LMS's membership pages at {url} do not end (page {len(seen) + 1}).")
        seen.add(page_url)
        response = service_request(
            client, "GET", page_url, what="the LMS's membership service", token=token,
            headers={"Accept": MEMBERSHIPS_TYPE},
        )
        where = f"The membership page {page_url}"
        try:
            document = json_object(response, "the LMS's membership service")
        except ServiceError as error:
            raise RosterError(str(error)) from None
        entries = document.get("members")
        if not isinstance(entries, list):
            raise RosterError(f"{where} has no members list.")
        for entry in entries:
            member = parse_member(entry, where)
            members[member.sub] = member
        differences = _link(response, "differences", url) or differences
        page_url = _link(response, "next", url)
    return members, differences, len(seen)


def _fetch(
    session: Session, context: Context, now: datetime, client: ServiceClient
) -> tuple[bool, dict[str, Member], str | None, int]:
    if not context.memberships_url:
        raise RosterError("This course has no membership service: the LMS sent no NRPS claim at launch.")
    platform = session.get(Platform, context.platform_id)
    assert platform is not None  # the foreign key guarantees it
    token = access_token(session, platform, NRPS_SCOPES, now, client)
    if context.roster_differences_url:
        try:
            return (False, *fetch_members(client, context.roster_differences_url, token))
        except ServiceError as error:
            if error.status not in DIFFERENCES_GONE:
                raise
            logger.info("differences link refused; full roster sync", extra={"context_id": context.id})
    return (True, *fetch_members(client, context.memberships_url, token))


def apply_members(
    session: Session,
    context: Context,
    members: dict[str, Member],
    *,
    full: bool,
    differences_url: str | None,
    now: datetime,
) -> SyncResult:
    """Write a fetched roster: upsert every member; after a full sync mark the absent Deleted."""
    result = SyncResult(context_id=context.id, full=full, members=len(members))
    existing = {
        row.sub: row for row in session.scalars(select(RosterMember).where(RosterMember.context_id == context.id))
    }
    for member in members.values():
        row = existing.get(member.sub)
        if row is None:
            row = RosterMember(
                platform_id=context.platform_id, context_id=context.id, sub=member.sub, first_seen_at=now
            )
            session.add(row)
            result.added += 1
        else:
            result.updated += 1
        row.name = member.name or " ".join(filter(None, (member.given_name, member.family_name))) or row.name
        row.email = member.email or row.email
        row.lis_person_sourcedid = member.lis_person_sourcedid or row.lis_person_sourcedid
        row.roles = list(member.roles)
        row.status = member.status
        row.last_seen_at = now
        row.extra = {k: v for k, v in (("given_name", member.given_name), ("family_name", member.family_name)) if v}
    if full:
        for sub, row in existing.items():
            if sub not in members and row.status != "Deleted":
                row.status = "Deleted"
                result.removed += 1
    context.roster_differences_url = differences_url
    context.roster_synced_at = now
    session.flush()
    return result


def sync_roster(session: Session, context: Context, now: datetime, client: ServiceClient) -> SyncResult:
    """Fetch and store a context's roster now; a `ServiceError` leaves the roster unchanged."""
    full, members, differences, pages = _fetch(session, context, now, client)
    result = apply_members(session, context, members, full=full, differences_url=differences, now=now)
    result.pages = pages
    return result


def roster_sync_interval() -> timedelta:
    """`REBOUND_ROSTER_SYNC_MINUTES` of the current app."""
    return timedelta(minutes=current_app.config["REBOUND_SETTINGS"].roster_sync_minutes)


def is_stale(context: Context, now: datetime, interval: timedelta) -> bool:
    """Whether the roster was never synced, or longer than `interval` ago."""
    return context.roster_synced_at is None or now - context.roster_synced_at >= interval


def sync_if_stale(
    session: Session,
    context: Context,
    now: datetime,
    *,
    client: ServiceClient | None = None,
    interval: timedelta | None = None,
) -> SyncResult | None:
    """Sync the roster unless it was synced within the interval; never raises for the LMS's faults.

    For visits by trainers and HR. The LMS is called with no database write pending, and
    the roster is written only if no other process synced it meanwhile. Returns None when
    nothing was synced (fresh, no NRPS, taken by another process, or the LMS failed: logged).
    """
    interval = interval if interval is not None else roster_sync_interval()
    if not context.memberships_url or not is_stale(context, now, interval):
        return None
    client = client or client_for(current_app)
    try:
        full, members, differences, pages = _fetch(session, context, now, client)
    except ServiceError as error:
        logger.warning(
            "roster sync failed; the roster is unchanged",
            extra={"context_id": context.id, "platform_id": context.platform_id, "error": str(error)},
        )
        return None
    claimed = session.execute(
        update(Context)
        .where(
            Context.id == context.id,
            or_(Context.roster_synced_at.is_(None), Context.roster_synced_at <= now - interval),
        )
        .values(roster_synced_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return None
    result = apply_members(session, context, members, full=full, differences_url=differences, now=now)
    result.pages = pages
    logger.info("roster synced", extra={"context_id": context.id, "summary": result.summary()})
    return result


def contexts_to_sync(
    session: Session, *, platform_id: int | None = None, context_id: int | None = None
) -> list[Context]:
    """Contexts with a membership service, optionally of one platform or one context."""
    query = select(Context).where(Context.memberships_url.is_not(None)).order_by(Context.id)
    if platform_id is not None:
        query = query.where(Context.platform_id == platform_id)
    if context_id is not None:
        query = query.where(Context.id == context_id)
    return list(session.scalars(query))
