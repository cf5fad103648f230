"""SQLite, the embedded default, with several writers (Gunicorn workers and the grade worker):
a transaction that reads before it writes waits its turn instead of failing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from course.database import WRITE_LOCK_OPTION, make_engine


def test_a_session_that_reads_then_writes_waits_for_another_writer_instead_of_failing(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'locking.sqlite3'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE marks (who TEXT)"))
    sessions = sessionmaker(engine.execution_options(**{WRITE_LOCK_OPTION: True}))
    errors: list[BaseException] = []
    first_has_read = threading.Event()

    def worker() -> None:  # the grade worker writing while a request is between its read and write
        first_has_read.wait(5)
        try:
            with sessions() as session, session.begin():
                session.execute(text("INSERT INTO marks VALUES ('worker')"))
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=worker)
    thread.start()
    with sessions() as session, session.begin():
        session.execute(text("SELECT count(*) FROM marks")).scalar_one()
        first_has_read.set()
        time.sleep(0.3)  # give the worker every chance to write in between
        session.execute(text("INSERT INTO marks VALUES ('request')"))
    thread.join(15)

    assert errors == []
    with engine.connect() as connection:
        assert sorted(connection.execute(text("SELECT who FROM marks")).scalars()) == ["request", "worker"]
    engine.dispose()


def test_plain_reads_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    """Health checks read without the write lock, so /readyz answers while a long write runs."""
    engine = make_engine(f"sqlite:///{tmp_path / 'reads.sqlite3'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE marks (who TEXT)"))
    sessions = sessionmaker(engine.execution_options(**{WRITE_LOCK_OPTION: True}))
    with sessions() as session, session.begin():
        session.execute(text("INSERT INTO marks VALUES ('writer')"))
        started = time.monotonic()
        with engine.connect() as reader:
            assert reader.execute(text("SELECT count(*) FROM marks")).scalar_one() == 0
        assert time.monotonic() - started < 1
    engine.dispose()
