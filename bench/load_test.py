"""Load test of a deadline day: many learners launching and working through lessons and
cases at once, against `rebound serve --workers N` in production mode on PostgreSQL.

The user count is stepped up (`--steps`): each step's new learners arrive at `--spawn-rate`
per second (each launching through the real LTI launch), settle for 20 s, and the full
count is then held and measured for `--step-seconds`. The run stops after the first step
whose p99 crosses `--p99-limit-ms` (or after the last step). The table gives each step's
sustained requests per second and p50/p95/p99 latency in its window; the answer is the
largest step that held p99 under the limit. Learners are locust users (bench/locust_learners.py) thinking
`--think` seconds between page views. Loopback only; bounded in users and time.

    python -m bench.load_test [--workers 4] [--steps 25,50,100,...,1200] [--step-seconds 45]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

from cryptography.hazmat.primitives import serialization

from bench import _common as b

DEFAULT_STEPS = "25,50,100,200,400,600,800,1000,1200"
SETTLE_SECONDS = 20.0


def schedule(
    steps: list[int], spawn_rate: float, hold: float, settle: float = SETTLE_SECONDS
) -> list[tuple[float, float]]:
    """For each step, the (start, end) of its measured window, in seconds from the start.

    A step first lets its new learners arrive (at the spawn rate) and settle, then holds
    its full count for `hold` seconds: only that part is measured, so each row is the
    steady load of that many active learners (arrival bursts are the launch benchmark's).
    """
    windows, clock, previous = [], 0.0, 0
    for users in steps:
        begin = clock + (users - previous) / spawn_rate + settle
        windows.append((begin, begin + hold))
        clock, previous = begin + hold, users
    return windows


def step_table(steps: list[dict[str, Any]], limit_ms: float) -> str:
    """One row per user-count step: requests/s, p50/p95/p99 (ms), failures, within the limit or not."""
    headers = ["learners", "requests/s", "p50 ms", "p95 ms", "p99 ms", "failures", f"p99 < {limit_ms:g} ms"]
    lines = [headers]
    for step in steps:
        rate = step["requests"] / step["seconds"] if step["seconds"] > 0 else 0.0
        lines.append([
            str(step["users"]), f"{rate:.1f}", f"{step['p50']:.0f}", f"{step['p95']:.0f}", f"{step['p99']:.0f}",
            str(step["failures"]), "yes" if step["p99"] < limit_ms else "no",
        ])
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    rendered = ["  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)) for line in lines]
    rendered.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(rendered)


def capacity(steps: list[dict[str, Any]], limit_ms: float) -> int | None:
    """The largest number of learners held with p99 under the limit (and no failures), in order."""
    held = None
    for step in steps:
        if step["p99"] >= limit_ms or step["failures"]:
            break
        held = step["users"]
    return held


def warm_up(server: b.Server, platform: b.FakePlatform, launches: int) -> None:
    """A few launches first, so the workers have loaded their templates and content, as a
    server that has been up all morning has (one learner each, then forgotten)."""
    from bench.launch_bench import LaunchingBrowser, launch_once

    base_url = f"https://{b.LOOPBACK}:{server.port}"
    for index in range(launches):
        browser = b.Browser(server.port)
        launch_once(LaunchingBrowser(browser, index, 1), platform, base_url, sub=f"warm-up-{index}")
        browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=4, help="Gunicorn workers for rebound serve (default 4)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (default 4)")
    parser.add_argument("--steps", default=DEFAULT_STEPS, help=f"learner counts, in order (default {DEFAULT_STEPS})")
    parser.add_argument("--step-seconds", type=float, default=45,
                        help="how long each step's full count is held and measured (default 45)")
    parser.add_argument("--spawn-rate", type=float, default=5, help="learners arriving per second (default 5)")
    parser.add_argument("--think", default="5-15", help="seconds between a learner's page views (default 5-15)")
    parser.add_argument("--p99-limit-ms", type=float, default=300, help="the latency limit (default 300)")
    args = parser.parse_args(argv)
    steps = [int(n) for n in args.steps.split(",")]
    if not steps or any(n < 1 for n in steps) or steps != sorted(steps) or steps[-1] > 5000:
        parser.error("--steps must be increasing learner counts between 1 and 5000")
    think_min, _, think_max = args.think.partition("-")
    print(f"Deadline-day load test: {b.machine_note().split(';')[0]}; rebound serve --workers {args.workers} "
          f"--threads {args.threads}; learners think {args.think} s between page views; steps {args.steps}, "
          f"{args.step_seconds:g} s each", flush=True)

    with b.workdir() as work, b.throwaway_database("rebound_load") as database:
        platform = b.fake_platform(work)
        key_file = work / "platform-key.pem"
        key_file.write_bytes(platform.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ))
        server = b.start_rebound(database, platform, work, workers=args.workers, threads=args.threads)
        warm_up(server, platform, args.workers * args.threads)
        results = work / "steps.json"
        env = {
            **os.environ,
            "BENCH_PLATFORM_KEY": str(key_file), "BENCH_PLATFORM_KID": platform.kid,
            "BENCH_BASE_URL": f"https://{b.LOOPBACK}:{server.port}", "BENCH_STEPS": args.steps,
            "BENCH_STEP_SECONDS": str(args.step_seconds), "BENCH_SPAWN_RATE": str(args.spawn_rate),
            "BENCH_THINK_MIN": think_min, "BENCH_THINK_MAX": think_max or think_min,
            "BENCH_P99_LIMIT_MS": str(args.p99_limit_ms), "BENCH_RESULTS": str(results),
        }
        bound = int(len(steps) * (args.step_seconds + SETTLE_SECONDS) + steps[-1] / args.spawn_rate + 120)
        try:
            locust = subprocess.run(  # noqa: S603
                [b.PYTHON, "-m", "locust", "-f", str(b.ROOT / "bench" / "locust_learners.py"), "--headless",
                 "--host", f"http://{b.LOOPBACK}:{server.port}", "--run-time", f"{bound}s", "--stop-timeout", "10",
                 "--loglevel", "WARNING", "--only-summary"],
                cwd=b.ROOT, env=env, capture_output=True, text=True, timeout=bound + 120, check=False,
            )
        finally:
            server.stop()
            platform.close()
        log = os.environ.get("BENCH_LOCUST_LOG")
        if log:
            with open(log, "w") as handle:
                handle.write(locust.stdout + locust.stderr)
        if not results.exists():
            print(locust.stdout[-3000:], locust.stderr[-3000:], file=sys.stderr)
            return 1
        measured = json.loads(results.read_text())["steps"]
        summary_lines = [line for line in locust.stdout.splitlines() if "Aggregated" in line or "Name" in line]
    print()
    print(step_table(measured, args.p99_limit_ms))
    held = capacity(measured, args.p99_limit_ms)
    print()
    if held is None:
        print(f"Not even the first step ({steps[0]} learners) held p99 under {args.p99_limit_ms:g} ms.")
    else:
        print(f"{held} concurrent active learners held p99 under {args.p99_limit_ms:g} ms "
              f"(target: 1,000 per 2-core machine).")
    for line in summary_lines[:2]:
        print("locust:", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
