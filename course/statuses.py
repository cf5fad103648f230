"""The learner statuses, with one meaning everywhere: course home, progress JSON, exports.

A learner's status in a placement is worked out in this order (the first that applies):

- expired      their latest completion record's `valid_until` (recertification) has passed;
- passed       they met the completion rule and the rule includes cases they passed;
- completed    they met the completion rule and it has no cases (lessons only);
- failed       a case the rule counts has no attempts left and was never passed;
- overdue      the placement's due date has passed and none of the above holds;
- in progress  they opened a lesson or started a case in the placement;
- not started  nothing yet (roster members who never launched are here).
"""

from __future__ import annotations

from datetime import datetime

NOT_STARTED = "not started"
IN_PROGRESS = "in progress"
COMPLETED = "completed"
PASSED = "passed"
FAILED = "failed"
OVERDUE = "overdue"
EXPIRED = "expired"

STATUSES: tuple[str, ...] = (NOT_STARTED, IN_PROGRESS, COMPLETED, PASSED, FAILED, OVERDUE, EXPIRED)
# The statuses a completion record can carry when it is written.
RECORD_STATUSES: tuple[str, ...] = (COMPLETED, PASSED, FAILED)


def learner_status(
    *,
    record_status: str | None,
    record_valid_until: datetime | None,
    started: bool,
    due_at: datetime | None,
    now: datetime,
) -> str:
    """The one status of a learner in a placement, from the facts the rules above read.

    `record_status` is the status of their latest completion record (None if they have none).
    """
    if record_status in (PASSED, COMPLETED):
        if record_valid_until is not None and record_valid_until <= now:
            return EXPIRED
        return record_status
    if record_status == FAILED:
        return FAILED
    if due_at is not None and due_at <= now:
        return OVERDUE
    return IN_PROGRESS if started else NOT_STARTED
