"""The locustfile behind bench/load_test.py: learners on a deadline day.

Each simulated learner is launched from the fake LMS through the real LTI launch (login,
signed id_token, landing, course home), then works through the course the way people
do: opens a lesson, reads, marks it complete, and after every few lessons plays a case
to an ending, one step per page; at the end of the course it launches again. Between
two page views it thinks for BENCH_THINK_MIN..BENCH_THINK_MAX seconds.

Run by bench/load_test.py, which starts Rebound and passes, in the environment: the
fake platform's private key (BENCH_PLATFORM_KEY, a PEM file) and key id, the user-count
steps and how long each is held, and where to write the per-step figures.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from locust import HttpUser, LoadTestShape, between, events, task
from locust.exception import RescheduleTask

from bench._common import CLIENT_ID, DEPLOYMENT_ID, ISSUER, LEARNER, csrf_token, percentile
from bench.load_test import schedule

KEY = load_pem_private_key(Path(os.environ["BENCH_PLATFORM_KEY"]).read_bytes(), password=None)
KID = os.environ["BENCH_PLATFORM_KID"]
STEPS = [int(n) for n in os.environ.get("BENCH_STEPS", "50,100").split(",")]
STEP_SECONDS = float(os.environ.get("BENCH_STEP_SECONDS", "45"))
SPAWN_RATE = float(os.environ.get("BENCH_SPAWN_RATE", "5"))
THINK = (float(os.environ.get("BENCH_THINK_MIN", "5")), float(os.environ.get("BENCH_THINK_MAX", "15")))
P99_LIMIT = float(os.environ.get("BENCH_P99_LIMIT_MS", "300"))
RESULTS = os.environ.get("BENCH_RESULTS", "")
BASE_URL = os.environ.get("BENCH_BASE_URL", "")
LESSON_LINK = re.compile(r'href="(/p/\d+/lessons/[^"]+)"')
CASE_LINK = re.compile(r'href="(/p/\d+/cases/[a-z0-9-]+)"')
ATTEMPT = re.compile(r"/attempts/(\d+)")
STEP_FORM = re.compile(r'name="node" value="([^"]+)">\s*<input type="hidden" name="step" value="(\d+)">')
CHOICE = re.compile(r'name="choice" value="([^"]+)"')


class Steps:
    """The measured windows of the user-count steps, and the latencies measured in each."""

    def __init__(self) -> None:
        self.windows = schedule(STEPS, SPAWN_RATE, STEP_SECONDS)
        self.origin: float | None = None
        self.latencies: dict[int, list[float]] = {}
        self.failures: dict[int, int] = {}
        self.stop = False

    def window_at(self, elapsed: float) -> int | None:
        for index, (begin, end) in enumerate(self.windows):
            if begin <= elapsed < end:
                return index
        return None

    def record(self, milliseconds: float, failed: bool) -> None:
        if self.origin is None:
            return
        index = self.window_at(time.monotonic() - self.origin)
        if index is None:
            return
        if failed:
            self.failures[index] = self.failures.get(index, 0) + 1
        self.latencies.setdefault(index, []).append(milliseconds)

    def p99(self, index: int) -> float:
        values = self.latencies.get(index, [])
        return percentile(values, 99) if values else float("inf")


STATE = Steps()


@events.request.add_listener
def _measure(response_time: float, exception: Any, **_: Any) -> None:
    STATE.record(response_time, exception is not None)


@events.quitting.add_listener
def _write_results(**_: Any) -> None:
    if not RESULTS:
        return
    rows = []
    for index, values in sorted(STATE.latencies.items()):
        begin, end = STATE.windows[index]
        rows.append({
            "users": STEPS[index], "requests": len(values), "seconds": end - begin,
            "failures": STATE.failures.get(index, 0),
            "p50": percentile(values, 50), "p95": percentile(values, 95), "p99": percentile(values, 99),
        })
    Path(RESULTS).write_text(json.dumps({"steps": rows, "think": THINK}))


class DeadlineDay(LoadTestShape):
    """Step the learner count up; stop after the step whose p99 crossed the limit, or the last."""

    def tick(self) -> tuple[int, float] | None:
        if STATE.origin is None:
            STATE.origin = time.monotonic()
        elapsed = time.monotonic() - STATE.origin
        for index, (_begin, end) in enumerate(STATE.windows):
            if elapsed < end:
                if index and STATE.p99(index - 1) > P99_LIMIT:
                    return None
                return STEPS[index], SPAWN_RATE
        return None


class Learner(HttpUser):
    """One employee working through the course before the deadline."""

    wait_time = between(*THINK)

    def on_start(self) -> None:
        self.client.headers["X-Forwarded-Proto"] = "https"
        self.sub = "learner-" + secrets.token_hex(6)
        self.random = random.Random()
        self.plan: list[str] = []
        self.page = ""
        self.launch()

    def _loopback_cookies(self) -> None:
        # The plain-http loopback hop stands for the TLS proxy, so Secure cookies go over it too
        # (requests copies the jar per request, so a cookie policy would not stick).
        for cookie in self.client.cookies:
            cookie.secure = False

    def _get(self, path: str, name: str) -> Any:
        self._loopback_cookies()
        return self.client.get(path, name=name, allow_redirects=False)

    def _form_page(self, path: str, name: str, *, form_required: bool = True) -> str:
        """A page the learner will submit a form of: anything but a 200 with a form is a failure
        of that request (counted in the table), not a silent error of the learner's script.
        A lesson already completed (a learner's second round) has no form, and needs none."""
        self._loopback_cookies()
        with self.client.get(path, name=name, allow_redirects=False, catch_response=True) as response:
            if response.status_code == 200 and ('name="csrf_token"' in response.text or not form_required):
                return str(response.text)
            where = response.headers.get("Location", "")
            response.failure(f"HTTP {response.status_code} without a form{' → ' + where if where else ''}")
            raise RescheduleTask()

    def _post(self, path: str, data: dict[str, str], name: str) -> Any:
        self._loopback_cookies()
        return self.client.post(path, data=data, name=name, allow_redirects=False)

    def launch(self) -> None:
        """The LTI launch, as the LMS and the browser do it."""
        target = (BASE_URL or self.host) + "/lti/launch"
        login = self._post("/lti/login", {
            "iss": ISSUER, "login_hint": self.sub, "target_link_uri": target, "client_id": CLIENT_ID,
            "lti_deployment_id": DEPLOYMENT_ID,
        }, "/lti/login")
        params = {k: v[0] for k, v in parse_qs(urlsplit(login.headers["Location"]).query).items()}
        now = int(time.time())
        claim = "https://purl.imsglobal.org/spec/lti/claim/"
        id_token = jwt.encode({
            "iss": ISSUER, "aud": CLIENT_ID, "sub": self.sub, "iat": now, "exp": now + 300, "nonce": params["nonce"],
            "name": f"Learner {self.sub}", "email": f"{self.sub}@example.com",
            claim + "version": "1.3.0", claim + "message_type": "LtiResourceLinkRequest",
            claim + "deployment_id": DEPLOYMENT_ID, claim + "target_link_uri": target,
            claim + "resource_link": {"id": "deadline-day", "title": "Rebound"},
            claim + "roles": [LEARNER], claim + "context": {"id": "acme-compliance", "title": "Social media at Acme"},
        }, KEY, algorithm="RS256", headers={"kid": KID})  # type: ignore[arg-type]
        launched = self._post("/lti/launch", {"id_token": id_token, "state": params["state"]}, "/lti/launch")
        landing = self._get(launched.headers["Location"], "/lti/landing")
        self.home = landing.headers["Location"]
        page = self._get(self.home, "/p/[id]/ (course home)").text
        lessons = list(dict.fromkeys(LESSON_LINK.findall(page)))
        cases = list(dict.fromkeys(CASE_LINK.findall(page)))
        # Three lessons, then a case, module by module.
        self.plan = []
        for start in range(0, len(lessons), 3):
            self.plan += [("lesson", path) for path in lessons[start:start + 3]]
            if cases:
                self.plan.append(("case", cases.pop(0)))
        self.plan += [("case", path) for path in cases]
        self.case_page = ""

    @task
    def next_page(self) -> None:
        """One page view: the next thing on this learner's plan."""
        if self.case_page:
            self.answer()
            return
        if not self.plan:
            self.launch()
            return
        kind, path = self.plan.pop(0)
        if kind == "lesson":
            page = self._form_page(path, "/p/[id]/lessons/[slug]", form_required=False)
            # Reading takes a while; then the learner marks it complete (the 303 leads on).
            time.sleep(self.random.uniform(*THINK))
            if 'name="csrf_token"' in page:
                self._post(path + "/complete", {"csrf_token": csrf_token(page)}, "/p/[id]/lessons/[slug]/complete")
        else:
            intro = self._form_page(path, "/p/[id]/cases/[slug] (intro)")
            started = self._post(path + "/start", {"csrf_token": csrf_token(intro)}, "/p/[id]/cases/[slug]/start")
            self.case_page, self.case_html = started.headers["Location"], ""  # if the page fails: moves on
            self.case_html = self._form_page(self.case_page, "/p/[id]/cases/[slug]/attempts/[id]")

    def answer(self) -> None:
        form = STEP_FORM.search(self.case_html)
        choices = CHOICE.findall(self.case_html)
        if form is None or not choices:
            self.case_page = ""
            return
        answered = self._post(self.case_page + "/answer", {
            "csrf_token": csrf_token(self.case_html), "node": form.group(1), "step": form.group(2),
            "choice": self.random.choice(choices),
        }, "/p/[id]/cases/[slug]/attempts/[id]/answer")
        following = answered.headers.get("Location", "")
        if following.endswith("/debrief"):
            self._get(following, "/p/[id]/cases/[slug]/attempts/[id]/debrief")
            self.case_page = ""
        else:
            self.case_html = ""
            self.case_html = self._form_page(following or self.case_page, "/p/[id]/cases/[slug]/attempts/[id]")
