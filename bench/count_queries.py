"""How many SQL statements each request of a launch, a lesson page and a case step sends to PostgreSQL.

On this machine the launch and the case step are bound by database round trips, not by
crypto or templates (see the README's Benchmarks section), so the statement count per
request is the figure to watch when changing those paths. Runs Rebound in production
mode in this process (Flask's test client, no timing) on a throwaway database; the first
launch and the first answer warm caches, the second ones are counted.

    python -m bench.count_queries [--show]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event

from bench import _common as b


@contextmanager
def counting(engine: object) -> Iterator[list[str]]:
    """Collect the first line of every statement the engine sends while the block runs."""
    statements: list[str] = []

    def remember(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(" ".join(statement.split())[:100])

    event.listen(engine, "before_cursor_execute", remember)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", remember)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--show", action="store_true", help="print the statements too")
    args = parser.parse_args(argv)
    from bench.case_step_bench import shipped_case
    from quizzes import engine as case_engine

    with b.workdir() as work, b.throwaway_database("rebound_count") as url:
        platform = b.fake_platform(work)
        port = b.free_port()
        env = b.rebound_env(url, port, platform, work / "data")
        b.run_rebound_cli(env, "db", "upgrade")
        b.run_rebound_cli(
            env, "platforms", "add", "--name", "Bench LMS", "--issuer", b.ISSUER, "--client-id", b.CLIENT_ID,
            "--auth-login-url", platform.auth_login_url, "--auth-token-url", platform.jwks_url,
            "--jwks-url", platform.jwks_url, "--deployment-id", b.DEPLOYMENT_ID,
        )
        os.environ.update({**env, "REBOUND_LOG_LEVEL": "WARNING"})
        from course.app import create_app
        from course.commands import prepare_content
        from course.database import db

        app = create_app()
        with app.app_context():
            prepare_content()
        engine = db.state(app).engine
        headers = {"X-Forwarded-Proto": "https", "Host": f"{b.LOOPBACK}:{port}"}
        target = f"https://{b.LOOPBACK}:{port}/lti/launch"
        rows: list[tuple[str, int, list[str]]] = []

        def step(label: str, count: bool, method: str, path: str, data: dict[str, str] | None = None) -> object:
            with counting(engine) as statements:
                response = client.open(path, method=method, data=data, headers=headers)
            if count:
                rows.append((f"{label} ({response.status_code})", len(statements), statements))
            return response

        for count in (False, True):
            client = app.test_client()
            login = step("POST /lti/login", count, "POST", "/lti/login", {
                "iss": b.ISSUER, "login_hint": "learner", "target_link_uri": target, "client_id": b.CLIENT_ID,
                "lti_deployment_id": b.DEPLOYMENT_ID,
            })
            params = b.query_of(login.headers["Location"])  # type: ignore[attr-defined]
            id_token = platform.sign(platform.claims(nonce=params["nonce"], sub="learner", target_link_uri=target))
            launched = step("POST /lti/launch", count, "POST", "/lti/launch",
                            {"id_token": id_token, "state": params["state"]})
            landing = step("GET /lti/landing", count, "GET", launched.headers["Location"])  # type: ignore[attr-defined]
            home = landing.headers["Location"]  # type: ignore[attr-defined]
            step("GET course home", count, "GET", home)
        placement = int(re.search(r"/p/(\d+)/", home).group(1))  # type: ignore[union-attr]
        lesson = re.search(r'href="(/p/\d+/lessons/[^"/]+)"', client.get(home, headers=headers).get_data(as_text=True))
        for count in (False, True):
            step("GET lesson page", count, "GET", lesson.group(1))  # type: ignore[union-attr]
        case = shipped_case()
        intro = client.get(f"/p/{placement}/cases/{case.id}", headers=headers).get_data(as_text=True)
        csrf = b.csrf_token(intro)
        started = client.post(f"/p/{placement}/cases/{case.id}/start", data={"csrf_token": csrf}, headers=headers)
        attempt = started.headers["Location"]
        state = case_engine.start(case)
        for count in (False, True):
            node = case.node(state.current_node)
            choice = node.choices[0]
            step("POST case answer", count, "POST", attempt + "/answer", {
                "csrf_token": csrf, "node": node.id, "step": str(len(state.path)), "choice": choice.id,
            })
            state = case_engine.choose(case, state, node.id, choice.id, step=len(state.path))
        engine.dispose()
        platform.close()

    width = max(len(label) for label, _, _ in rows)
    print(f"{'request'.ljust(width)}  statements")
    for label, number, statements in rows:
        print(f"{label.ljust(width)}  {number:>10}")
        if args.show:
            for statement in statements:
                print("    " + statement)
    launch_total = sum(number for label, number, _ in rows if label.startswith(("POST /lti", "GET /lti", "GET course")))
    print(f"{'whole launch'.ljust(width)}  {launch_total:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
