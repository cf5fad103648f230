"""Benchmark: answering a case step (persisted), per second and latency, beside the ceiling.

Each browser is a learner launched into Rebound through the real LTI launch; it opens a
case, starts an attempt and answers step after step: POST
/p/<placement>/cases/<case>/attempts/<id>/answer with the page's CSRF token, node, step
number and a choice, answered 303. Only that POST is timed. The browser keeps the
case's state itself (with Rebound's own engine), so it needs no page between answers;
when an attempt reaches an ending it starts the next one, and after ATTEMPTS_PER_LEARNER
attempts a new learner launches in its place, as employees take a case once or a few times,
not hundreds (neither is timed, but the server's work for them is part of the run, so the
rate is conservative).

The ceiling is a bare Flask app on the same Gunicorn settings answering the same POST
with a 303 and no work. Rebound runs as `rebound serve` in production mode on a
throwaway PostgreSQL database.

    python -m bench.case_step_bench [--rounds 3] [--seconds 10] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import random
import re
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import _common as b
from bench.launch_bench import LaunchingBrowser, launch_once
from quizzes import engine
from quizzes.case_format import Case
from quizzes.validator import load_case

CASE = "airline-angry-passenger"
_ATTEMPT = re.compile(r"/attempts/(\d+)")
_PLACEMENT = re.compile(r"/p/(\d+)/")
# A learner who kept playing one case for the whole run would end with hundreds of attempts,
# and each ending checks completion over all of them: a cost no real learner brings.
ATTEMPTS_PER_LEARNER = 3


def shipped_case(slug: str = CASE) -> Case:
    """The shipped case, as the server imported it on first start."""
    path = b.ROOT / "quizzes" / "cases" / f"{slug}.yaml"
    return load_case(Path(path).read_text(encoding="utf-8"), path.name)


@dataclass
class Learner:
    """A launched learner playing one case, attempt after attempt."""

    port: int
    platform: b.FakePlatform
    case: Case
    browser: b.Browser = field(init=False)
    placement: int = 0
    csrf: str = ""
    attempt: int = 0
    state: engine.State | None = None
    attempts: int = 0
    random: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self.browser = b.Browser(self.port)

    def prepare(self) -> None:
        """Launch as a new learner, open the case and start an attempt."""
        base_url = f"https://{b.LOOPBACK}:{self.port}"
        first_page = launch_once(LaunchingBrowser(self.browser, 0, 1), self.platform, base_url,
                                 sub="case-" + secrets.token_hex(6))
        match = _PLACEMENT.match(first_page)
        if match is None:
            raise RuntimeError(f"the launch landed on {first_page}, not a course home")
        self.placement = int(match.group(1))
        intro = b.expect(self.browser.request("GET", f"/p/{self.placement}/cases/{self.case.id}"), 200, "case intro")
        self.csrf = b.csrf_token(intro.text())
        self.start_attempt()

    def start_attempt(self) -> None:
        started = b.expect(self.browser.request(
            "POST", f"/p/{self.placement}/cases/{self.case.id}/start", {"csrf_token": self.csrf}
        ), 303, "start attempt")
        match = _ATTEMPT.search(started.location)
        if match is None:
            raise RuntimeError(f"start did not lead to an attempt: {started.location}")
        self.attempt = int(match.group(1))
        self.attempts += 1
        self.state = engine.start(self.case)

    def answer(self) -> float:
        """Answer the current step; return how long the POST took."""
        assert self.state is not None
        node = self.case.node(self.state.current_node)
        choice = self.random.choice(node.choices)
        form = {"csrf_token": self.csrf, "node": node.id, "step": str(len(self.state.path)), "choice": choice.id}
        path = f"/p/{self.placement}/cases/{self.case.id}/attempts/{self.attempt}/answer"
        started = time.perf_counter()
        response = self.browser.request("POST", path, form)
        elapsed = time.perf_counter() - started
        b.expect(response, 303, "answer")
        if not response.location.endswith(("/debrief", f"/attempts/{self.attempt}")):
            raise RuntimeError(f"the answer led to {response.location}")
        self.state = engine.choose(self.case, self.state, node.id, choice.id, step=len(self.state.path))
        if self.state.ended and self.attempts >= ATTEMPTS_PER_LEARNER:
            self.browser.close()
            self.browser, self.attempts = b.Browser(self.port), 0
            self.prepare()
        elif self.state.ended:
            self.start_attempt()
        return elapsed

    def close(self) -> None:
        self.browser.close()


@dataclass
class CeilingBrowser:
    """The same POST, to the bare endpoint."""

    port: int
    browser: b.Browser = field(init=False)

    def __post_init__(self) -> None:
        self.browser = b.Browser(self.port)

    def answer(self) -> None:
        form = {"csrf_token": "x" * 91, "node": "first-post", "step": "0", "choice": "a"}
        b.expect(self.browser.request("POST", f"/p/1/cases/{CASE}/attempts/1/answer", form), 303, "answer")

    def close(self) -> None:
        self.browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each target (default 3)")
    parser.add_argument("--seconds", type=float, default=10, help="seconds per target per round (default 10)")
    parser.add_argument("--warmup", type=float, default=3, help="warm-up seconds per target (default 3)")
    parser.add_argument("--concurrency", type=int, default=8, help="learners answering at once (default 8)")
    args = parser.parse_args(argv)
    print(f"Case step benchmark: {b.machine_note()}; {args.concurrency} concurrent learners, "
          f"{args.rounds} rounds × {args.seconds:g} s per target", flush=True)
    case = shipped_case()
    servers: list[b.Server] = []
    with b.workdir() as work, b.throwaway_database("rebound_bench") as database:
        platform = b.fake_platform(work)
        try:
            ceiling = b.start_wsgi("ceiling", "bench.ceiling:create_ceiling_app", work)
            servers.append(ceiling)
            rebound = b.start_rebound(database, platform, work)
            servers.append(rebound)
            targets: dict[str, Callable[[float], b.Measured]] = {
                "ceiling": lambda seconds: b.closed_loop(
                    CeilingBrowser.answer, lambda i: CeilingBrowser(ceiling.port),
                    concurrency=args.concurrency, seconds=seconds),
                "rebound": lambda seconds: b.closed_loop(
                    Learner.answer, lambda i: Learner(rebound.port, platform, case),
                    concurrency=args.concurrency, seconds=seconds),
            }
            summaries = b.interleaved(targets, rounds=args.rounds, seconds=args.seconds, warmup=args.warmup)
        finally:
            for server in servers:
                server.stop()
            platform.close()
    print()
    print(b.format_table("answers", summaries, ["ceiling"]))
    by_name = {s.name: s for s in summaries}
    measured = b.ratio(by_name["rebound"].per_second, by_name["ceiling"].per_second)
    verdict = "meets" if measured >= 0.5 else "misses"
    print(f"\nA Rebound case step runs at {measured:.2f}× the bare-endpoint ceiling ({verdict} the 0.5× target).")
    return 1 if any(s.count == 0 for s in summaries) else 0


if __name__ == "__main__":
    sys.exit(main())
