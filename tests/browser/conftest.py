"""Real-browser fixtures: `rebound serve` in a subprocess, Debian's Chromium driven by Playwright.

The development LMS is served on `localhost` and the tool on `127.0.0.1`, so the tool's
cookies in the LMS frame are really third-party. Each browser gets a new, empty profile.
Without Chromium, Playwright or axe-core the tests are skipped with the reason; with
CI=true they fail instead, so a green CI run always means the browser journeys ran.
Fixtures are package-scoped: the browser and the server stop before the rest of the suite.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

HERE = Path(__file__).parent
REPO = HERE.parent.parent
CHROMIUM = Path("/usr/bin/chromium")
AXE_JS = HERE / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = REPO / "tests" / "artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
IN_CI = os.environ.get("CI", "").lower() == "true"
READY_SECONDS = 60
# What a quiet, reproducible headless Chromium needs: no sandbox (root in CI), no GPU, no
# background traffic to Google, nothing from a previous run.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# Chromium's own third-party-cookie blocking (what Chrome ships as "block third-party cookies").
BLOCK_THIRD_PARTY_COOKIES = "--test-third-party-cookie-phaseout"
# axe-core impacts the journeys must never show.
BLOCKING_IMPACTS = ("serious", "critical")


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the browser tests may not be skipped)")
    pytest.skip(reason)


@pytest.fixture(scope="package")
def chromium() -> Any:
    """Playwright's Chromium type, pointed at Debian's browser; skipped (failed in CI) without it."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing: `apt-get install chromium` (make test does it as root)")
    if not AXE_JS.exists():
        _unavailable(f"{AXE_JS} is missing: run `npm ci` in tests/browser (make test does it)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed: pip install -e '.[test]'")
    # A 2-core machine running other tests beside these: give pages time, not flakiness.
    expect.set_options(timeout=15_000)
    with sync_playwright() as playwright:
        yield playwright.chromium


# --- the server ----------------------------------------------------------------------------


@dataclass
class Rebound:
    """One `rebound serve` process: its addresses and its log."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def tool(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def lms(self) -> str:
        return f"http://localhost:{self.port}/dev-lms/"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def free_port() -> int:
    """A loopback port nothing listens on (yet)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _server_environment(data_dir: Path, database_url: str, base_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REBOUND_")}
    env.update(
        REBOUND_ENV="development",
        REBOUND_DATA_DIR=str(data_dir),
        REBOUND_DATABASE_URL=database_url,
        REBOUND_BASE_URL=base_url,
        REBOUND_LOG_FORMAT="text",
        PYTHONPATH=str(REPO),  # the code of this checkout, whatever the virtualenv points at
    )
    return env


def start_rebound(
    name: str, data_dir: Path, database_url: str, *, base_port: int | None = None, workers: int = 2,
    with_worker: bool = True,
) -> Rebound:
    """Start `rebound serve` on a free loopback port and wait for /readyz.

    `base_port` makes the process believe it is reached through another port, as an app
    process behind a load balancer is: the same public address, another process.
    """
    rebound = str(Path(sys.executable).parent / "rebound")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for _ in range(3):  # another program may take the free port between probe and bind
        port = free_port()
        log = ARTIFACTS / f"{name}.log"
        env = _server_environment(data_dir, database_url, f"http://127.0.0.1:{base_port or port}")
        with log.open("wb") as out:
            process = subprocess.Popen(
                [rebound, "serve", "--port", str(port), "--workers", str(workers), "--threads", "4",
                 *(["--with-worker"] if with_worker else [])],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        server = Rebound(port, process, log)
        if _wait_ready(server):
            return server
        stop_rebound(server)
    raise RuntimeError(f"rebound serve did not become ready; see {log}:\n{log.read_text()[-3000:]}")


def _wait_ready(server: Rebound) -> bool:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        with suppress(requests.RequestException):
            if requests.get(server.tool + "/readyz", timeout=2).status_code == 200:
                return True
        time.sleep(0.25)
    return False


def stop_rebound(server: Rebound) -> None:
    """Gunicorn stops gracefully on SIGTERM; a process group that lingers is killed."""
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=10)


@pytest.fixture(scope="package")
def rebound(tmp_path_factory: pytest.TempPathFactory, databases: Any) -> Iterator[Rebound]:
    """Rebound in development mode (so the development LMS exists) with its grade worker, on a
    new PostgreSQL database: several processes write at once here, as in production."""
    data_dir = tmp_path_factory.mktemp("rebound-browser")
    server = start_rebound("browser-server", data_dir, databases.new_url("postgresql"))
    yield server
    stop_rebound(server)


# --- browsers ------------------------------------------------------------------------------


OpenBrowser = Callable[..., Any]


@pytest.fixture
def open_browser(chromium: Any, tmp_path: Path) -> Iterator[OpenBrowser]:
    """Open Chromium with a new empty profile; `preferences` seeds the profile's settings."""
    contexts: list[Any] = []

    def open_(*, extra_args: Sequence[str] = (), preferences: dict[str, Any] | None = None) -> Any:
        profile = Path(tempfile.mkdtemp(dir=tmp_path, prefix="chromium-profile-"))
        if preferences:
            (profile / "Default").mkdir()
            (profile / "Default" / "Preferences").write_text(json.dumps(preferences))
        context = chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*CHROMIUM_ARGS, *extra_args],
            viewport={"width": 1280, "height": 1000},
            locale="en-GB",
        )
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context

    yield open_
    for context in contexts:
        with suppress(Exception):
            context.close()


def cookies_blocked_in_frames_of(lms_host: str, tool_host: str) -> dict[str, Any]:
    """Profile preferences that block every cookie of `tool_host` under `lms_host` pages.

    Chromium's third-party blocking still lets partitioned (CHIPS) cookies through, so this
    is the browser that keeps nothing at all in the frame, as some privacy settings do.
    """
    pattern = f"{tool_host},{lms_host}"
    return {"profile": {"content_settings": {"exceptions": {"cookies": {pattern: {"setting": 2}}}}}}


# --- screenshots and accessibility ----------------------------------------------------------


@dataclass
class AxeReport:
    """The pages axe-core checked in this run, and what it found on them."""

    pages: dict[str, list[str]] = field(default_factory=dict)

    def write(self) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        lines = [f"{label}\t{url}" for label, urls in sorted(self.pages.items()) for url in urls]
        (ARTIFACTS / "axe-pages.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="package")
def axe_report() -> Iterator[AxeReport]:
    report = AxeReport()
    yield report
    report.write()


@pytest.fixture(scope="package")
def axe_source() -> str:
    return AXE_JS.read_text()


@pytest.fixture
def check_accessibility(axe_report: AxeReport, axe_source: str) -> Callable[[Any, str], None]:
    """Run axe-core in a page or frame; fail on any serious or critical violation."""

    def check(target: Any, label: str) -> None:
        target.wait_for_load_state()
        if not target.evaluate("() => typeof window.axe !== 'undefined'"):
            # Evaluated through the DevTools protocol: the page's CSP refuses an inline
            # <script> (add_script_tag), and turning the CSP off would test a different page.
            target.evaluate(axe_source)
        results = target.evaluate(
            """async () => await axe.run(document, {
                   iframes: false,
                   resultTypes: ["violations"],
                   runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]}
               })"""
        )
        blocking = [v for v in results["violations"] if v["impact"] in BLOCKING_IMPACTS]
        assert not blocking, f"axe-core on {label} ({target.url}):\n" + "\n".join(
            f"- [{v['impact']}] {v['id']}: {v['help']} at "
            + "; ".join(" ".join(n["target"]) if isinstance(n["target"][0], str) else str(n["target"]) for n in v["nodes"][:5])
            for v in blocking
        )
        axe_report.pages.setdefault(label, []).append(target.url)

    return check


@pytest.fixture
def screenshot() -> Callable[..., Path]:
    """Save what the window shows to tests/artifacts/screenshots/<name>.png.

    Never full-page: that resizes the viewport, and Chromium can then hit-test the next click
    in the cross-site frame (another renderer process) against the old layout.
    """
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page: Any, name: str, at: Any = None, *, with_lms: bool = False) -> Path:
        """`at`: a locator in the tool's page to scroll to the top first; `with_lms`: keep the
        LMS page around the frame in view."""
        frame = page.query_selector("iframe[name=rebound-frame]")
        if frame is not None and not with_lms:
            frame.evaluate("e => e.scrollIntoView({block: 'start'})")
        if at is not None:
            at.evaluate("e => e.scrollIntoView({block: 'start'})")
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path))
        return path

    return take

