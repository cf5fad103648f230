"""The HR export's rows: one per (learner, placement), streamed from keyset-paged queries.

Two passes, each paged on a unique, indexed key so memory stays flat however many rows:

1. learners who started a placement (lesson progress, case attempts or a completion record),
   paged by user id; each page's progress, attempts and latest records are read in three
   queries keyed by user id;
2. roster members (NRPS) of the placements' contexts who never started one of them,
   paged by roster member id.

Statuses come only from `course.statuses.learner_status`. Every time is UTC, written as
ISO 8601 with its offset, and a `time_zone` column says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any, Final

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from course.models import (
    CaseAttempt,
    CompletionRecord,
    Context,
    LessonProgress,
    Placement,
    Platform,
    RosterMember,
    User,
)
from course.statuses import NOT_STARTED, OVERDUE, STATUSES, learner_status

TIME_ZONE: Final = "UTC"
DEFAULT_BATCH: Final = 500
# Roster members NRPS reports as removed or suspended are not expected to take the course.
ROSTER_STATUSES_EXPECTED: Final = ("Active",)

# Column name and kind ("text" or "number"), in the order every format writes them.
FIELDS: Final[tuple[tuple[str, str], ...]] = (
    ("platform", "text"),
    ("context_id", "text"),
    ("context_title", "text"),
    ("resource_link_id", "text"),
    ("placement_title", "text"),
    ("learner_id", "text"),
    ("name", "text"),
    ("email", "text"),
    ("status", "text"),
    ("due_at", "text"),
    ("score_percent", "number"),
    ("attempts", "number"),
    ("first_access", "text"),
    ("completed_at", "text"),
    ("valid_until", "text"),
    ("time_zone", "text"),
    ("time_spent_seconds", "number"),
    ("content_versions", "text"),
    ("completion_record_id", "text"),
)
FIELD_NAMES: Final = tuple(name for name, _ in FIELDS)


class FilterError(ValueError):
    """A filter value that cannot be used; `field` names the filter, the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the pass ("l" launched, "r" roster), its key, and the placement."""

    part: str
    key: int
    placement_id: int

    def encode(self) -> str:
        """The cursor as the opaque text the API hands out (`after=`)."""
        return f"{self.part}{self.key}.{self.placement_id}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Read a cursor given back by a client; FilterError if it was not one of ours."""
        match = _CURSOR.fullmatch(text)
        if match is None:
            raise FilterError(
                "after", f"{text[:40]!r} is not a cursor this API returned; omit it to start at the beginning."
            )
        return cls(match["part"], int(match["key"]), int(match["placement"]))


_CURSOR: Final = re.compile(r"(?P<part>[lr])(?P<key>\d{1,18})\.(?P<placement>\d{1,18})")


@dataclass(frozen=True)
class ExportFilters:
    """What to export. `platform_id` None means every tenant (admins only)."""

    platform_id: int | None
    context_ids: tuple[int, ...] = ()
    date_from: date | None = None
    date_to: date | None = None
    status: str | None = None
    # As the person typed them, for the export log.
    given: Mapping[str, str] = field(default_factory=dict)

    def log_entry(self) -> dict[str, Any]:
        """The filters as stored on the export's log entry."""
        return {"platform_id": self.platform_id, **{key: value for key, value in self.given.items() if value}}


@dataclass(frozen=True)
class ExportRow:
    """One learner in one placement, with every field the export writes."""

    platform: str
    context_id: str
    context_title: str | None
    resource_link_id: str
    placement_title: str | None
    learner_id: str
    name: str | None
    email: str | None
    status: str
    due_at: str | None
    score_percent: int | None
    attempts: int
    first_access: str | None
    completed_at: str | None
    valid_until: str | None
    time_zone: str
    time_spent_seconds: int
    content_versions: str | None
    completion_record_id: str | None
    cursor: Cursor = field(compare=False, repr=False)

    def values(self) -> tuple[Any, ...]:
        """The row's values in the order of FIELDS."""
        return tuple(getattr(self, name) for name in FIELD_NAMES)

    def as_dict(self) -> dict[str, Any]:
        """The row as a mapping of FIELDS (the JSON object)."""
        return {name: getattr(self, name) for name in FIELD_NAMES}


def iso(moment: datetime | None) -> str | None:
    """A UTC timestamp as ISO 8601 with its offset (`2026-03-01T09:30:00+00:00`)."""
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")


def parse_day(text: str, field_name: str) -> date:
    """A day given as YYYY-MM-DD (a full ISO timestamp is accepted and its UTC day used)."""
    cleaned = text.strip()
    try:
        return date.fromisoformat(cleaned)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        raise FilterError(field_name, f"{cleaned[:40]!r} is not a date; use YYYY-MM-DD, e.g. 2026-01-31.") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).date()


def resolve_filters(
    session: Session, *, platform_id: int | None, given: Mapping[str, str | None], may_cross_tenants: bool
) -> ExportFilters:
    """Check filter values as typed (platform, context, from, to, status) against the tenant's data.

    `platform_id` is the tenant of whoever asks; a cross-tenant admin may name one with
    `platform` (an id or an issuer). Raises FilterError naming the first bad value.
    """
    given = {key: (value or "").strip() for key, value in given.items()}
    if given.get("platform"):
        if not may_cross_tenants:
            if platform_id is None or given["platform"] not in (str(platform_id),):
                raise FilterError("platform", "You can only export your own platform's records.")
        else:
            platform_id = _find_platform(session, given["platform"])
    status = given.get("status") or None
    if status is not None and status not in STATUSES:
        raise FilterError("status", f"{status!r} is not a status; use one of: {', '.join(STATUSES)}.")
    date_from = parse_day(given["from"], "from") if given.get("from") else None
    date_to = parse_day(given["to"], "to") if given.get("to") else None
    if date_from and date_to and date_from > date_to:
        raise FilterError("to", f"The range ends ({date_to}) before it starts ({date_from}); swap the dates.")
    context_ids: tuple[int, ...] = ()
    if given.get("context"):
        context_ids = _find_contexts(session, platform_id, given["context"])
    kept = {key: given[key] for key in ("platform", "context", "from", "to", "status") if given.get(key)}
    return ExportFilters(platform_id, context_ids, date_from, date_to, status, kept)


def _find_platform(session: Session, ref: str) -> int:
    query = select(Platform.id).where(Platform.issuer == ref)
    if ref.isdigit():
        query = select(Platform.id).where(or_(Platform.id == int(ref), Platform.issuer == ref))
    found = session.scalars(query).all()
    if not found:
        raise FilterError(
            "platform", f"No platform has the id or issuer {ref[:80]!r}; `rebound platforms list` shows them."
        )
    if len(found) > 1:
        raise FilterError("platform", f"Several platforms use the issuer {ref[:80]!r}; give the platform's id instead.")
    return found[0]


def _find_contexts(session: Session, platform_id: int | None, ref: str) -> tuple[int, ...]:
    """Contexts named by the LMS's context id (or Rebound's own id), within the tenant."""
    match = Context.lms_context_id == ref
    if ref.isdigit():
        match = or_(match, Context.id == int(ref))
    query = select(Context.id).where(match).order_by(Context.id)
    if platform_id is not None:
        query = query.where(Context.platform_id == platform_id)
    found = tuple(session.scalars(query).all())
    if not found:
        raise FilterError("context", f"No course (context) {ref[:80]!r} is known on this platform.")
    return found


@dataclass(frozen=True)
class _Place:
    platform: str
    context_id: int
    lms_context_id: str
    context_title: str | None
    resource_link_id: str
    title: str | None
    due_at: datetime | None


@dataclass
class _Facts:
    """What one learner did in one placement, gathered from the three activity tables."""

    first_access: datetime | None = None
    seconds: int = 0
    attempts: int = 0
    best_percent: int | None = None
    record: Any = None

    def seen(self, moment: datetime | None) -> None:
        if moment is not None and (self.first_access is None or moment < self.first_access):
            self.first_access = moment


def due_date(settings: Mapping[str, Any] | None) -> datetime | None:
    """A placement's due date from its settings (`due_at`, ISO 8601); None if unset or unreadable.

    A bare date means the end of that day, UTC.
    """
    raw = (settings or {}).get("due_at")
    if not isinstance(raw, str) or not raw.strip():
        return None
    text = raw.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time.max.replace(microsecond=0), UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def estimate_rows(session: Session, filters: ExportFilters) -> int:
    """A cheap upper-bound guess of the row count (for a progress bar): started pairs plus roster members."""
    placements = _placements(session, filters)
    if not placements:
        return 0
    ids = list(placements)
    contexts = {place.context_id for place in placements.values()}
    started = session.scalar(
        select(func.count()).select_from(
            select(CompletionRecord.user_id, CompletionRecord.placement_id)
            .where(CompletionRecord.placement_id.in_(ids))
            .union(
                select(LessonProgress.user_id, LessonProgress.placement_id).where(LessonProgress.placement_id.in_(ids)),
                select(CaseAttempt.user_id, CaseAttempt.placement_id).where(CaseAttempt.placement_id.in_(ids)),
            )
            .subquery()
        )
    )
    rostered = session.scalar(
        select(func.count()).select_from(RosterMember).where(
            RosterMember.context_id.in_(contexts), RosterMember.status.in_(ROSTER_STATUSES_EXPECTED)
        )
    )
    return int(started or 0) + int(rostered or 0)


def iter_rows(
    session: Session,
    filters: ExportFilters,
    *,
    now: datetime,
    after: Cursor | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> Iterator[ExportRow]:
    """Every export row matching `filters`, started learners first, then never-started roster members.

    `after` resumes right after a row previously returned (the API's keyset cursor).
    """
    placements = _placements(session, filters)
    if not placements:
        return
    if after is None or after.part == "l":
        yield from _started_rows(session, filters, placements, now, after, batch_size)
        after = None
    yield from _roster_rows(session, filters, placements, now, after, batch_size)


def _placements(session: Session, filters: ExportFilters) -> dict[int, _Place]:
    """The placements in scope; a tenant has few, so they are held for the whole export."""
    query = (
        select(
            Placement.id,
            Platform.name,
            Context.id,
            Context.lms_context_id,
            Context.title,
            Placement.resource_link_id,
            Placement.title,
            Placement.settings,
        )
        .join(Context, Placement.context_id == Context.id)
        .join(Platform, Placement.platform_id == Platform.id)
        .order_by(Placement.id)
    )
    if filters.platform_id is not None:
        query = query.where(Placement.platform_id == filters.platform_id)
    if filters.context_ids:
        query = query.where(Placement.context_id.in_(filters.context_ids))
    return {
        placement_id: _Place(platform, context_id, lms_context_id, context_title, link, title, due_date(settings))
        for placement_id, platform, context_id, lms_context_id, context_title, link, title, settings in session.execute(
            query
        )
    }


def _in_scope(query: Select[Any], column: Any, placements: Mapping[int, _Place]) -> Select[Any]:
    # A short list narrows the query; a long one is cheaper to check in Python.
    return query.where(column.in_(list(placements))) if len(placements) <= 200 else query


def _started_rows(
    session: Session,
    filters: ExportFilters,
    placements: Mapping[int, _Place],
    now: datetime,
    after: Cursor | None,
    batch_size: int,
) -> Iterator[ExportRow]:
    last_user = after.key - 1 if after is not None else 0
    skip_through = (after.key, after.placement_id) if after is not None else None
    while True:
        users_query = select(User.id, User.sub, User.name, User.email).where(User.id > last_user)
        if filters.platform_id is not None:
            users_query = users_query.where(User.platform_id == filters.platform_id)
        users = session.execute(users_query.order_by(User.id).limit(batch_size)).all()
        if not users:
            return
        last_user = users[-1][0]
        facts = _facts_for(session, [user[0] for user in users], placements)
        people = {user_id: (sub, name, email) for user_id, sub, name, email in users}
        for user_id, placement_id in sorted(facts):
            if skip_through is not None and (user_id, placement_id) <= skip_through:
                continue
            sub, name, email = people[user_id]
            row = _row(
                placements[placement_id],
                Cursor("l", user_id, placement_id),
                sub=sub,
                name=name,
                email=email,
                facts=facts[(user_id, placement_id)],
                now=now,
            )
            if _matches(row, filters):
                yield row
        skip_through = None


def _facts_for(
    session: Session, user_ids: Sequence[int], placements: Mapping[int, _Place]
) -> dict[tuple[int, int], _Facts]:
    """What each of these users did in each placement in scope: three queries keyed by user id."""
    facts: dict[tuple[int, int], _Facts] = {}

    def of(user_id: int, placement_id: int) -> _Facts | None:
        if placement_id not in placements:
            return None
        return facts.setdefault((user_id, placement_id), _Facts())

    lessons = _in_scope(
        select(
            LessonProgress.user_id,
            LessonProgress.placement_id,
            func.min(LessonProgress.first_opened_at),
            func.coalesce(func.sum(LessonProgress.seconds_spent), 0),
        )
        .where(LessonProgress.user_id.in_(user_ids))
        .group_by(LessonProgress.user_id, LessonProgress.placement_id),
        LessonProgress.placement_id,
        placements,
    )
    for user_id, placement_id, first, seconds in session.execute(lessons):
        if (found := of(user_id, placement_id)) is not None:
            found.seen(first)
            found.seconds += int(seconds)
    ended_percent = func.max(CaseAttempt.percent).filter(CaseAttempt.status == "ended")
    attempts = _in_scope(
        select(
            CaseAttempt.user_id,
            CaseAttempt.placement_id,
            func.count(),
            func.min(CaseAttempt.started_at),
            func.coalesce(func.sum(CaseAttempt.seconds_spent), 0),
            ended_percent,
        )
        .where(CaseAttempt.user_id.in_(user_ids))
        .group_by(CaseAttempt.user_id, CaseAttempt.placement_id),
        CaseAttempt.placement_id,
        placements,
    )
    for user_id, placement_id, count, first, seconds, best in session.execute(attempts):
        if (found := of(user_id, placement_id)) is not None:
            found.attempts = int(count)
            found.seen(first)
            found.seconds += int(seconds)
            found.best_percent = best
    records = _in_scope(
        select(
            CompletionRecord.user_id,
            CompletionRecord.placement_id,
            CompletionRecord.public_id,
            CompletionRecord.status,
            CompletionRecord.score_percent,
            CompletionRecord.case_attempts,
            CompletionRecord.seconds_spent,
            CompletionRecord.completed_at,
            CompletionRecord.valid_until,
            CompletionRecord.content_versions,
            CompletionRecord.learner_name,
            CompletionRecord.learner_email,
        )
        .where(CompletionRecord.user_id.in_(user_ids))
        # The latest record (highest sequence) is read last and wins.
        .order_by(CompletionRecord.user_id, CompletionRecord.placement_id, CompletionRecord.sequence),
        CompletionRecord.placement_id,
        placements,
    )
    for record in session.execute(records):
        if record.placement_id is not None and (found := of(record.user_id, record.placement_id)) is not None:
            found.record = record
    return facts


def _row(
    place: _Place,
    cursor: Cursor,
    *,
    sub: str,
    name: str | None,
    email: str | None,
    facts: _Facts | None,
    now: datetime,
) -> ExportRow:
    record = facts.record if facts else None
    started = facts is not None
    status = learner_status(
        record_status=record.status if record else None,
        record_valid_until=record.valid_until if record else None,
        started=started,
        due_at=place.due_at,
        now=now,
    )
    seconds = facts.seconds if facts else 0
    attempts = facts.attempts if facts else 0
    if record is not None:
        # Progress rows may be gone (content removed); the record's snapshot is then the evidence.
        seconds = seconds or record.seconds_spent
        attempts = attempts or record.case_attempts
    score = record.score_percent if record is not None else (facts.best_percent if facts else None)
    first_access = facts.first_access if facts else None
    if first_access is None and record is not None:
        first_access = record.completed_at
    return ExportRow(
        platform=place.platform,
        context_id=place.lms_context_id,
        context_title=place.context_title,
        resource_link_id=place.resource_link_id,
        placement_title=place.title,
        learner_id=sub,
        # An LMS that sends no name at launch may have sent one when the record was made.
        name=name or (record.learner_name if record is not None else None),
        email=email or (record.learner_email if record is not None else None),
        status=status,
        due_at=iso(place.due_at),
        score_percent=score,
        attempts=attempts,
        first_access=iso(first_access),
        completed_at=iso(record.completed_at) if record is not None else None,
        valid_until=iso(record.valid_until) if record is not None else None,
        time_zone=TIME_ZONE,
        time_spent_seconds=seconds,
        content_versions=content_versions_text(record.content_versions) if record is not None else None,
        completion_record_id=record.public_id if record is not None else None,
        cursor=cursor,
    )


def content_versions_text(versions: Mapping[str, Any] | None) -> str | None:
    """A record's content versions as one cell: `key=version` pairs in key order, `; ` between."""
    if not versions:
        return None
    return "; ".join(f"{key}={versions[key]}" for key in sorted(versions))


def _matches(row: ExportRow, filters: ExportFilters) -> bool:
    if filters.status is not None and row.status != filters.status:
        return False
    if filters.date_from is None and filters.date_to is None:
        return True
    # The date range reads the completion time, or first access for rows not completed.
    moment = row.completed_at or row.first_access
    if moment is None:
        return False
    day = datetime.fromisoformat(moment).astimezone(UTC).date()
    if filters.date_from is not None and day < filters.date_from:
        return False
    return filters.date_to is None or day <= filters.date_to


def _is_learner(roles: Sequence[str] | None) -> bool:
    """Whether NRPS lists the member as a learner (no roles at all counts as one)."""
    if not roles:
        return True
    return any(role.rsplit("#", 1)[-1].rsplit("/", 1)[-1] == "Learner" for role in roles)


def _roster_rows(
    session: Session,
    filters: ExportFilters,
    placements: Mapping[int, _Place],
    now: datetime,
    after: Cursor | None,
    batch_size: int,
) -> Iterator[ExportRow]:
    if filters.date_from is not None or filters.date_to is not None:
        return  # never-started rows have no date, so no date range holds them
    if filters.status is not None and filters.status not in (NOT_STARTED, OVERDUE):
        return
    by_context: dict[int, list[int]] = {}
    for placement_id, place in placements.items():
        by_context.setdefault(place.context_id, []).append(placement_id)
    last_member = after.key - 1 if after is not None else 0
    skip_through = (after.key, after.placement_id) if after is not None else None
    while True:
        query = select(
            RosterMember.id,
            RosterMember.platform_id,
            RosterMember.context_id,
            RosterMember.sub,
            RosterMember.name,
            RosterMember.email,
            RosterMember.roles,
        ).where(RosterMember.id > last_member, RosterMember.status.in_(ROSTER_STATUSES_EXPECTED))
        if filters.platform_id is not None:
            query = query.where(RosterMember.platform_id == filters.platform_id)
        if len(by_context) <= 200:
            query = query.where(RosterMember.context_id.in_(list(by_context)))
        members = session.execute(query.order_by(RosterMember.id).limit(batch_size)).all()
        if not members:
            return
        last_member = members[-1][0]
        started = _started_pairs(session, members)
        for member_id, platform_id, context_id, sub, name, email, roles in members:
            if not _is_learner(roles):
                continue
            for placement_id in by_context.get(context_id, ()):
                if skip_through is not None and (member_id, placement_id) <= skip_through:
                    continue
                if (platform_id, sub, placement_id) in started:
                    continue
                row = _row(
                    placements[placement_id],
                    Cursor("r", member_id, placement_id),
                    sub=sub,
                    name=name,
                    email=email,
                    facts=None,
                    now=now,
                )
                if _matches(row, filters):
                    yield row
        skip_through = None


def _started_pairs(session: Session, members: Sequence[Any]) -> set[tuple[int, str, int]]:
    """(platform, sub, placement) for the members of this page who started a placement."""
    subs = sorted({member.sub for member in members})
    platforms = {member.platform_id for member in members}
    users = {
        user_id: (platform_id, sub)
        for user_id, platform_id, sub in session.execute(
            select(User.id, User.platform_id, User.sub).where(User.sub.in_(subs), User.platform_id.in_(platforms))
        )
    }
    if not users:
        return set()
    ids = list(users)
    pairs = session.execute(
        select(LessonProgress.user_id, LessonProgress.placement_id)
        .where(LessonProgress.user_id.in_(ids))
        .union(
            select(CaseAttempt.user_id, CaseAttempt.placement_id).where(CaseAttempt.user_id.in_(ids)),
            select(CompletionRecord.user_id, CompletionRecord.placement_id).where(CompletionRecord.user_id.in_(ids)),
        )
    )
    return {(*users[user_id], placement_id) for user_id, placement_id in pairs if placement_id is not None}

