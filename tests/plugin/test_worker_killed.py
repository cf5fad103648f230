"""The grade worker really killed mid-send: after a restart the grade is sent, and once.

`rebound worker` runs as its own process on a throwaway PostgreSQL database and talks HTTP to
a stub LMS in this test. The stub holds the score POST open, the test SIGKILLs the worker while
it waits for the answer, and then restarts it. The killed worker's POST had reached the LMS, so
the LMS sees the score twice, which is the one exception the README allows: the same document,
same timestamp, which AGS keeps as one score. Nothing else may send it again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from flask import Flask
from sqlalchemy import select, update

from course import migrate
from course.database import db, make_engine, utcnow
from course.grades import queue_grade
from course.models import GradeOutbox, User
from plugin import outbox
from plugin.ags import timestamp
from plugin.stores import KeyringStore
from tests.conftest import TEST_SECRET, Databases
from tests.plugin.test_outbox import seed_placement

REPO = Path(__file__).resolve().parents[2]
REBOUND = Path(sys.executable).parent / "rebound"
LINEITEM_PATH = "/mod/lti/services.php/2/lineitems/3/lineitem"
SCORES_PATH = LINEITEM_PATH + "/scores"
TOKEN = "stub-token"
# How long the score service holds its answer: far longer than the test takes to kill the
# worker waiting for it (the worker's own read timeout, 15 s, is never reached).
HANG_SECONDS = 30
WORKER_SECONDS = 30


@dataclass
class StubLms:
    """An LMS on loopback: a token endpoint, and a score service that can hold its answer."""

    scores: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    token_requests: int = 0
    hanging: bool = True
    score_arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer_normally(self) -> None:
        with self.lock:
            self.hanging = False
        self.release.set()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    lms: StubLms


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        lms = self.server.lms
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/token":
            form = parse_qs(body.decode())
            if form.get("grant_type") != ["client_credentials"] or not form.get("client_assertion"):
                self._answer(400, {"error": "invalid_request"})
                return
            with lms.lock:
                lms.token_requests += 1
            self._answer(200, {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600})
        elif self.path == SCORES_PATH:
            with lms.lock:
                lms.scores.append(json.loads(body))
                lms.authorizations.append(self.headers.get("Authorization", ""))
                hang = lms.hanging
            lms.score_arrived.set()
            if hang:
                # The LMS has the score but has not answered yet: the worker is mid-send.
                lms.release.wait(HANG_SECONDS)
            self._answer(204)
        else:
            self._answer(404, {"error": "not found"})

    def _answer(self, status: int, document: dict[str, Any] | None = None) -> None:
        payload = json.dumps(document).encode() if document is not None else b""
        # The killed worker's connection is gone by the time its answer is written.
        with suppress(OSError):
            self.send_response(status)
            if payload:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def lms() -> Iterator[StubLms]:
    stub = StubLms()
    server = _Server(("127.0.0.1", 0), _Handler)
    server.lms = stub
    stub.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield stub
    stub.answer_normally()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@dataclass
class Workers:
    """`rebound worker` processes started by the test; each one logs to its own file."""

    env: dict[str, str]
    logs: Path
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = self.logs / f"worker-{len(self.started) + 1}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(REBOUND), "worker", *args], cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )
        self.started.append(process)
        return process

    def run_once(self) -> None:
        process = self.start("--once")
        assert process.wait(timeout=WORKER_SECONDS) == 0, self.log()

    def log(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}" for path in sorted(self.logs.glob("*.log"))
        )

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture
def world(
    databases: Databases, app_factory: Callable[..., Flask], lms: StubLms, tmp_path: Path
) -> Iterator[tuple[Flask, Workers, int]]:
    """A committed platform on PostgreSQL whose token and score services are the stub, one grade
    queued for it, and the environment `rebound worker` runs in; yields (app, workers, row id)."""
    url = databases.new_url("postgresql")
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    data_dir = tmp_path / "data"
    app = app_factory(DATABASE_URL=url, DATA_DIR=str(data_dir), SECRET_KEY=TEST_SECRET)
    with app.app_context():
        row_id = _queue_one_grade(lms)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REBOUND_")}
    env.update(
        REBOUND_ENV="development",  # development allows the stub's http:// service URLs
        REBOUND_DATABASE_URL=url,
        REBOUND_DATA_DIR=str(data_dir),
        # The key the tool's signing keys are sealed with: the worker signs its client assertion.
        REBOUND_SECRET_KEY=TEST_SECRET,
        REBOUND_LOG_FORMAT="text",
        NO_PROXY="127.0.0.1",  # a proxy in the caller's environment must not stand in for the LMS
        PYTHONPATH=str(REPO),
    )
    workers = Workers(env, tmp_path)
    try:
        yield app, workers, row_id
    finally:
        workers.stop_all()


def _queue_one_grade(lms: StubLms) -> int:
    session = db.session
    placement = seed_placement(session, base=lms.base, lineitem=lms.base + LINEITEM_PATH)
    ada = User(platform_id=placement.platform_id, sub="ada", name="Ada")
    session.add(ada)
    session.flush()
    now = utcnow() - timedelta(seconds=1)  # due at once for the worker's clock
    assert queue_grade(
        session, placement=placement, user_id=ada.id, change_key="ada-done", score_given=7, score_maximum=10,
        activity_progress="Completed", grading_progress="FullyGraded", now=now,
    )
    KeyringStore(session, TEST_SECRET).ensure(now)
    session.commit()
    return int(session.scalars(select(GradeOutbox.id)).one())


def _row(app: Flask, row_id: int) -> GradeOutbox:
    with app.app_context():
        db.session.expire_all()
        row = db.session.get(GradeOutbox, row_id)
        assert row is not None
        db.session.expunge(row)
        return row


def test_a_worker_killed_mid_send_sends_the_grade_after_restart_once(
    world: tuple[Flask, Workers, int], lms: StubLms
) -> None:
    app, workers, row_id = world

    doomed = workers.start()
    deadline = time.monotonic() + WORKER_SECONDS
    while not lms.score_arrived.wait(0.1):
        assert doomed.poll() is None and time.monotonic() < deadline, "the worker never sent:\n" + workers.log()
    os.kill(doomed.pid, signal.SIGKILL)
    assert doomed.wait(timeout=10) == -signal.SIGKILL

    killed = _row(app, row_id)
    assert (killed.status, killed.sent_at, killed.attempts) == ("pending", None, 1)
    assert killed.locked_until is not None and killed.locked_until > utcnow() + outbox.LEASE - timedelta(minutes=1)

    workers.run_once()
    assert len(lms.scores) == 1, "a restart while the lease runs must leave the row to its holder"
    assert _row(app, row_id).locked_until == killed.locked_until

    with app.app_context():
        # Stands for the five minutes of the dead worker's lease running out.
        db.session.execute(
            update(GradeOutbox).where(GradeOutbox.id == row_id).values(locked_until=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()
    lms.answer_normally()

    workers.run_once()
    sent = _row(app, row_id)
    assert (sent.status, sent.attempts, sent.locked_until, sent.last_error) == ("sent", 2, None, None), workers.log()
    assert len(lms.scores) == 2, "exactly one send after the restart, besides the killed worker's"
    first, again = lms.scores
    assert again == first
    assert (first["userId"], first["scoreGiven"], first["timestamp"]) == ("ada", 7, timestamp(sent.scored_at))
    # The restarted worker used the token the killed one had cached, not a new one.
    assert lms.token_requests == 1 and lms.authorizations == [f"Bearer {TOKEN}"] * 2

    workers.run_once()
    assert len(lms.scores) == 2
    assert _row(app, row_id).sent_at == sent.sent_at
