"""What content reads keep: derived values per immutable version (bounded), a page's
repeated reads within one transaction (forgotten on any write), and each process's catalog
of what learners see (checked against the database by every transaction)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from flask import Flask
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from course import migrate
from course.content import (
    ParsedContent,
    VersionCache,
    effective_versions,
    import_items,
    published_version,
    remembered,
    version_cache,
)
from course.database import db, make_engine, utcnow
from course.models import Platform
from tests.conftest import Databases


def test_a_version_cache_makes_each_value_once_and_keeps_only_the_most_recently_used() -> None:
    cache: VersionCache[str] = VersionCache(maxsize=2)
    made: list[int] = []

    def maker(version_id: int) -> Callable[[], str]:
        return lambda: made.append(version_id) or f"html of {version_id}"  # type: ignore[func-returns-value]

    assert cache.get(1, maker(1)) == "html of 1"
    assert cache.get(1, maker(1)) == "html of 1"
    cache.get(2, maker(2))
    cache.get(1, maker(1))  # 1 is now the most recently used
    cache.get(3, maker(3))  # so 2 is the one to go
    assert len(cache) == 2
    cache.get(1, maker(1))
    cache.get(2, maker(2))
    assert made == [1, 2, 3, 2]


def test_each_app_keeps_its_own_named_caches(app: Flask) -> None:
    assert version_cache("lesson-html") is version_cache("lesson-html")
    assert version_cache("lesson-html") is not version_cache("case-parsed")
    assert app.extensions["rebound.version_caches"]["lesson-html"] is version_cache("lesson-html")


def test_a_transaction_reads_once_and_forgets_on_any_write(make_platform: Callable[..., Platform]) -> None:
    platform = make_platform(name="Before")
    loads: list[int] = []

    def names() -> list[str]:
        loads.append(1)
        return list(db.session.scalars(select(Platform.name).where(Platform.id == platform.id)))

    session = db.session
    assert remembered(session, "names", names) == ["Before"]
    assert remembered(session, "names", names) == ["Before"]
    assert len(loads) == 1

    session.execute(update(Platform).where(Platform.id == platform.id).values(name="After"))
    assert remembered(session, "names", names) == ["After"]  # an UPDATE it ran forgets
    assert len(loads) == 2

    platform.name = "Flushed"
    session.flush()
    assert remembered(session, "names", names) == ["Flushed"]  # so does a flush
    assert len(loads) == 3

    session.commit()
    assert remembered(session, "names", names) == ["Flushed"]  # a new transaction reads afresh
    assert len(loads) == 4


def test_what_a_caller_does_to_the_list_it_gets_never_changes_what_is_remembered(
    make_platform: Callable[..., Platform],
) -> None:
    make_platform()
    db.session.scalar(select(Platform.id))  # inside a transaction, as every request is
    first = remembered(db.session, "ids", lambda: [1, 2, 3])
    first.append(4)
    assert remembered(db.session, "ids", lambda: [9]) == [1, 2, 3]


# --- the published catalog -----------------------------------------------------------------


@pytest.fixture
def own_app(app_factory: Callable[..., Flask], backend: str, databases: Databases) -> Flask:
    """An app on its own database with real transactions: the shared test connection of `app`
    would let one session see what another has not committed."""
    url = databases.new_url(backend)
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return app_factory(DATABASE_URL=url)


def _publish(session: Session, slug: str, title: str, platform_id: int | None = None) -> None:
    lesson = ParsedContent(slug=slug, title=title, version=1, text=f"# {title}\n",
                           meta={"module": "recognise", "order": 9, "estimated_minutes": 3})
    import_items(session, "lesson", [lesson], platform_id=platform_id, by="trainer", now=utcnow())


@contextmanager
def _statements(app: Flask) -> Iterator[list[str]]:
    sent: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        sent.append(statement)

    engine = db.state(app).engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", note)


def _titles(app: Flask, platform_id: int | None = None) -> dict[str, str]:
    """What learners of a tenant see, read the way a request reads it (its own session)."""
    with app.app_context(), db.state(app).sessions() as session:
        return {v.item.slug: v.title for v in effective_versions(session, platform_id, "lesson")}


def _published(app: Flask, slug: str, title: str, platform_id: int | None = None) -> None:
    with db.state(app).sessions() as session:
        _publish(session, slug, title, platform_id)
        session.commit()


def test_a_request_reads_the_versions_once_per_process_then_only_a_stamp(own_app: Flask) -> None:
    _published(own_app, "first", "First")
    _titles(own_app)  # the first request of the process reads the versions
    with _statements(own_app) as sent:
        assert _titles(own_app) == {"first": "First"}
    queries = [statement for statement in sent if statement.lstrip().upper().startswith("SELECT")]
    assert len(queries) == 1 and "count(" in queries[0].lower()


def test_what_another_session_publishes_is_seen_by_the_next_request(own_app: Flask) -> None:
    _published(own_app, "first", "First")
    assert _titles(own_app) == {"first": "First"}
    _published(own_app, "second", "Second")  # a trainer, in this process or another
    assert _titles(own_app) == {"first": "First", "second": "Second"}
    with own_app.app_context(), db.state(own_app).sessions() as session:
        found = published_version(session, None, "lesson", "second")
    assert found is not None and found.title == "Second" and found.item.platform_id is None


def test_a_tenants_own_copy_wins_for_its_learners_only(app: Flask, make_platform: Callable[..., Platform]) -> None:
    acme, other = make_platform(name="Acme"), make_platform(name="Other")
    _publish(db.session, "first", "First")
    _publish(db.session, "first", "Acme's first", platform_id=acme.id)
    db.session.commit()
    assert _titles(app, acme.id) == {"first": "Acme's first"}
    assert _titles(app, other.id) == {"first": "First"}


def test_tenants_seeing_the_shipped_version_share_one_copy_of_it(
    app: Flask, make_platform: Callable[..., Platform]
) -> None:
    first, second = make_platform(name="First tenant"), make_platform(name="Second tenant")
    _publish(db.session, "shipped", "Shipped")
    db.session.commit()
    with app.app_context(), db.state(app).sessions() as session:
        (one,) = effective_versions(session, first.id, "lesson")
        (other,) = effective_versions(session, second.id, "lesson")
    assert one is other  # kept once per process, not once per tenant


def test_an_uncommitted_publish_is_seen_by_its_own_session_and_never_shared(own_app: Flask) -> None:
    _published(own_app, "first", "First")
    assert _titles(own_app) == {"first": "First"}
    with own_app.app_context(), db.state(own_app).sessions() as publishing:
        _publish(publishing, "draft-only", "Rolled back")
        assert {v.title for v in effective_versions(publishing, None, "lesson")} == {"First", "Rolled back"}
        if own_app.config["DATABASE_URL"].startswith("postgresql"):  # SQLite's writer blocks readers' locks
            assert _titles(own_app) == {"first": "First"}
        publishing.rollback()
    # A later publish may take the same row count and highest id (SQLite reuses rolled-back
    # ids): what learners see is that one, never the version rolled back.
    _published(own_app, "real", "Published")
    assert _titles(own_app) == {"first": "First", "real": "Published"}
