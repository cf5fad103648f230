"""HR export benchmark: time and peak memory of the CSV, XLSX and JSON exports on PostgreSQL,
beside PostgreSQL's own `COPY (SELECT ...) TO STDOUT` of the same rows, in the same run.

    python bench/export_bench.py [--rows 1000000 --rows 100000] [--postgres-url URL]

It creates a throwaway database next to `test` on the server (dropped at the end), migrates it,
and inserts completion rows with `generate_series`: learners × 10 placements, one completion
record each. Every export then runs in its own subprocess, so each peak is that export's alone:
the peak resident memory (Linux `VmHWM`, reset with `/proc/self/clear_refs` just before the
export starts, so imports and app start-up do not count) and its growth over the resident
size at that moment. Flat memory means the growth stays the same
when the rows grow tenfold.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
PLACEMENTS = 10
FORMATS = ("csv", "xlsx", "json")
DEFAULT_URL = os.environ.get("REBOUND_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")

# The same columns the export writes, for one completion record per (learner, placement).
COPY_QUERY = """
COPY (
  SELECT p.name, c.lms_context_id, c.title, pl.resource_link_id, pl.title, u.sub, u.name, u.email,
         cr.status, pl.settings->>'due_at', cr.score_percent, cr.case_attempts, cr.completed_at,
         cr.completed_at, cr.valid_until, 'UTC', cr.seconds_spent, cr.content_versions::text, cr.public_id
  FROM completion_records cr
  JOIN users u ON u.id = cr.user_id
  JOIN placements pl ON pl.id = cr.placement_id
  JOIN contexts c ON c.id = pl.context_id
  JOIN platforms p ON p.id = pl.platform_id
  ORDER BY u.id, pl.id
) TO STDOUT (FORMAT csv, HEADER)
"""


def _psycopg_url(url: str, database: str | None = None) -> Any:
    parsed = make_url(url).set(drivername="postgresql+psycopg")
    return parsed.set(database=database) if database else parsed


def create_database(admin_url: str) -> str:
    """A new, empty database on the server; returns its URL."""
    name = f"rebound_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(_psycopg_url(admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return _psycopg_url(admin_url, name).render_as_string(hide_password=False)


def drop_database(admin_url: str, url: str) -> None:
    name = make_url(url).database
    admin = create_engine(_psycopg_url(admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def populate(url: str, rows: int) -> float:
    """Migrate, then insert `rows` completion records (learners × placements); returns seconds."""
    from course import migrate
    from course.database import make_engine

    engine = make_engine(url)
    migrate.upgrade(engine)
    learners = rows // PLACEMENTS
    started = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(text("""
            INSERT INTO platforms (name, issuer, client_id, auth_login_url, auth_token_url, jwks_url, registration,
                                   role_overrides, frame_origins, active, created_at, updated_at)
            VALUES ('Bench LMS', 'https://bench.example', 'bench', 'https://bench.example/auth',
                    'https://bench.example/token', 'https://bench.example/jwks', 'static', '{}', '[]',
                    true, now(), now())
        """))
        connection.execute(
            text("INSERT INTO deployments (platform_id, deployment_id, created_at) VALUES (1, 'dep-1', now())")
        )
        connection.execute(text("""
            INSERT INTO contexts (platform_id, deployment_id, lms_context_id, title, created_at, updated_at)
            SELECT 1, 1, 'course-' || n, 'Social media at Acme, part ' || n, now(), now()
            FROM generate_series(1, :placements) AS n
        """), {"placements": PLACEMENTS})
        connection.execute(text("""
            INSERT INTO placements (platform_id, context_id, resource_link_id, title, target_kind, settings,
                                    created_at, updated_at)
            SELECT 1, n, 'link-' || n, 'Rebound ' || n, 'course', '{"due_at": "2026-12-31"}', now(), now()
            FROM generate_series(1, :placements) AS n
        """), {"placements": PLACEMENTS})
        connection.execute(text("""
            INSERT INTO users (platform_id, sub, name, email, created_at, updated_at)
            SELECT 1, 'learner-' || n, 'Renée Learner ' || n, 'learner' || n || '@example.com', now(), now()
            FROM generate_series(1, :learners) AS n
        """), {"learners": learners})
        connection.execute(text("""
            INSERT INTO completion_records (public_id, platform_id, user_id, placement_id, sequence, learner_sub,
                learner_name, learner_email, context_lms_id, context_title, resource_link_id, status, score_percent,
                case_attempts, seconds_spent, completed_at, valid_until, content_versions, created_at)
            SELECT md5(u.id || '-' || pl.id)::uuid::text, 1, u.id, pl.id, 1, u.sub, u.name, u.email,
                   'course-' || pl.id, 'Social media at Acme', pl.resource_link_id,
                   CASE WHEN u.id % 7 = 0 THEN 'failed' ELSE 'passed' END, 50 + (u.id % 50), 1 + (u.id % 3),
                   600 + (u.id % 900), timestamptz '2026-01-01 09:00+00' + (u.id % 300) * interval '1 day',
                   NULL, '{"lesson:own-apologise-well": 2, "case:airline-reply": 1}', now()
            FROM users u CROSS JOIN placements pl
        """))
        connection.execute(text("ANALYZE"))
    engine.dispose()
    return time.perf_counter() - started


def _peak_mb() -> float:
    """The process's peak resident memory (VmHWM) since it was last reset."""
    with open("/proc/self/status") as status:
        return int(re.search(r"VmHWM:\s+(\d+) kB", status.read())[1]) / 1024  # type: ignore[index]


def _reset_peak() -> float:
    """Start counting the peak afresh (Linux: clear_refs 5) and return the resident size now."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    return _peak_mb()


def measure(kind: str, url: str, output: str) -> dict[str, Any]:
    """Run one export in this process (a subprocess of the benchmark) and report its figures."""
    if kind == "copy":
        import psycopg

        before = _reset_peak()
        started = time.perf_counter()
        plain_url = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(plain_url) as conn, conn.cursor() as cursor, cursor.copy(COPY_QUERY) as copy, \
                open(output, "wb") as out:
            for data in copy:
                out.write(data)
        seconds = time.perf_counter() - started
        return {"kind": kind, "seconds": seconds, "peak_mb": _peak_mb(), "growth_mb": _peak_mb() - before,
                "bytes": os.path.getsize(output), "rows": None}

    from course.app import create_app
    from course.database import db, utcnow
    from course.exports.formats import export_formats
    from course.exports.rows import ExportFilters, iter_rows
    from course.exports.services import RowCounter, finish_export, start_export

    with tempfile.TemporaryDirectory() as data_dir:
        app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench-" + "x" * 40, "DATA_DIR": data_dir,
                          "LOG_LEVEL": "WARNING"})
        with app.app_context():
            session = db.session
            filters = ExportFilters(platform_id=None)
            run = start_export(session, filters=filters, format_name=kind, channel="cli", requested_by="bench",
                               now=utcnow())
            session.commit()
            before = _reset_peak()
            started = time.perf_counter()
            counter = RowCounter(iter_rows(session, filters, now=utcnow()))
            with open(output, "wb") as out:
                for chunk in export_formats(app)[kind].write(counter):
                    out.write(chunk)
            seconds = time.perf_counter() - started
            finish_export(session, run, row_count=counter.count, now=utcnow())
            session.commit()
    return {"kind": kind, "seconds": seconds, "peak_mb": _peak_mb(), "growth_mb": _peak_mb() - before,
            "bytes": os.path.getsize(output), "rows": counter.count}


def run_in_subprocess(kind: str, url: str, folder: str) -> dict[str, Any]:
    output = os.path.join(folder, f"export.{kind if kind != 'copy' else 'copy.csv'}")
    result = subprocess.run(  # noqa: S603 - this interpreter running this file
        [sys.executable, __file__, "--measure", kind, "--database-url", url, "--output", output],
        capture_output=True, text=True, check=False, cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("REBOUND_")}, "PYTHONPATH": str(ROOT)},
    )
    if result.returncode != 0:
        raise SystemExit(f"{kind} export failed:\n{result.stderr}")
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    os.unlink(output)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append", help="completion rows (repeatable)")
    parser.add_argument("--postgres-url", default=DEFAULT_URL, help="a server and database to connect to first")
    parser.add_argument("--measure", choices=(*FORMATS, "copy"), help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.database_url, args.output)))
        return
    sizes = args.rows or [100_000, 1_000_000]
    print(f"HR export benchmark on PostgreSQL ({make_url(DEFAULT_URL).host}); each export in its own process.")
    print(f"{'rows':>9} | {'export':<22} | {'seconds':>8} | {'rows/s':>9} | {'peak RSS MB':>11} | "
          f"{'growth MB':>9} | {'file MB':>8}")
    print("-" * 96)
    for size in sizes:
        url = create_database(args.postgres_url)
        try:
            inserted = populate(url, size)
            print(f"{size:>9} | {'(insert, generate_series)':<22} | {inserted:>8.1f} |")
            with tempfile.TemporaryDirectory() as folder:
                for kind in ("copy", *FORMATS):
                    figures = run_in_subprocess(kind, url, folder)
                    label = "COPY TO STDOUT (ref.)" if kind == "copy" else f"Rebound {kind.upper()}"
                    if figures["rows"] is not None and figures["rows"] != size:
                        raise SystemExit(f"{kind} wrote {figures['rows']} rows, expected {size}")
                    print(f"{size:>9} | {label:<22} | {figures['seconds']:>8.1f} | "
                          f"{size / figures['seconds']:>9,.0f} | {figures['peak_mb']:>11.1f} | "
                          f"{figures['growth_mb']:>9.1f} | {figures['bytes'] / 1e6:>8.1f}")
        finally:
            drop_database(args.postgres_url, url)
        print("-" * 96)


if __name__ == "__main__":
    main()
