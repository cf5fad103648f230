"""Benchmark: the full LTI 1.3 launch, per second, beside a ceiling and a peer in the same run.

One launch is what a learner's browser does: POST /lti/login (302 to the platform), the
platform's id_token posted to /lti/launch (303), GET /lti/landing (303) and GET the
course home (200). The fake platform signs each id_token with its RSA key (in this
process, as the LMS would) and serves its JWKS over https on loopback.

Targets, all on the Gunicorn settings `rebound serve` uses:
  ceiling   a bare Flask app answering the same four requests with no work
  pylti1p3  a minimal tool on pylti1p3 2.0 doing the same launch (bench/peer_pylti1p3)
  rebound   `rebound serve` in production mode on a throwaway PostgreSQL database

    python -m bench.launch_bench [--rounds 3] [--seconds 10] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import itertools
import json
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from bench import _common as b


@dataclass
class LaunchingBrowser:
    """One browser that launches again and again, each time as one of a pool of learners."""

    browser: b.Browser
    index: int
    learners: int
    counter: itertools.count = field(default_factory=itertools.count)

    def close(self) -> None:
        self.browser.close()


def launch_once(state: LaunchingBrowser, platform: b.FakePlatform, base_url: str, sub: str | None = None) -> str:
    """One whole launch, as a new browser (a fresh cookie jar) of one learner of the pool;
    returns the path of the first page."""
    browser = state.browser
    browser.cookies.clear()
    sub = sub or f"learner-{state.index}-{next(state.counter) % state.learners}"
    target = base_url + "/lti/launch"
    login = b.expect(browser.request("POST", "/lti/login", {
        "iss": b.ISSUER, "login_hint": sub, "target_link_uri": target, "client_id": b.CLIENT_ID,
        "lti_deployment_id": b.DEPLOYMENT_ID,
    }), 302, "login")
    params = b.query_of(login.location)
    id_token = platform.sign(platform.claims(nonce=params["nonce"], sub=sub, target_link_uri=target))
    launched = b.expect(browser.request("POST", "/lti/launch", {"id_token": id_token, "state": params["state"]}),
                        303, "launch")
    landing = b.expect(browser.request("GET", b.path_of(launched.location)), 303, "landing")
    first_page = b.path_of(landing.location)
    home = b.expect(browser.request("GET", first_page), 200, "course home")
    if b"<h1" not in home.body:
        raise RuntimeError("the course home has no heading")
    return first_page


def target(
    server: b.Server, platform: b.FakePlatform, concurrency: int, learners: int
) -> Callable[[float], b.Measured]:
    base_url = f"https://{b.LOOPBACK}:{server.port}"

    def run(seconds: float) -> b.Measured:
        def operation(state: LaunchingBrowser) -> None:
            launch_once(state, platform, base_url)

        return b.closed_loop(
            operation,
            lambda i: LaunchingBrowser(b.Browser(server.port), i, learners),
            concurrency=concurrency, seconds=seconds,
        )

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each target (default 3)")
    parser.add_argument("--seconds", type=float, default=10, help="seconds per target per round (default 10)")
    parser.add_argument("--warmup", type=float, default=3, help="warm-up seconds per target (default 3)")
    parser.add_argument("--concurrency", type=int, default=8, help="browsers launching at once (default 8)")
    parser.add_argument("--learners", type=int, default=50, help="learners per browser, reused (default 50)")
    parser.add_argument("--only", choices=["ceiling", "pylti1p3", "rebound"], action="append",
                        help="run only these targets (repeatable; for profiling)")
    args = parser.parse_args(argv)
    wanted = args.only or ["ceiling", "pylti1p3", "rebound"]
    print(f"LTI launch benchmark: {b.machine_note()}; {args.concurrency} concurrent browsers, "
          f"{args.rounds} rounds × {args.seconds:g} s per target", flush=True)

    servers: list[b.Server] = []
    with b.workdir() as work, b.throwaway_database("rebound_bench") as rebound_db, \
            b.throwaway_database("peer_bench") as peer_db:
        platform = b.fake_platform(work)
        try:
            targets: dict[str, Callable[[float], b.Measured]] = {}
            if "ceiling" in wanted:
                servers.append(b.start_wsgi("ceiling", "bench.ceiling:create_ceiling_app", work))
                targets["ceiling"] = target(servers[-1], platform, args.concurrency, args.learners)
            if "pylti1p3" in wanted:
                from bench.peer_pylti1p3.app import create_schema

                peer_url = peer_db.replace("postgresql://", "postgresql+psycopg://", 1)
                create_schema(peer_url)
                port = b.free_port()
                config = {
                    "issuer": b.ISSUER, "client_id": b.CLIENT_ID, "deployment_id": b.DEPLOYMENT_ID,
                    "auth_login_url": platform.auth_login_url, "jwks_url": platform.jwks_url,
                    "database_url": peer_url, "base_url": f"https://{b.LOOPBACK}:{port}",
                    "secret_key": secrets.token_urlsafe(32),
                }
                servers.append(b.start_wsgi("pylti1p3", "bench.peer_pylti1p3.app:create_peer_app", work, {
                    "BENCH_PEER_CONFIG": json.dumps(config), "REQUESTS_CA_BUNDLE": platform.cert_file,
                }, port=port))
                targets["pylti1p3"] = target(servers[-1], platform, args.concurrency, args.learners)
            if "rebound" in wanted:
                servers.append(b.start_rebound(rebound_db, platform, work))
                targets["rebound"] = target(servers[-1], platform, args.concurrency, args.learners)
            summaries = b.interleaved(targets, rounds=args.rounds, seconds=args.seconds, warmup=args.warmup)
        finally:
            for server in servers:
                server.stop()
            platform.close()
    print()
    print(b.format_table("launches", summaries, [name for name in ("ceiling", "pylti1p3") if name in wanted]))
    by_name = {s.name: s for s in summaries}
    if "rebound" in by_name and "pylti1p3" in by_name:
        measured = b.ratio(by_name["rebound"].per_second, by_name["pylti1p3"].per_second)
        verdict = "meets" if measured >= 1.5 else "misses"
        print(f"\nRebound launches at {measured:.2f}× the pylti1p3 peer ({verdict} the 1.5× target).")
    return 1 if any(s.count == 0 for s in summaries) else 0


if __name__ == "__main__":
    sys.exit(main())
