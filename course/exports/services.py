"""Running an export: its log entry (ExportRun) from `running` to `complete` or `failed`.

A run is `complete` only once the whole file has been written; anything that stops it
early leaves it `failed`, with the rows written so far and the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Final

from sqlalchemy.orm import Session

from course.exports.rows import ExportFilters, ExportRow
from course.models import ExportRun

CHANNELS: Final = ("web", "cli", "api")
logger = logging.getLogger("rebound.exports")


class RowCounter:
    """Passes rows through and counts them, so a run can record how many were written."""

    def __init__(self, rows: Iterable[ExportRow]) -> None:
        self.rows = rows
        self.count = 0

    def __iter__(self) -> Iterator[ExportRow]:
        for row in self.rows:
            self.count += 1
            yield row


def start_export(
    session: Session, *, filters: ExportFilters, format_name: str, channel: str, requested_by: str, now: datetime
) -> ExportRun:
    """Log a new export as running."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown export channel {channel!r}")
    run = ExportRun(
        platform_id=filters.platform_id,
        requested_by=requested_by[:300],
        channel=channel,
        format=format_name,
        filters=filters.log_entry(),
        status="running",
        row_count=0,
        started_at=now,
    )
    session.add(run)
    session.flush()
    logger.info(
        "export started",
        extra={"export_id": run.id, "channel": channel, "format": format_name, "by": run.requested_by,
               "filters": run.filters},
    )
    return run


def finish_export(session: Session, run: ExportRun, *, row_count: int, now: datetime) -> None:
    """Mark a run complete: its whole file was written."""
    run.status = "complete"
    run.row_count = row_count
    run.finished_at = now
    run.error = None
    session.flush()
    logger.info("export complete", extra={"export_id": run.id, "rows": row_count})


def fail_export(session: Session, run: ExportRun, *, reason: str, row_count: int, now: datetime) -> None:
    """Mark a run failed: the file is not complete and must not be offered as if it were."""
    run.status = "failed"
    run.row_count = row_count
    run.finished_at = now
    run.error = reason[:2000]
    session.flush()
    logger.warning("export failed", extra={"export_id": run.id, "rows": row_count, "reason": run.error})


def failure_reason(error: BaseException) -> str:
    """What to record about why an export stopped."""
    if isinstance(error, GeneratorExit):
        return "the download was interrupted before the file was finished"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted by the operator"
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
