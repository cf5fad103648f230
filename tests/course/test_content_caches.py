"""What content reads keep: derived values per immutable version (bounded), and a page's
repeated reads within one transaction (forgotten on any write)."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from sqlalchemy import select, update

from course.content import VersionCache, remembered, version_cache
from course.database import db
from course.models import Platform


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
