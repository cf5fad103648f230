"""PostgreSQL restarted for real while learners work: Rebound answers 503 quickly while it is
down, never 500 (not even on the stale pooled connections right after), recovers by itself,
and loses nothing it acknowledged.

The restart is of a private PostgreSQL 15 cluster this module starts and owns (`pg_ctl stop
-m fast`, then `start`), so the shared server other tests use is never touched. Where
test_database_outage cuts a relay, here the server itself goes away: it terminates the open
sessions mid-transaction, refuses new ones, then comes back with the data it had. Two more
tests make certain what the load hits by chance: stale pooled connections after a restart no
request saw, and a connection ended between a page being made and its request ending.
"""

from __future__ import annotations

import contextlib
import html
import itertools
import os
import pwd
import random
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request, request_finished
from flask.testing import FlaskClient
from sqlalchemy import select, text
from werkzeug.test import TestResponse

from course import migrate
from course.database import db, make_engine
from course.errors import DATABASE_RETRY_AFTER_SECONDS
from course.models import CaseAttempt, CaseStep, LessonProgress, User
from tests.conftest import IN_CI
from tests.helpers import csrf_token_from

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
CASE = "airline-angry-passenger"
LEARNERS = 8
DOWN_SECONDS = 2.5
LOAD_AFTER_RESTART_SECONDS = 3.0
THINK_SECONDS = 0.05  # a learner reads a page for 0-0.1 s before submitting it
RETRY_PAUSE_SECONDS = 0.1  # far shorter than Retry-After: the storm a restart must survive
# Measured on a two-core machine under this load: a 503 takes 2-200 ms, most under 10 ms (the
# connection is refused at once); a second leaves ample margin and is still "quick".
QUICK_SECONDS = 1.0


class Cluster:
    """A PostgreSQL cluster of this module's own, run as the postgres user, on a free port."""

    def __init__(self) -> None:
        for program in ("initdb", "pg_ctl"):
            if not (POSTGRES_BIN / program).is_file():
                _skip(f"{POSTGRES_BIN / program} is missing (apt-get install postgresql-15)")
        try:
            self.owner = pwd.getpwnam("postgres")
        except KeyError:
            _skip("there is no postgres user to run a private cluster as (initdb refuses root)")
        self.directory = Path(tempfile.mkdtemp(prefix="rebound-restart-"))
        os.chown(self.directory, self.owner.pw_uid, self.owner.pw_gid)
        self.data = self.directory / "data"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.databases = itertools.count(1)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, program: str, *arguments: str) -> None:
        done = subprocess.run(
            [str(POSTGRES_BIN / program), *arguments], user=self.owner.pw_uid, group=self.owner.pw_gid,
            extra_groups=[], cwd=self.directory, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
            capture_output=True, text=True, timeout=60, check=False,
        )
        if done.returncode != 0:
            log = self.directory / "server.log"
            raise RuntimeError(f"{program} {' '.join(arguments)} failed: {done.stderr}\n"
                               f"{log.read_text() if log.exists() else ''}")

    def create(self) -> None:
        self._run("initdb", "-D", str(self.data), "--auth=trust", "-U", "postgres", "--no-sync",
                  "-E", "UTF8", "--locale=C.UTF-8")
        with (self.data / "postgresql.conf").open("a") as conf:
            # Durability does not matter to a throwaway cluster, and a clean stop writes everything.
            conf.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.directory}'\nfsync = off\nfull_page_writes = off\n")
        self.start()

    def new_database(self) -> str:
        """The URL of a new, empty database on the cluster."""
        name = f"rebound_{next(self.databases)}"
        admin = make_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return self.url(name)

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.directory / "server.log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


def _skip(reason: str) -> None:
    # As in conftest: CI has PostgreSQL, so a test that cannot run there is a failure.
    if IN_CI:
        pytest.fail(reason + " (CI=true: PostgreSQL tests may not be skipped)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A running private cluster, removed at the end of the module."""
    private = Cluster()
    try:
        private.create()
        yield private
    finally:
        private.remove()


@pytest.fixture
def app(app_factory: Callable[..., Flask], cluster: Cluster) -> Flask:
    """Replaces conftest's `app` (one per backend, inside a rolled-back transaction) for this
    module: here requests run in many threads and really commit, to a new migrated database
    on the private cluster."""
    url = cluster.new_database()
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return app_factory(DATABASE_URL=url)


@dataclass
class Exchange:
    """One request as the learner's browser saw it."""

    learner: str
    request: str
    status: int  # 0: the request raised instead of answering
    started: float
    ended: float
    retry_after: str | None = None
    says_unavailable: bool = False
    error: str = ""

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass
class Write:
    """A write Rebound acknowledged (2xx/3xx), and how many 503s it got before."""

    kind: str  # "attempt", "step" or "lesson"
    key: tuple[Any, ...]
    at: float  # when it was acknowledged
    repeats: int


class Unexpected(Exception):
    """A response a learner should never get, even during a restart."""


@dataclass
class Learner:
    """One launched browser going through the course: case steps, new attempts, lessons."""

    name: str
    browser: FlaskClient
    placement_id: int
    lessons: list[str]
    seed: int
    exchanges: list[Exchange] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    attempt_path: str | None = None
    refusals: int = 0  # the 503s the last request got before it was answered

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)

    def work(self, stop: threading.Event) -> None:
        for turn in itertools.count():
            if stop.is_set():
                return
            try:
                if turn % 3 == 2:
                    self.complete_lesson(self.lessons[(turn // 3) % len(self.lessons)])
                else:
                    self.answer_a_step()
            except Unexpected as error:
                self.failures.append(str(error))
                self.attempt_path = None  # start over from the case page, as a person would
            except Exception:
                self.failures.append(traceback.format_exc())
                return

    def read(self) -> None:
        """A moment on the page before submitting it: so a restart catches submissions too."""
        time.sleep(self.random.uniform(0, 2 * THINK_SECONDS))

    def answer_a_step(self) -> None:
        base = f"/p/{self.placement_id}/cases/{CASE}"
        if self.attempt_path is None:
            intro = self.send("GET", base, expect=200)
            self.read()
            started = self.send("POST", f"{base}/start", {"csrf_token": _token(intro)}, expect=303)
            self.attempt_path = started.headers["Location"]
            self.acknowledged("attempt", int(self.attempt_path.rsplit("/", 1)[1]))
        page = self.send("GET", self.attempt_path, expect=200)
        body = page.get_data(as_text=True)
        node, step = _field(body, "node"), _field(body, "step")
        choice = self.random.choice(re.findall(r'name="choice" value="([^"]+)"', body))
        self.read()
        form = {"csrf_token": _token(page), "node": node, "step": step, "choice": choice}
        answered = self.send("POST", f"{self.attempt_path}/answer", form, expect=303)
        # Positions count from 1 and this learner never steps back, so step n is stored at n + 1.
        self.acknowledged("step", int(self.attempt_path.rsplit("/", 1)[1]), int(step) + 1, node, choice)
        if "/debrief" in answered.headers["Location"]:
            self.attempt_path = None

    def complete_lesson(self, slug: str) -> None:
        path = f"/p/{self.placement_id}/lessons/{slug}"
        page = self.send("GET", path, expect=200)
        self.read()
        self.send("POST", f"{path}/complete", {"csrf_token": _token(page)}, expect=303)
        self.acknowledged("lesson", slug)

    def acknowledged(self, kind: str, *key: Any) -> None:
        self.writes.append(Write(kind, key, time.monotonic(), self.refusals))

    def send(self, method: str, path: str, data: dict[str, str] | None = None, *, expect: int) -> TestResponse:
        """One request, repeated unchanged while it gets 503, as a person told "try again" does."""
        give_up = time.monotonic() + 20
        self.refusals = 0
        while True:
            started = time.monotonic()
            try:
                response = self.browser.open(path, method=method, data=data)
            except Exception:
                self.exchanges.append(Exchange(self.name, f"{method} {path}", 0, started, time.monotonic(),
                                               error=traceback.format_exc()))
                raise Unexpected(f"{method} {path} raised:\n{self.exchanges[-1].error}") from None
            exchange = Exchange(self.name, f"{method} {path}", response.status_code, started, time.monotonic(),
                                retry_after=response.headers.get("Retry-After"))
            self.exchanges.append(exchange)
            if response.status_code == 503:
                exchange.says_unavailable = "can't reach its database" in html.unescape(response.get_data(as_text=True))
                if exchange.ended > give_up:
                    raise Unexpected(f"{method} {path} still answered 503 after 20 s")
                self.refusals += 1
                time.sleep(RETRY_PAUSE_SECONDS)
                continue
            if response.status_code != expect:
                raise Unexpected(f"{method} {path} answered {response.status_code}, not {expect}:\n"
                                 f"{response.get_data(as_text=True)[:2000]}")
            return response


def _token(page: TestResponse) -> str:
    return csrf_token_from(page.get_data(as_text=True))


def _field(body: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]+)"', body)
    assert match, f"no {name} field on the step page"
    return match.group(1)


def _apart(call: Callable[[], Any]) -> Any:
    """Run a request on a thread of its own, with its own app context and session, as a
    server does: the test's thread shares one session across requests (pytest-flask)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result(timeout=60)


@dataclass
class Restart:
    stopping: float = 0.0
    stopped: float = 0.0
    starting: float = 0.0
    started: float = 0.0


def test_a_postgresql_restart_under_load_answers_503_quickly_recovers_by_itself_and_loses_nothing(
    app: Flask, cluster: Cluster, launch_as: Callable[..., Any]
) -> None:
    launched = [launch_as(sub=f"learner-{n}", name=f"Learner {n}") for n in range(LEARNERS + 1)]
    placement_id = launched[0][1].id
    home = launched[0][0].get(f"/p/{placement_id}/").get_data(as_text=True)
    lessons = list(dict.fromkeys(re.findall(rf'href="/p/{placement_id}/lessons/([^"/]+)"', home)))
    assert len(lessons) == 9
    db.session.close()  # the test's own session holds no connection through the restart
    learners = [Learner(f"learner-{n}", browser, placement_id, lessons, seed=n)
                for n, (browser, _) in enumerate(launched[:LEARNERS])]

    # One more learner, held still: it opens a step and a lesson before the restart and
    # submits both while the database is down, to repeat them after.
    probe, _ = launched[LEARNERS]
    base = f"/p/{placement_id}/cases/{CASE}"
    started = _apart(lambda: probe.post(f"{base}/start", data={"csrf_token": _token(probe.get(base))}))
    probe_attempt = started.headers["Location"]
    step_page = _apart(lambda: probe.get(probe_attempt)).get_data(as_text=True)
    probe_answer = {"csrf_token": csrf_token_from(step_page), "node": _field(step_page, "node"),
                    "step": _field(step_page, "step"), "choice": re.findall(r'name="choice" value="([^"]+)"', step_page)[0]}
    lesson_page = _apart(lambda: probe.get(f"/p/{placement_id}/lessons/{lessons[-1]}")).get_data(as_text=True)
    probe_complete = {"csrf_token": csrf_token_from(lesson_page)}

    def probe_writes() -> list[TestResponse]:
        return [probe.post(f"{probe_attempt}/answer", data=probe_answer),
                probe.post(f"/p/{placement_id}/lessons/{lessons[-1]}/complete", data=probe_complete)]

    stop = threading.Event()
    threads = [threading.Thread(target=learner.work, args=(stop,), daemon=True) for learner in learners]
    load_began = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 15
        while not all(len(learner.writes) >= 3 for learner in learners) and time.monotonic() < deadline:
            time.sleep(0.05)
        restart = Restart(stopping=time.monotonic())
        cluster.stop("fast")
        restart.stopped = time.monotonic()
        refused_probe = _apart(probe_writes)
        time.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - restart.stopped)))
        restart.starting = time.monotonic()
        cluster.start()
        restart.started = time.monotonic()
        time.sleep(LOAD_AFTER_RESTART_SECONDS)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    load_ended = time.monotonic()
    assert not any(thread.is_alive() for thread in threads), "a learner never finished its last request"

    exchanges = sorted((e for learner in learners for e in learner.exchanges), key=lambda e: e.started)
    down = [e for e in exchanges if e.started >= restart.stopped and e.ended <= restart.starting]
    unavailable = [e for e in exchanges if e.status == 503]
    after = [e for e in exchanges if e.started >= restart.started]
    # From the moment the server was asked to start to each learner's first success.
    recovery = {learner.name: min(e.ended for e in learner.exchanges if e.started >= restart.starting
                                  and e.status in (200, 303)) - restart.starting for learner in learners}
    print(f"\n{len(exchanges)} requests in {load_ended - load_began:.1f} s; stop took "
          f"{restart.stopped - restart.stopping:.2f} s, start {restart.started - restart.starting:.2f} s; "
          f"{len(down)} while down, {len(unavailable)} answered 503 in "
          f"{min(e.seconds for e in unavailable) * 1000:.0f}-{max(e.seconds for e in unavailable) * 1000:.0f} ms "
          f"(median {statistics.median(e.seconds for e in unavailable) * 1000:.0f} ms); "
          f"{len(after)} after the restart, each learner's first success "
          f"{min(recovery.values()) * 1000:.0f}-{max(recovery.values()) * 1000:.0f} ms after it was asked to start; "
          f"{sum(w.repeats > 0 for learner in learners for w in learner.writes)} writes repeated after 503")

    # Never a 500, nor anything else unexpected: not during the stop, the downtime, or on
    # the pooled connections the restart left stale.
    failures = [f"{learner.name}: {failure}" for learner in learners for failure in learner.failures]
    assert not failures, "\n\n".join(failures)
    assert {e.status for e in exchanges} <= {200, 303, 503}

    # While the database is down every request is refused at once, saying so and when to retry.
    assert len(down) >= LEARNERS
    assert {e.status for e in down} == {503}
    assert all(e.retry_after == str(DATABASE_RETRY_AFTER_SECONDS) and e.says_unavailable for e in unavailable)
    assert max(e.seconds for e in unavailable) < QUICK_SECONDS
    assert [(r.status_code, r.headers.get("Retry-After")) for r in refused_probe] == [(503, "30")] * 2

    # Once the database is back, it is back for everyone at once, with no restart of Rebound
    # and on the same browser sessions: not one 503 more.
    assert all(e.status in (200, 303) for e in after), [(e.request, e.status) for e in after if e.status == 503]
    for learner in learners:
        assert any(w.at > restart.started for w in learner.writes), f"{learner.name} made no progress after"

    # What a 503 refused can simply be sent again, unchanged, and then it is saved: the
    # learners' own refused submissions (checked against the database below) and the probe's.
    assert any(w.repeats for learner in learners for w in learner.writes)
    assert [r.status_code for r in _apart(probe_writes)] == [303, 303]

    # Nothing acknowledged is lost, before or after the restart, and nothing is recorded
    # twice: the database holds exactly the acknowledged steps, attempts and lessons.
    engine = make_engine(app.config["DATABASE_URL"])
    with engine.connect() as connection:
        users = dict(connection.execute(select(User.sub, User.id)).all())
        for learner in learners:
            user_id = users[learner.name]
            acknowledged: dict[str, set[tuple[Any, ...]]] = {"attempt": set(), "step": set(), "lesson": set()}
            for write in learner.writes:
                acknowledged[write.kind].add(write.key)
            attempts = set(connection.execute(select(CaseAttempt.id).where(CaseAttempt.user_id == user_id)).all())
            steps = connection.execute(
                select(CaseStep.attempt_id, CaseStep.position, CaseStep.node_id, CaseStep.choice_id)
                .join(CaseAttempt).where(CaseAttempt.user_id == user_id, CaseStep.withdrawn.is_(False))
            ).all()
            completed = set(connection.execute(
                select(LessonProgress.lesson_slug).where(LessonProgress.user_id == user_id,
                                                         LessonProgress.completed_at.is_not(None))
            ).all())
            assert {tuple(a) for a in attempts} == acknowledged["attempt"], learner.name
            assert sorted(tuple(s) for s in steps) == sorted(acknowledged["step"]), learner.name
            assert {tuple(c) for c in completed} == acknowledged["lesson"], learner.name
        probe_id = users[f"learner-{LEARNERS}"]
        assert connection.execute(
            select(CaseStep.node_id).join(CaseAttempt).where(CaseAttempt.user_id == probe_id)
        ).scalars().all() == [probe_answer["node"]]
        assert connection.execute(
            select(LessonProgress.lesson_slug)
            .where(LessonProgress.user_id == probe_id, LessonProgress.completed_at.is_not(None))
        ).scalars().all() == [lessons[-1]]
    engine.dispose()

    # The learner sees the same: progress read on the browser session from before the restart.
    progress = _apart(lambda: learners[0].browser.get(f"/p/{placement_id}/progress.json"))
    assert progress.status_code == 200
    shown = {lesson["id"] for lesson in progress.get_json()["lessons"] if lesson["status"] == "completed"}
    assert shown == {w.key[0] for w in learners[0].writes if w.kind == "lesson"}


def test_after_a_restart_no_one_saw_the_first_requests_on_the_stale_pooled_connections_succeed(
    app: Flask, cluster: Cluster, launch_as: Callable[..., Any]
) -> None:
    """No request ran while the server was down, so nothing told the pool its connections had
    died: the check at each checkout has to (a closed socket reads as dead, course/database.py),
    or the first requests after would fail."""
    launched = [launch_as(sub=f"quiet-{n}", name=f"Quiet {n}") for n in range(5)]
    placement_id = launched[0][1].id
    lesson = f"/p/{placement_id}/lessons/recognise-why-mistakes-happen"
    db.session.close()
    with ThreadPoolExecutor(len(launched)) as pool:
        tokens = list(pool.map(lambda pair: _token(pair[0].get(lesson)), launched))
    engine = db.state(app).engine
    held = [engine.connect() for _ in launched]
    for connection in held:
        connection.execute(text("SELECT 1"))
        connection.close()
    assert engine.pool.checkedin() >= len(launched)  # type: ignore[attr-defined]

    cluster.stop("fast")
    cluster.start()

    ready = threading.Barrier(len(launched))

    def complete(pair: tuple[FlaskClient, Any], token: str) -> tuple[int, int]:
        browser = pair[0]
        ready.wait(timeout=10)
        done = browser.post(f"{lesson}/complete", data={"csrf_token": token})
        return done.status_code, browser.get(f"/p/{placement_id}/progress.json").get_json()["lessons_completed"]

    with ThreadPoolExecutor(len(launched)) as pool:
        results = list(pool.map(complete, launched, tokens))
    assert results == [(303, 1)] * len(launched)


def test_a_restart_after_a_page_is_made_but_before_its_request_ends_still_delivers_the_page(
    app: Flask, cluster: Cluster, launch_as: Callable[..., Any]
) -> None:
    """The moment the load above hits by chance, made certain: the server ends a request's
    connection after its last query, with its reading transaction still open, so closing the
    session can no longer roll it back. The page is made; the learner must still get it."""
    browser, placement = launch_as()
    base = f"/p/{placement.id}/cases/{CASE}"
    attempt = _apart(lambda: browser.post(f"{base}/start", data={"csrf_token": _token(browser.get(base))}))
    attempt_path = attempt.headers["Location"]
    db.session.close()
    pending = threading.Event()
    pending.set()

    def restart_once(sender: Flask, response: Any, **extra: Any) -> None:
        if pending.is_set() and request.path == attempt_path:
            pending.clear()
            cluster.stop("fast")
            cluster.start()

    request_finished.connect(restart_once, app)
    try:
        page = _apart(lambda: browser.get(attempt_path))
    finally:
        request_finished.disconnect(restart_once, app)
    assert not pending.is_set()
    assert page.status_code == 200 and 'name="choice"' in page.get_data(as_text=True)
    assert _apart(lambda: browser.get(attempt_path)).status_code == 200
