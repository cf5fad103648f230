"""The grade outbox worker: delivers `grade_outbox` rows to the LMS, retrying until they arrive.

Rows are queued only by `course.grades.queue_grade`. Delivery rules:

* **Claiming.** A worker claims up to 20 due rows at once by setting a lease (`locked_until`,
  5 min) in a single conditional UPDATE whose rows are picked with `FOR UPDATE SKIP LOCKED`
  on PostgreSQL (SQLite serialises writers, so the conditional UPDATE alone is atomic there).
  Any number of workers in any number of processes can run; none claims a leased row. A row
  is sent only while at least 45 s of its lease remain (a token and a score call at their
  timeouts); otherwise, and when the worker is stopping, the rest of the batch is released.
* **One score per learner and line item at a time, newest first.** Only the newest pending
  row of a (learner, line item) is sent, and never while another row of the pair is leased.
  When it arrives, older pending rows of the pair are marked sent as *superseded*: AGS
  keeps the latest score only, and sending an older one afterwards would be refused
  (Moodle answers 409) or, worse, overwrite the newer score.
* **Retries.** Timeouts, unreachable hosts, 5xx, 429, 401 (the cached token is dropped),
  403, token-endpoint failures and malformed answers are retried with exponential backoff
  and jitter (30 s doubling to at most 1 h, honouring Retry-After), for as long as it takes:
  a row is never dropped. Each attempt's error is kept in `last_error`.
* **Permanent refusals** of the score itself — 400 (malformed), 404/410 (line item gone or learner not in the
  course), 405, 413, 415, 422 (Canvas: user not in the course) — can never succeed as they
  are: the row is marked `failed` with the LMS's answer, shown by `rebound outbox status`,
  and `rebound outbox retry` queues it again once the cause is fixed.
* **409 Conflict** (Moodle: the timestamp is not newer than the score it holds) means the
  LMS already has this score or a newer one, so resending cannot change anything: the row
  is marked sent, with the answer kept as a note.
* **Never twice.** A row is marked sent only by the worker holding its lease. The one way
  the same row is sent twice: the worker dies after the LMS accepted the POST and before it
  recorded that. The lease then expires (5 min) and another worker sends the identical
  document, same timestamp, again; AGS score POSTs are idempotent per timestamp, so the LMS
  ends in the same state (Moodle may answer 409, which is recorded as sent).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import Flask
from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from course.database import db, utcnow
from course.models import GradeOutbox, Platform, User
from plugin import ags
from plugin.service_tokens import (
    ServiceClient,
    ServiceError,
    TokenError,
    access_token,
    client_for,
    ensure_signing_key,
    forget_token,
)

LEASE = timedelta(minutes=5)
# Rows leased per claim: one claim's query costs about as much for 20 rows as for one.
BATCH = 20
# The longest one row can take: a token and a score call, each at its connect + read timeout.
ROW_BUDGET = timedelta(seconds=45)
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)
PERMANENT_STATUSES = frozenset({400, 404, 405, 410, 413, 415, 422})
CONFLICT = 409
MAX_ERROR_LENGTH = 1000

logger = logging.getLogger("rebound.outbox")


def backoff(attempts: int, rng: Callable[[], float] = random.random) -> timedelta:
    """The wait before the next try: 30 s doubling per attempt, at most 1 h, with jitter.

    The jitter (50-100 % of the step) keeps workers from retrying a recovering LMS in step.
    """
    step = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, min(attempts - 1, 20)))
    return step * (0.5 + rng() / 2)


def _due(now: datetime):  # type: ignore[no-untyped-def]
    other = aliased(GradeOutbox)
    return and_(
        GradeOutbox.status == "pending",
        GradeOutbox.next_attempt_at <= now,
        or_(GradeOutbox.locked_until.is_(None), GradeOutbox.locked_until <= now),
        ~exists().where(
            other.user_id == GradeOutbox.user_id,
            other.lineitem_url == GradeOutbox.lineitem_url,
            other.status == "pending",
            other.id != GradeOutbox.id,
            or_(
                other.scored_at > GradeOutbox.scored_at,
                and_(other.scored_at == GradeOutbox.scored_at, other.id > GradeOutbox.id),
                other.locked_until > now,
            ),
        ),
    )


def claim_due(session: Session, now: datetime, *, limit: int = BATCH, lease: timedelta = LEASE) -> list[GradeOutbox]:
    """Lease up to `limit` due rows in one statement, safe across processes; oldest due first."""
    pick = (
        select(GradeOutbox.id)
        .where(_due(now))
        .order_by(GradeOutbox.next_attempt_at, GradeOutbox.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=GradeOutbox)
    )
    claimed = session.execute(
        update(GradeOutbox)
        .where(
            GradeOutbox.id.in_(pick),
            GradeOutbox.status == "pending",
            or_(GradeOutbox.locked_until.is_(None), GradeOutbox.locked_until <= now),
        )
        .values(locked_until=now + lease, attempts=GradeOutbox.attempts + 1)
        .returning(GradeOutbox.id)
        .execution_options(synchronize_session=False)
    ).scalars().all()
    if not claimed:
        return []
    rows = session.scalars(
        select(GradeOutbox).where(GradeOutbox.id.in_(claimed)).execution_options(populate_existing=True)
    ).all()
    return sorted(rows, key=lambda row: (row.next_attempt_at, row.id))


def claim_next(session: Session, now: datetime, lease: timedelta = LEASE) -> GradeOutbox | None:
    """Lease the next due row; None when none is due."""
    rows = claim_due(session, now, limit=1, lease=lease)
    return rows[0] if rows else None


def release(session: Session, rows: list[GradeOutbox]) -> None:
    """Give back leased rows not attempted (stopping, or too little lease left to send safely)."""
    for row in rows:
        session.execute(
            update(GradeOutbox)
            .where(GradeOutbox.id == row.id, GradeOutbox.locked_until == row.locked_until)
            .values(locked_until=None, attempts=GradeOutbox.attempts - 1)
            .execution_options(synchronize_session=False)
        )


def _finish(session: Session, row: GradeOutbox, **values: object) -> bool:
    """Record an outcome, but only while this worker still holds the row's lease."""
    # In a fresh transaction: SQLite refuses to turn an old read snapshot into a write once
    # another process has written (another worker recording its own outcome).
    session.commit()
    result = session.execute(
        update(GradeOutbox)
        .where(GradeOutbox.id == row.id, GradeOutbox.locked_until == row.locked_until)
        .values(locked_until=None, **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        logger.warning("outbox lease lost before the outcome was recorded", extra={"outbox_id": row.id})
        return False
    return True


def deliver(
    session: Session, row: GradeOutbox, client: ServiceClient, now: datetime, rng: Callable[[], float] = random.random
) -> str:
    """Send one claimed row and record the outcome: "sent", "superseded", "retry" or "failed".

    Commits once between fetching a token and sending, so no database write lock is held
    while the LMS is being called.
    """
    platform = session.get(Platform, row.platform_id)
    user = session.get(User, row.user_id)
    assert platform is not None and user is not None  # foreign keys (cascading deletes)
    document = ags.score_document(
        user_sub=user.sub,
        score_given=row.score_given,
        score_maximum=row.score_maximum,
        activity_progress=row.activity_progress,
        grading_progress=row.grading_progress,
        scored_at=row.scored_at,
        comment=row.comment,
    )
    session.commit()
    try:
        token = access_token(session, platform, ags.SCORE_SCOPES, now, client)
        session.commit()
        ags.post_score(client, row.lineitem_url, document, token)
    except ServiceError as error:
        return _record_failure(session, row, error, now, rng)
    if not _finish(session, row, status="sent", sent_at=now, last_error=None):
        return "sent"
    _supersede_older(session, row, now)
    logger.info("grade sent", extra={"outbox_id": row.id, "platform_id": row.platform_id, "attempts": row.attempts})
    return "sent"


def _record_failure(
    session: Session, row: GradeOutbox, error: ServiceError, now: datetime, rng: Callable[[], float]
) -> str:
    message = f"{now.isoformat(timespec='seconds')} attempt {row.attempts}: {error}"[:MAX_ERROR_LENGTH]
    extra = {"outbox_id": row.id, "platform_id": row.platform_id, "status": error.status, "error": str(error)}
    if error.status == CONFLICT:
        _finish(session, row, status="sent", sent_at=now, last_error=f"not resent: {message}")
        _supersede_older(session, row, now)
        logger.info("grade already held by the LMS (409)", extra=extra)
        return "superseded"
    # A token endpoint's 400 (invalid_client, invalid_scope) is a registration problem an
    # administrator can fix: the grade itself is fine, so it waits and is retried.
    if error.status in PERMANENT_STATUSES and not isinstance(error, TokenError):
        _finish(session, row, status="failed", last_error=message)
        logger.warning("grade refused by the LMS", extra=extra)
        return "failed"
    if error.status == 401:
        forget_token(session, row.platform_id, ags.SCORE_SCOPES)
    wait = backoff(row.attempts, rng)
    if error.retry_after is not None:
        wait = max(wait, min(timedelta(seconds=error.retry_after), BACKOFF_CAP))
    _finish(session, row, next_attempt_at=now + wait, last_error=message)
    logger.warning("grade delivery failed; will retry", extra={**extra, "retry_in_s": round(wait.total_seconds())})
    return "retry"


def _supersede_older(session: Session, row: GradeOutbox, now: datetime) -> None:
    session.execute(
        update(GradeOutbox)
        .where(
            GradeOutbox.user_id == row.user_id,
            GradeOutbox.lineitem_url == row.lineitem_url,
            GradeOutbox.status == "pending",
            GradeOutbox.scored_at < row.scored_at,
            or_(GradeOutbox.locked_until.is_(None), GradeOutbox.locked_until <= now),
        )
        .values(status="sent", sent_at=now, locked_until=None, last_error=f"superseded by #{row.id}; not sent")
        .execution_options(synchronize_session=False)
    )


@dataclass
class RunReport:
    """What one pass of the worker did."""

    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())


def run_once(
    app: Flask,
    *,
    client: ServiceClient | None = None,
    clock: Callable[[], datetime] = utcnow,
    rng: Callable[[], float] = random.random,
    limit: int = 500,
    stop: threading.Event | None = None,
    sessions: Callable[[], AbstractContextManager[Session]] | None = None,
) -> RunReport:
    """Deliver due rows until none is due (or `limit` rows, or `stop` is set).

    Each row gets a session of its own from `sessions` (default: the app's session factory).
    """
    client = client or client_for(app)
    report = RunReport()
    sessions = sessions or db.state(app).sessions
    with sessions() as session:
        ensure_signing_key(session, client, clock())
        session.commit()
    while report.total < limit and not (stop is not None and stop.is_set()):
        with sessions() as session:
            batch = claim_due(session, clock(), limit=min(BATCH, limit - report.total))
            session.commit()
            if not batch:
                break
            for index, row in enumerate(batch):
                if (stop is not None and stop.is_set()) or clock() + ROW_BUDGET > (row.locked_until or clock()):
                    # Never send on a lease that might run out mid-call: another worker could
                    # take the row over and send it too.
                    release(session, batch[index:])
                    session.commit()
                    break
                outcome = _deliver_safely(session, row, client, clock(), rng)
                report.outcomes[outcome] = report.outcomes.get(outcome, 0) + 1
    return report


def _deliver_safely(
    session: Session, row: GradeOutbox, client: ServiceClient, now: datetime, rng: Callable[[], float]
) -> str:
    try:
        outcome = deliver(session, row, client, now, rng)
        session.commit()
    except Exception:
        # An unexpected bug must not stop the worker; the lease expires and the row is tried
        # again, so nothing is lost.
        session.rollback()
        logger.exception("outbox delivery crashed", extra={"outbox_id": row.id})
        return "crashed"
    return outcome


def run_worker(app: Flask, *, interval: float, stop: threading.Event, once: bool = False) -> None:
    """The worker loop: deliver, then wait `interval` seconds (or until stopped), forever."""
    logger.info("outbox worker started", extra={"interval_s": interval})
    while not stop.is_set():
        try:
            report = run_once(app, stop=stop)
            if report.total:
                logger.info("outbox pass", extra=report.outcomes)
        except Exception:
            # The database may be down for a while; keep the worker alive and try again.
            logger.exception("outbox pass failed")
        if once:
            break
        stop.wait(interval)
    logger.info("outbox worker stopped")


def retry(session: Session, *, row_id: int | None = None, failed: bool = False, now: datetime) -> int:
    """Queue rows again now: one row (pending or failed) or every failed row; returns how many."""
    condition = GradeOutbox.status == "failed" if failed else and_(
        GradeOutbox.id == row_id, GradeOutbox.status.in_(("pending", "failed"))
    )
    result = session.execute(
        update(GradeOutbox)
        .where(condition)
        .values(status="pending", next_attempt_at=now, locked_until=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class PlatformBacklog:
    """One platform's undelivered grades and the latest error seen for them."""

    platform_id: int
    name: str
    pending: int
    failed: int
    last_error: str | None


@dataclass(frozen=True)
class OutboxStatus:
    """The outbox at a glance, for operators."""

    counts: dict[str, int]
    superseded: int
    oldest_pending: datetime | None
    platforms: list[PlatformBacklog]
    failed_rows: list[tuple[int, str | None]]


def outbox_status(session: Session, *, failed_limit: int = 20) -> OutboxStatus:
    """Counts by status, the oldest pending grade, and per platform the latest error."""
    counts = {status: 0 for status in ("pending", "sent", "failed")}
    for status, count in session.execute(select(GradeOutbox.status, func.count()).group_by(GradeOutbox.status)):
        counts[status] = count
    superseded = session.scalar(
        select(func.count()).where(GradeOutbox.status == "sent", GradeOutbox.last_error.is_not(None))
    ) or 0
    oldest = session.scalar(select(func.min(GradeOutbox.created_at)).where(GradeOutbox.status == "pending"))
    platforms = []
    open_rows = GradeOutbox.status.in_(("pending", "failed"))
    for platform_id, name, pending, failed in session.execute(
        select(
            Platform.id,
            Platform.name,
            func.count().filter(GradeOutbox.status == "pending"),
            func.count().filter(GradeOutbox.status == "failed"),
        )
        .join(GradeOutbox, GradeOutbox.platform_id == Platform.id)
        .where(open_rows)
        .group_by(Platform.id, Platform.name)
        .order_by(Platform.id)
    ):
        last_error = session.scalar(
            select(GradeOutbox.last_error)
            .where(GradeOutbox.platform_id == platform_id, open_rows, GradeOutbox.last_error.is_not(None))
            .order_by(GradeOutbox.id.desc())
            .limit(1)
        )
        platforms.append(PlatformBacklog(platform_id, name, pending, failed, last_error))
    failed_rows = [
        (row_id, error)
        for row_id, error in session.execute(
            select(GradeOutbox.id, GradeOutbox.last_error)
            .where(GradeOutbox.status == "failed")
            .order_by(GradeOutbox.id.desc())
            .limit(failed_limit)
        )
    ]
    return OutboxStatus(counts, int(superseded), oldest, platforms, failed_rows)
