"""Two app processes share nothing in memory: a login on one, the launch on the other.

Two `rebound serve` processes on one PostgreSQL database and one data directory (the same
secret key and settings, as two servers behind a load balancer have), behind a small
path-routing proxy: the launch POST goes to the second process, everything else to the first.
"""

from __future__ import annotations

import http.client
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OpenBrowser, Rebound, free_port, start_rebound, stop_rebound
from tests.browser.test_journeys import ACME, launch

pytestmark = pytest.mark.browser
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class Balancer(ThreadingHTTPServer):
    """Sends `POST /lti/launch` to one backend port and every other request to another."""

    daemon_threads = True

    def __init__(self, port: int, default: int, launch: int) -> None:
        self.default, self.launch = default, launch
        super().__init__(("127.0.0.1", port), _Forward)


class _Forward(BaseHTTPRequestHandler):
    server: Balancer

    def _forward(self) -> None:
        backend = self.server.launch if self.path.startswith("/lti/launch") else self.server.default
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        upstream = http.client.HTTPConnection("127.0.0.1", backend, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream.request(self.command, self.path, body=body or None, headers=headers)
        answer = upstream.getresponse()
        content = answer.read()
        self.send_response_only(answer.status, answer.reason)
        for name, value in answer.getheaders():
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)
        upstream.close()

    do_GET = do_POST = _forward

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the backends log every request."""


@pytest.fixture
def balanced(chromium: Any, tmp_path: Path, databases: Any) -> Iterator[tuple[int, Rebound, Rebound]]:
    """The public port, the process answering everything but launches, and the one that launches."""
    database_url = databases.new_url("postgresql")
    public = free_port()
    first = start_rebound("first-process", tmp_path, database_url, base_port=public, workers=1, with_worker=False)
    servers = [first]
    try:
        second = start_rebound(
            "second-process", tmp_path, database_url, base_port=public, workers=1, with_worker=False
        )
        servers.append(second)
        balancer = Balancer(public, default=first.port, launch=second.port)
        threading.Thread(target=balancer.serve_forever, daemon=True).start()
        yield public, first, second
        balancer.shutdown()
        balancer.server_close()
    finally:
        for server in reversed(servers):
            stop_rebound(server)


def _requests(server: Rebound) -> list[tuple[str, str, str]]:
    found = re.findall(r"rebound\.request: (GET|POST) (\S+) (\d{3})", server.log_text())
    return [r for r in found if r[1] != "/readyz"]


def test_a_login_on_one_process_is_launched_on_another_and_the_session_works_on_the_first(
    balanced: tuple[int, Rebound, Rebound], open_browser: OpenBrowser
) -> None:
    public, first, second = balanced
    address = Rebound(public, first.process, first.log)  # what the browser sees: the balancer
    page = open_browser().new_page()
    page.goto(address.lms)
    expect(page.get_by_role("button", name="Launch Rebound")).to_be_visible()
    frame = launch(page, address, person="lena", course=ACME)
    expect(frame.get_by_role("heading", level=1, name="Rebound: social media mistakes")).to_be_visible()
    frame.get_by_role("link", name="Start the course").click()
    expect(frame.get_by_role("heading", level=1, name="Why mistakes will happen")).to_be_visible()

    assert ("POST", "/lti/login", "302") in _requests(first)
    assert _requests(second) == [("POST", "/lti/launch", "303")]
    assert "/lti/launch" not in {path for _, path, _ in _requests(first)}
    # The session the second process started is honoured by the first, from the database.
    assert ("GET", "/p/1/lessons/recognise-why-mistakes-happen", "200") in _requests(first)
