"""PostgreSQL going away mid-use and coming back: Rebound answers 503 at once while it is
gone, never 500, and recovers by itself with nothing lost.

The outage is made by a TCP relay between Rebound and the real PostgreSQL server: cutting it
drops every open connection and refuses new ones, which is what a database restart looks
like from the application's side, without touching the server other tests use.
"""

from __future__ import annotations

import contextlib
import html
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from sqlalchemy.engine import make_url

from course import migrate
from course.accounts.services import create_account
from course.database import db, make_engine
from course.models import Deployment, Platform
from tests.conftest import DEFAULT_PASSWORD, Databases
from tests.helpers import sign_in


class Relay:
    """Forwards a loopback port to PostgreSQL until cut; restoring listens on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self.restore()

    def restore(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            if self._listener is not None:
                # shutdown wakes the thread blocked in accept(); close alone would not.
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            for connection in self._open:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if listener is not self._listener:  # accepted just as the relay was cut
                client.close()
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.close()


@pytest.fixture
def relayed_app(databases: Databases, app_factory: Callable[..., Flask]) -> Iterator[tuple[Flask, Relay]]:
    """An app on a throwaway PostgreSQL database reached through a relay the test can cut."""
    url = make_url(databases.new_url("postgresql"))
    relay = Relay((url.host or "127.0.0.1", url.port or 5432))
    relayed = url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
    engine = make_engine(relayed)
    migrate.upgrade(engine)
    engine.dispose()
    app = app_factory(DATABASE_URL=relayed)
    with app.app_context():
        platform = Platform(name="Acme LMS", issuer="https://lms.acme.example", client_id="c1",
                            auth_login_url="https://lms.acme.example/auth",
                            auth_token_url="https://lms.acme.example/token", jwks_url="https://lms.acme.example/jwks")
        platform.deployments.append(Deployment(deployment_id="d1"))
        db.session.add(platform)
        db.session.flush()
        create_account(db.session, username="hr.outage", role="hr", password=DEFAULT_PASSWORD, platform=platform)
        db.session.commit()
    yield app, relay
    relay.cut()


def test_a_database_outage_answers_503_quickly_and_recovers_by_itself(relayed_app: tuple[Flask, Relay]) -> None:
    app, relay = relayed_app
    browser = app.test_client()
    assert sign_in(browser, "hr.outage", DEFAULT_PASSWORD).status_code == 302
    assert browser.get("/account").status_code == 200

    relay.cut()
    statuses = []
    started = time.monotonic()
    for path in ("/account", "/account", "/hr/exports/", "/readyz"):
        response = browser.get(path)
        statuses.append(response.status_code)
        if path != "/readyz":
            assert "can't reach its database" in html.unescape(response.get_data(as_text=True))
            assert response.headers["Retry-After"] == "30"
    assert statuses == [503, 503, 503, 503]
    assert time.monotonic() - started < 10
    api = browser.get("/api/v1/completions", headers={"Authorization": "Bearer rbt_x"})
    assert api.status_code == 503 and api.get_json()["error"]["status"] == 503

    relay.restore()
    assert browser.get("/account").status_code == 200  # the same sign-in, nothing lost
    assert browser.get("/readyz").status_code == 200
