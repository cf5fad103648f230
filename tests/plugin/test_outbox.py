"""The grade outbox worker: every grade arrives, none twice, whatever the LMS does meanwhile."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from flask import Flask
from sqlalchemy import select

from course import migrate
from course.database import db, make_engine
from course.grades import queue_grade
from course.models import Context, Deployment, GradeOutbox, Placement, Platform, User
from plugin import outbox
from plugin.ags import scores_url
from plugin.service_tokens import client_for
from plugin.stores import KeyringStore

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
LINEITEM = "https://lms.example.edu/mod/lti/services.php/2/lineitems/3/lineitem?type_id=1"
TOKEN_URL = "https://lms.example.edu/token"


@dataclass
class ScriptedLms:
    """A token endpoint and a scores endpoint that answer as scripted, then accept."""

    token_script: list[Any] = field(default_factory=list)
    score_script: list[Any] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    score_calls: list[requests.PreparedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self, mock: responses.RequestsMock) -> None:
        mock.add_callback(responses.POST, TOKEN_URL, callback=self._token)
        mock.add_callback(responses.POST, scores_url(LINEITEM).split("?")[0], callback=self._score)

    def _token(self, request: requests.PreparedRequest) -> Any:
        with self.lock:
            step = self.token_script.pop(0) if self.token_script else "ok"
        if step == "ok":
            return 200, {}, json.dumps({"access_token": "tok", "token_type": "Bearer", "expires_in": 3600})
        return _answer(step)

    def _score(self, request: requests.PreparedRequest) -> Any:
        with self.lock:
            self.score_calls.append(request)
            step = self.score_script.pop(0) if self.score_script else "ok"
            if step == "ok":
                self.accepted.append(json.loads(request.body or b"{}"))
                return 204, {}, ""
        return _answer(step)

    def accepted_for(self, sub: str) -> list[dict[str, Any]]:
        return [score for score in self.accepted if score["userId"] == sub]


def _answer(step: Any) -> Any:
    if isinstance(step, Exception):
        return step
    if step == "malformed":
        return 200, {"Content-Type": "application/json"}, "{not json"
    status, body = step if isinstance(step, tuple) else (step, "")
    return status, {}, body


@pytest.fixture
def lms() -> Iterator[ScriptedLms]:
    fake = ScriptedLms()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.install(mock)
        yield fake


@pytest.fixture
def placement(app: Flask) -> Placement:
    return seed_placement(db.session)


def seed_placement(session: Any, *, base: str = "https://lms.example.edu", lineitem: str = LINEITEM) -> Placement:
    """A platform at `base` (its token endpoint `{base}/token`) with one placement graded at `lineitem`."""
    platform = Platform(
        name="Moodle", issuer=base, client_id="c1", auth_login_url=f"{base}/auth",
        auth_token_url=f"{base}/token", jwks_url=f"{base}/jwks",
    )
    platform.deployments.append(Deployment(deployment_id="d1"))
    session.add(platform)
    session.flush()
    context = Context(platform_id=platform.id, deployment_id=platform.deployments[0].id, lms_context_id="course-1")
    session.add(context)
    session.flush()
    placement = Placement(platform_id=platform.id, context_id=context.id, resource_link_id="rl-1", lineitem_url=lineitem)
    session.add(placement)
    session.flush()
    return placement


def learner(placement: Placement, sub: str) -> User:
    user = User(platform_id=placement.platform_id, sub=sub, name=sub)
    db.session.add(user)
    db.session.flush()
    return user


def grade(placement: Placement, user: User, key: str, score: float, now: datetime = NOW, **fields: Any) -> None:
    fields.setdefault("activity_progress", "Completed")
    fields.setdefault("grading_progress", "FullyGraded")
    assert queue_grade(
        db.session, placement=placement, user_id=user.id, change_key=key, score_given=score, score_maximum=10,
        now=now, **fields,
    )
    db.session.commit()


class Clock:
    def __init__(self, start: datetime = NOW) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def rows() -> list[GradeOutbox]:
    db.session.expire_all()
    return list(db.session.scalars(select(GradeOutbox).order_by(GradeOutbox.id)))


def run(app: Flask, clock: Callable[[], datetime]) -> outbox.RunReport:
    return outbox.run_once(app, clock=clock, rng=lambda: 1.0)


def test_a_queued_grade_is_sent_once_with_the_exact_score_json(
    app: Flask, placement: Placement, lms: ScriptedLms
) -> None:
    ada = learner(placement, "ada")
    grade(placement, ada, "ada-done", 9.5, comment="All cases passed")

    assert run(app, Clock()).outcomes == {"sent": 1}
    assert run(app, Clock(NOW + timedelta(hours=1))).total == 0

    (request,) = lms.score_calls
    assert request.url == "https://lms.example.edu/mod/lti/services.php/2/lineitems/3/lineitem/scores?type_id=1"
    assert request.headers["Content-Type"] == "application/vnd.ims.lis.v1.score+json"
    assert request.headers["Authorization"] == "Bearer tok"
    assert request.headers["User-Agent"].startswith("Rebound/")
    assert lms.accepted == [
        {
            "userId": "ada",
            "scoreGiven": 9.5,
            "scoreMaximum": 10.0,
            "activityProgress": "Completed",
            "gradingProgress": "FullyGraded",
            "timestamp": "2026-05-01T12:00:00.000+00:00",
            "comment": "All cases passed",
        }
    ]
    (row,) = rows()
    assert (row.status, row.sent_at, row.attempts, row.locked_until) == ("sent", NOW, 1, None)


def test_a_platform_that_fails_times_out_answers_malformed_and_recovers_gets_every_grade_once(
    app: Flask, placement: Placement, lms: ScriptedLms
) -> None:
    subs = ["ada", "bo", "cy"]
    for sub in subs:
        grade(placement, learner(placement, sub), f"{sub}-done", 7)
    lms.token_script = ["malformed", (503, "maintenance")]
    lms.score_script = [
        500, requests.exceptions.ReadTimeout("slow"), requests.exceptions.ConnectionError("down"), (502, "bad gateway"),
    ]
    clock = Clock()
    errors: list[str] = []
    for _ in range(12):
        run(app, clock)
        errors += [row.last_error for row in rows() if row.status == "pending" and row.last_error]
        clock.advance(outbox.BACKOFF_CAP)

    assert all(row.status == "sent" for row in rows())
    for sub in subs:
        assert len(lms.accepted_for(sub)) == 1
    joined = "\n".join(errors)
    for seen in ("not JSON", "HTTP 503", "HTTP 500", "did not answer", "could not be reached", "HTTP 502"):
        assert seen in joined


def test_a_failing_grade_waits_with_growing_backoff_and_keeps_its_last_error(
    app: Flask, placement: Placement, lms: ScriptedLms
) -> None:
    grade(placement, learner(placement, "ada"), "ada-done", 7)
    lms.score_script = [500, 500, 500]
    clock = Clock()
    waits = []
    for _ in range(3):
        run(app, clock)
        (row,) = rows()
        waits.append(row.next_attempt_at - clock.now)
        assert row.status == "pending" and "HTTP 500" in (row.last_error or "")
        assert run(app, clock).total == 0  # not due again before the backoff ends
        clock.now = row.next_attempt_at
    assert waits == [timedelta(seconds=30), timedelta(seconds=60), timedelta(seconds=120)]


def test_backoff_doubles_with_jitter_up_to_an_hour() -> None:
    assert outbox.backoff(1, rng=lambda: 1.0) == timedelta(seconds=30)
    assert outbox.backoff(1, rng=lambda: 0.0) == timedelta(seconds=15)
    assert outbox.backoff(4, rng=lambda: 1.0) == timedelta(seconds=240)
    assert outbox.backoff(8, rng=lambda: 1.0) == timedelta(hours=1)
    assert outbox.backoff(10_000, rng=lambda: 1.0) == timedelta(hours=1)


def test_retry_after_from_the_lms_is_honoured(app: Flask, placement: Placement, lms: ScriptedLms) -> None:
    grade(placement, learner(placement, "ada"), "ada-done", 7)
    lms.score_script = [429]

    def throttled(request: requests.PreparedRequest) -> Any:
        return 429, {"Retry-After": "600"}, ""

    with responses.RequestsMock() as mock:
        mock.add_callback(responses.POST, TOKEN_URL, callback=lms._token)
        mock.add_callback(responses.POST, scores_url(LINEITEM).split("?")[0], callback=throttled)
        run(app, Clock())
    (row,) = rows()
    assert row.next_attempt_at == NOW + timedelta(seconds=600)


def test_a_worker_killed_mid_send_leaves_a_lease_that_expires_and_the_grade_is_sent_once(
    app: Flask, placement: Placement, lms: ScriptedLms
) -> None:
    grade(placement, learner(placement, "ada"), "ada-done", 7)
    with db.state(app).sessions() as crashed_worker:
        assert outbox.claim_next(crashed_worker, NOW) is not None
        crashed_worker.commit()  # ...and the process dies before sending

    assert run(app, Clock(NOW + timedelta(seconds=30))).total == 0  # still leased
    assert run(app, Clock(NOW + outbox.LEASE + timedelta(seconds=1))).outcomes == {"sent": 1}
    assert run(app, Clock(NOW + timedelta(hours=2))).total == 0
    assert len(lms.accepted) == 1
    (row,) = rows()
    assert (row.status, row.attempts) == ("sent", 2)


def test_a_row_is_never_sent_on_a_lease_about_to_run_out_it_is_released_and_claimed_afresh(
    app: Flask, placement: Placement, lms: ScriptedLms, monkeypatch: pytest.MonkeyPatch
) -> None:
    released: list[int] = []
    real_release = outbox.release

    def spy(session: Any, batch: list[GradeOutbox]) -> None:
        released.extend(row.id for row in batch)
        real_release(session, batch)

    monkeypatch.setattr(outbox, "release", spy)
    for sub in ("ada", "bo"):
        grade(placement, learner(placement, sub), f"{sub}-done", 7)
    calls = []

    def slow_clock() -> datetime:
        # The batch is claimed at NOW; by the time the worker reaches it, little lease is left.
        calls.append(None)
        return NOW if len(calls) <= 2 else NOW + outbox.LEASE - timedelta(seconds=10)

    assert outbox.run_once(app, clock=slow_clock, rng=lambda: 1.0).outcomes == {"sent": 2}
    assert released == [row.id for row in rows()]
    assert sorted(score["userId"] for score in lms.accepted) == ["ada", "bo"]
    # Released rows were not attempted: each counts one attempt, the one that sent it.
    assert [row.attempts for row in rows()] == [1, 1]


def test_a_stopping_worker_claims_nothing_more(app: Flask, placement: Placement, lms: ScriptedLms) -> None:
    grade(placement, learner(placement, "ada"), "ada-done", 7)
    stop = threading.Event()
    stop.set()
    assert outbox.run_once(app, clock=Clock(), stop=stop).total == 0
    assert rows()[0].status == "pending" and rows()[0].locked_until is None


def test_an_outcome_is_not_recorded_by_a_worker_whose_lease_was_taken_over(app: Flask, placement: Placement) -> None:
    grade(placement, learner(placement, "ada"), "ada-done", 7)
    with db.state(app).sessions() as slow, db.state(app).sessions() as other:
        mine = outbox.claim_next(slow, NOW)
        slow.commit()
        theirs = outbox.claim_next(other, NOW + outbox.LEASE)
        other.commit()
        assert mine is not None and theirs is not None and mine.id == theirs.id
        assert outbox._finish(slow, mine, status="sent", sent_at=NOW) is False
        assert outbox._finish(other, theirs, status="sent", sent_at=NOW) is True
        other.commit()


def test_the_newest_score_of_a_learner_supersedes_older_pending_ones(
    app: Flask, placement: Placement, lms: ScriptedLms
) -> None:
    ada = learner(placement, "ada")
    grade(placement, ada, "ada-lesson-1", 2, activity_progress="InProgress", grading_progress="Pending")
    grade(placement, ada, "ada-lesson-2", 4, activity_progress="InProgress", grading_progress="Pending")
    grade(placement, ada, "ada-done", 10)

    assert run(app, Clock(NOW + timedelta(seconds=1))).outcomes == {"sent": 1}
    assert [score["scoreGiven"] for score in lms.accepted] == [10]
    older, middle, newest = rows()
    assert newest.status == "sent" and newest.last_error is None
    for row in (older, middle):
        assert row.status == "sent" and row.last_error == f"superseded by #{newest.id}; not sent"


def test_no_second_score_of_a_learner_is_sent_while_one_is_in_flight(app: Flask, placement: Placement) -> None:
    ada = learner(placement, "ada")
    grade(placement, ada, "ada-lesson-1", 2)
    with db.state(app).sessions() as worker_a:
        assert outbox.claim_next(worker_a, NOW) is not None
        worker_a.commit()
    grade(placement, ada, "ada-done", 10, now=NOW + timedelta(seconds=5))
    bo = learner(placement, "bo")
    grade(placement, bo, "bo-done", 3, now=NOW + timedelta(seconds=5))
    with db.state(app).sessions() as worker_b:
        claimed = outbox.claim_next(worker_b, NOW + timedelta(seconds=10))
        assert claimed is not None and claimed.user_id == bo.id
        assert outbox.claim_next(worker_b, NOW + timedelta(seconds=10)) is None


@pytest.mark.parametrize("status", [400, 404, 410, 422])
def test_a_permanent_refusal_is_marked_failed_with_the_lms_answer_and_not_retried(
    app: Flask, placement: Placement, lms: ScriptedLms, status: int
) -> None:
    grade(placement, learner(placement, "ghost"), "ghost-done", 7)
    lms.score_script = [(status, json.dumps({"message": "User not found in course or is not a student"}))]
    assert run(app, Clock()).outcomes == {"failed": 1}
    assert run(app, Clock(NOW + timedelta(days=3))).total == 0
    (row,) = rows()
    assert row.status == "failed"
    assert f"HTTP {status}: User not found in course" in (row.last_error or "")


def test_a_token_endpoint_refusal_is_retried_not_failed_the_registration_can_be_fixed(
    app: Flask, placement: Placement, lms: ScriptedLms
) -> None:
    grade(placement, learner(placement, "ada"), "ada-done", 7)
    lms.token_script = [(400, json.dumps({"error": "invalid_scope"}))]
    clock = Clock()
    assert run(app, clock).outcomes == {"retry": 1}
    (row,) = rows()
    assert row.status == "pending" and "HTTP 400: invalid_scope" in (row.last_error or "")
    clock.advance(timedelta(minutes=1))
    assert run(app, clock).outcomes == {"sent": 1}


def test_a_409_means_the_lms_already_holds_this_or_a_newer_score(
    app: Flask, placement: Placement, lms: ScriptedLms
) -> None:
    grade(placement, learner(placement, "ada"), "ada-done", 7)
    lms.score_script = [(409, "score is older than the one held")]
    assert run(app, Clock()).outcomes == {"superseded": 1}
    (row,) = rows()
    assert row.status == "sent" and (row.last_error or "").startswith("not resent:")
    assert "HTTP 409" in (row.last_error or "")


def test_a_401_drops_the_cached_token_and_the_retry_uses_a_new_one(
    app: Flask, placement: Placement, lms: ScriptedLms
) -> None:
    from plugin.models import ServiceAccessToken

    grade(placement, learner(placement, "ada"), "ada-done", 7)
    lms.score_script = [401]
    clock = Clock()
    run(app, clock)
    assert db.session.scalars(select(ServiceAccessToken)).all() == []
    clock.advance(timedelta(minutes=1))
    assert run(app, clock).outcomes == {"sent": 1}


def test_outbox_status_shows_counts_the_oldest_pending_and_each_platforms_last_error(
    app: Flask, placement: Placement, lms: ScriptedLms
) -> None:
    grade(placement, learner(placement, "ghost"), "ghost-done", 7)
    grade(placement, learner(placement, "ada"), "ada-done", 8)
    lms.score_script = [(422, "User not found in course or is not a student"), 503]
    run(app, Clock())

    result = app.test_cli_runner().invoke(args=["outbox", "status"])
    assert result.exit_code == 0, result.output
    assert "pending 1" in result.output and "failed 1" in result.output and "sent 0" in result.output
    assert "oldest pending: queued" in result.output
    assert "platform" in result.output and "Moodle: 1 pending, 1 failed; last error:" in result.output
    assert "HTTP 422: User not found in course" in result.output
    ghost = rows()[0]
    assert f"failed #{ghost.id}" in result.output


def test_outbox_retry_queues_failed_grades_again_and_refuses_a_sent_one(
    app: Flask, placement: Placement, lms: ScriptedLms
) -> None:
    grade(placement, learner(placement, "ghost"), "ghost-done", 7)
    grade(placement, learner(placement, "ada"), "ada-done", 8)
    lms.score_script = [422]
    run(app, Clock())
    failed, sent = rows()
    assert (failed.status, sent.status) == ("failed", "sent")
    runner = app.test_cli_runner()

    refused = runner.invoke(args=["outbox", "retry", str(sent.id)])
    assert refused.exit_code == 1 and "would send the same change twice" in refused.output
    assert runner.invoke(args=["outbox", "retry"]).exit_code == 2
    queued = runner.invoke(args=["outbox", "retry", "--failed"])
    assert queued.exit_code == 0 and "Queued 1 grade(s)" in queued.output
    assert rows()[0].status == "pending"
    assert run(app, Clock(datetime.now(UTC) + timedelta(seconds=1))).outcomes == {"sent": 1}
    assert len(lms.accepted_for("ghost")) == 1


def test_worker_once_delivers_what_is_due_and_exits(app: Flask, placement: Placement, lms: ScriptedLms) -> None:
    grade(placement, learner(placement, "ada"), "ada-done", 7, now=datetime.now(UTC) - timedelta(seconds=1))
    result = app.test_cli_runner().invoke(args=["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert len(lms.accepted) == 1 and rows()[0].status == "sent"


def test_the_worker_loop_stops_when_asked(app: Flask) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=outbox.run_worker, args=(app,), kwargs={"interval": 30, "stop": stop})
    thread.start()
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_two_workers_at_once_never_send_the_same_row(
    app_factory: Callable[..., Flask], empty_database_url: str, lms: ScriptedLms
) -> None:
    engine = make_engine(empty_database_url)
    migrate.upgrade(engine)
    engine.dispose()
    apps = [app_factory(DATABASE_URL=empty_database_url) for _ in range(2)]
    state = db.state(apps[0])
    with state.sessions() as session:
        placement = seed_placement(session)
        for n in range(40):
            user = User(platform_id=placement.platform_id, sub=f"learner-{n}")
            session.add(user)
            session.flush()
            queue_grade(
                session, placement=placement, user_id=user.id, change_key=f"k{n}", score_given=n, score_maximum=40,
                activity_progress="Completed", grading_progress="FullyGraded", now=NOW,
            )
        KeyringStore(session, apps[0].config["SECRET_KEY"]).ensure(NOW)
        session.commit()

    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def work(application: Flask) -> None:
        try:
            start.wait()
            outbox.run_once(application, client=client_for(application), clock=lambda: NOW, rng=lambda: 1.0)
        except BaseException as error:  # reported by the assertion below
            failures.append(error)

    threads = [threading.Thread(target=work, args=(application,)) for application in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    sent = sorted(score["userId"] for score in lms.accepted)
    assert sent == sorted(f"learner-{n}" for n in range(40))
    with state.sessions() as session:
        assert set(session.scalars(select(GradeOutbox.status))) == {"sent"}


def test_serve_with_worker_runs_the_worker_beside_gunicorn_and_stops_it_on_sigterm(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("REBOUND_")}
    env["REBOUND_DATA_DIR"] = str(tmp_path / "instance")
    server = subprocess.Popen(
        [sys.executable, "-c", "from course.cli import main; main()", "serve", "--port", str(port), "--workers", "1",
         "--with-worker"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    output = ""
    try:
        assert server.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "outbox worker started" not in output:
            output += server.stdout.readline()
        assert "grade worker running (pid" in output and "outbox worker started" in output
        server.send_signal(signal.SIGTERM)
        rest, _ = server.communicate(timeout=60)
        output += rest
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert "outbox worker stopped" in output
    assert server.returncode == 0
