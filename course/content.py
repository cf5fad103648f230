"""Versioned content (lessons and cases): the shipped library, each tenant's own copies,
drafts that refuse stale saves, immutable published versions, import and export.

The kinds of content are plugged in by their packages (`lessons`, `quizzes`) through
`ContentKind`; this module knows nothing of Markdown or YAML.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from flask import Flask, current_app, has_app_context
from sqlalchemy import event, func, or_, select, update
from sqlalchemy.orm import ORMExecuteState, Session, contains_eager

from course.database import flushed_any
from course.models import ContentDraft, ContentItem, ContentVersion


@dataclass(frozen=True)
class ParsedContent:
    """One lesson or case read from its text, already validated by its kind."""

    slug: str
    title: str
    version: int
    text: str
    meta: dict[str, Any] = field(default_factory=dict)


class ContentKind(Protocol):
    """What a package provides so its content can be stored, versioned and exchanged."""

    name: str
    label: str
    folder: str  # its folder in an import/export directory

    def parse(self, text: str, filename: str) -> tuple[ParsedContent | None, list[str]]:
        """Validate one text; problems are `file:line: message` strings."""
        ...

    def read_directory(self, path: Path) -> tuple[list[ParsedContent], list[str]]:
        """Read every item of this kind under `path` (its own layout), with all problems."""
        ...

    def relative_path(self, item: ParsedContent) -> str:
        """Where `export` writes an item, relative to the export directory."""
        ...

    def with_version(self, text: str, version: int) -> str:
        """The same text with its declared version set to `version`."""
        ...

    def extra_files(self) -> dict[str, str]:
        """Files this kind exports besides its items (e.g. the module list)."""
        ...

    def shipped_directory(self) -> Path:
        """Where the shipped default of this kind lives."""
        ...


class ContentError(ValueError):
    """A content operation was refused; the message says why and what to do."""


class StaleDraft(ContentError):
    """Someone saved the draft since this editor loaded it; nothing was overwritten."""

    def __init__(self, draft: ContentDraft) -> None:
        super().__init__(
            f"Someone else saved this draft (revision {draft.revision}, by {draft.updated_by or 'someone'}) "
            "after you opened it. Your text is kept below; copy what you need, reload, and save again."
        )
        self.draft = draft


_MEMO = "rebound.transaction_memo"


def content_kinds(app: Flask | None = None) -> dict[str, ContentKind]:
    """The registry of content kinds, on the app (never a module global)."""
    return (app or current_app).extensions.setdefault("rebound.content_kinds", {})  # type: ignore[no-any-return]


T = TypeVar("T")


class VersionCache(Generic[T]):
    """A bounded least-recently-used map from a content version id to what was derived from it.

    Published versions never change, so what is parsed or rendered from one can be kept by its
    id; each process keeps its own, and none needs telling when another publishes.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[int, T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, version_id: int, make: Callable[[], T]) -> T:
        """The value kept for a version, made (outside the lock) and kept when missing."""
        with self._lock:
            if version_id in self._items:
                self._items.move_to_end(version_id)
                return self._items[version_id]
        value = make()
        with self._lock:
            self._items[version_id] = value
            self._items.move_to_end(version_id)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)


def version_cache(name: str, maxsize: int = 256) -> VersionCache[Any]:
    """The app's cache `name` (on `app.extensions`); outside an app, a fresh one that keeps nothing for later."""
    if not has_app_context():
        return VersionCache(maxsize)
    caches = current_app.extensions.setdefault("rebound.version_caches", {})
    return caches.setdefault(name, VersionCache(maxsize))  # type: ignore[no-any-return]


def checksum(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _item(session: Session, platform_id: int | None, kind: str, slug: str) -> ContentItem | None:
    owner = ContentItem.platform_id.is_(None) if platform_id is None else ContentItem.platform_id == platform_id
    return session.scalar(select(ContentItem).where(owner, ContentItem.kind == kind, ContentItem.slug == slug))


def _latest(session: Session, item: ContentItem | None) -> ContentVersion | None:
    if item is None:
        return None
    return session.scalar(
        select(ContentVersion).where(ContentVersion.item_id == item.id).order_by(ContentVersion.number.desc()).limit(1)
    )


def effective_version(session: Session, platform_id: int | None, kind: str, slug: str) -> ContentVersion | None:
    """What learners of a tenant see: its own latest published version, else the shipped one."""
    owner = ContentItem.platform_id.is_(None)
    if platform_id is not None:
        owner = or_(owner, ContentItem.platform_id == platform_id)
    # One round trip: the tenant's own item sorts first (NULL platform last), then its newest version.
    return session.scalar(
        select(ContentVersion)
        .join(ContentVersion.item)
        .options(contains_eager(ContentVersion.item))
        .where(ContentItem.kind == kind, ContentItem.slug == slug, owner)
        .order_by(ContentItem.platform_id.is_(None), ContentVersion.number.desc())
        .limit(1)
    )


def remembered(session: Session, key: Hashable, load: Callable[[], list[T]]) -> list[T]:
    """What `load` reads, read once per transaction: a page that asks twice (the course home's
    outline, then its completion panel) makes one round trip. Any write through the session
    (a flush, or an INSERT/UPDATE/DELETE it executes) forgets everything remembered."""
    memo = session.info.get(_MEMO)
    transaction = session.get_transaction()
    if memo is not None and transaction is not None and memo[0] is transaction and key in memo[1]:
        return list(memo[1][key])
    rows = load()
    transaction = session.get_transaction()
    if transaction is None:
        return rows
    if memo is None or memo[0] is not transaction:
        if not event.contains(session, "after_flush", _forget):
            event.listen(session, "after_flush", _forget)
            event.listen(session, "do_orm_execute", _forget_on_write)
        memo = session.info[_MEMO] = (transaction, {})
    memo[1][key] = rows
    return list(rows)


def _forget(session: Session, *_: object) -> None:
    session.info.pop(_MEMO, None)


def _forget_on_write(state: ORMExecuteState) -> None:
    if not state.is_select:
        state.session.info.pop(_MEMO, None)


@dataclass(frozen=True)
class PublishedItem:
    id: int
    platform_id: int | None  # None: the shipped library
    kind: str
    slug: str


@dataclass(frozen=True)
class PublishedVersion:
    """A published version as learners' pages use it: plain, immutable, shared across requests."""

    id: int
    item_id: int
    number: int
    title: str
    source: str
    meta: dict[str, Any]
    published_at: datetime
    published_by: str | None
    item: PublishedItem

    @classmethod
    def of(cls, version: ContentVersion) -> PublishedVersion:
        """The same version, from its database row (an attempt on an older version)."""
        item = version.item
        return cls(
            id=version.id, item_id=version.item_id, number=version.number, title=version.title,
            source=version.source, meta=dict(version.meta or {}), published_at=version.published_at,
            published_by=version.published_by, item=PublishedItem(item.id, item.platform_id, item.kind, item.slug),
        )


def effective_versions(session: Session, platform_id: int | None, kind: str) -> list[PublishedVersion]:
    """The version learners see of every item of a kind, tenant copies winning."""
    return list(_catalog().versions(session, platform_id, kind))


def published_version(session: Session, platform_id: int | None, kind: str, slug: str) -> PublishedVersion | None:
    """The version of one item a tenant's learners see now, or None."""
    return next((v for v in _catalog().versions(session, platform_id, kind) if v.item.slug == slug), None)


class PublishedCatalog:
    """Every tenant's effective versions, kept per process and checked against the database.

    Learner pages ask for them on every request (the course home, each lesson and case page,
    each completion check); reading and mapping them was a tenth of a loaded worker's time
    (py-spy under bench/load_test.py). Versions are only ever added (published) or deleted
    with their tenant, so the number of version rows and the highest id together change
    whenever what learners see can change: each transaction reads that stamp (one small
    query, before the versions, so a list is never labelled newer than what it holds) and
    uses the kept lists while it matches. A session that wrote content itself reads its own
    uncommitted view and keeps it to itself.
    """

    def __init__(self) -> None:
        self._stamp: tuple[int, int] | None = None
        self._lists: dict[tuple[int | None, str], tuple[PublishedVersion, ...]] = {}
        # One copy of each version, whichever tenants' lists hold it (most hold the shipped ones).
        self._by_id: dict[int, PublishedVersion] = {}
        self._lock = threading.Lock()

    def versions(self, session: Session, platform_id: int | None, kind: str) -> tuple[PublishedVersion, ...]:
        if session.info.get(_CONTENT_WRITTEN):
            return tuple(remembered(session, ("effective_versions", platform_id, kind),
                                    lambda: _read_effective_versions(session, platform_id, kind)))
        stamp = _stamp(session)
        key = (platform_id, kind)
        with self._lock:
            if self._stamp == stamp and key in self._lists:
                return self._lists[key]
        read = _read_effective_versions(session, platform_id, kind)
        with self._lock:
            if self._stamp != stamp:
                self._stamp, self._lists, self._by_id = stamp, {}, {}
            versions = tuple(self._by_id.setdefault(v.id, v) for v in read)
            self._lists[key] = versions
        return versions


_CONTENT_WRITTEN = "rebound.content_written"


def _catalog() -> PublishedCatalog:
    if not has_app_context():
        return PublishedCatalog()
    return current_app.extensions.setdefault("rebound.published_catalog", PublishedCatalog())  # type: ignore[no-any-return]


def _stamp(session: Session) -> tuple[int, int]:
    def read() -> list[tuple[int, int]]:
        count, highest = session.execute(select(func.count(), func.max(ContentVersion.id))).one()
        return [(int(count), int(highest or 0))]

    return remembered(session, ("content_stamp",), read)[0]


@event.listens_for(Session, "after_flush")
def _note_content_writes(session: Session, flush_context: object) -> None:
    if flushed_any(session, ContentItem, ContentVersion):
        session.info[_CONTENT_WRITTEN] = True


def _read_effective_versions(session: Session, platform_id: int | None, kind: str) -> list[PublishedVersion]:
    latest = (
        select(ContentVersion.item_id, func.max(ContentVersion.number).label("number"))
        .group_by(ContentVersion.item_id)
        .subquery()
    )
    owner = ContentItem.platform_id.is_(None)
    if platform_id is not None:
        owner = or_(owner, ContentItem.platform_id == platform_id)
    rows = session.execute(
        select(ContentVersion.id, ContentVersion.item_id, ContentVersion.number, ContentVersion.title,
               ContentVersion.source, ContentVersion.meta, ContentVersion.published_at, ContentVersion.published_by,
               ContentItem.platform_id, ContentItem.kind, ContentItem.slug)
        .join(ContentItem, ContentItem.id == ContentVersion.item_id)
        .join(latest, (latest.c.item_id == ContentVersion.item_id) & (latest.c.number == ContentVersion.number))
        .where(ContentItem.kind == kind, owner)
    ).all()
    chosen: dict[str, PublishedVersion] = {}
    for row in rows:
        version = PublishedVersion(
            id=row.id, item_id=row.item_id, number=row.number, title=row.title, source=row.source,
            meta=dict(row.meta or {}), published_at=row.published_at, published_by=row.published_by,
            item=PublishedItem(row.item_id, row.platform_id, row.kind, row.slug),
        )
        if row.slug not in chosen or row.platform_id is not None:
            chosen[row.slug] = version
    return list(chosen.values())


def import_items(
    session: Session,
    kind: str,
    items: Iterable[ParsedContent],
    *,
    platform_id: int | None,
    by: str,
    now: datetime,
) -> tuple[int, int]:
    """Store each item as a new published version unless its text is unchanged.

    Returns (created, unchanged). A new version takes the number the file declares when
    that is higher than what is stored, so an export imported into an empty database gives
    the same versions back.
    """
    created = unchanged = 0
    for parsed in items:
        item = _item(session, platform_id, kind, parsed.slug)
        if item is None:
            item = ContentItem(platform_id=platform_id, kind=kind, slug=parsed.slug)
            session.add(item)
            session.flush()
        latest = _latest(session, item)
        if latest is not None and latest.checksum == checksum(parsed.text):
            unchanged += 1
            continue
        number = max(parsed.version, (latest.number + 1) if latest else 1)
        session.add(
            ContentVersion(
                item_id=item.id,
                number=number,
                title=parsed.title,
                source=parsed.text,
                checksum=checksum(parsed.text),
                meta=parsed.meta,
                published_at=now,
                published_by=by,
            )
        )
        session.flush()
        created += 1
    return created, unchanged


def import_shipped(session: Session, kinds: Sequence[ContentKind], now: datetime) -> tuple[int, int]:
    """Load the shipped course into the library (platform-less) items; changed files add versions."""
    created = unchanged = 0
    for kind in kinds:
        items, problems = kind.read_directory(kind.shipped_directory())
        if problems:
            raise ContentError("The shipped content has problems:\n" + "\n".join(problems))
        c, u = import_items(session, kind.name, items, platform_id=None, by="Rebound (shipped)", now=now)
        created, unchanged = created + c, unchanged + u
    return created, unchanged


def library_is_empty(session: Session) -> bool:
    return session.scalar(select(func.count()).select_from(ContentItem).where(ContentItem.platform_id.is_(None))) == 0


def export_items(session: Session, kinds: Sequence[ContentKind], platform_id: int | None) -> dict[str, str]:
    """Every item a tenant's learners see, as files (relative path -> text)."""
    files: dict[str, str] = {}
    for kind in kinds:
        files.update(kind.extra_files())
        for version in effective_versions(session, platform_id, kind.name):
            parsed = ParsedContent(
                slug=version.item.slug, title=version.title, version=version.number,
                text=kind.with_version(version.source, version.number), meta=version.meta,
            )
            files[kind.relative_path(parsed)] = parsed.text
    return dict(sorted(files.items()))


def draft_for(
    session: Session, platform_id: int | None, kind: str, slug: str, *, by: str, now: datetime
) -> ContentDraft:
    """The tenant's draft of an item, started from what its learners see now."""
    item = _item(session, platform_id, kind, slug)
    if item is None:
        base = effective_version(session, platform_id, kind, slug)
        if base is None:
            raise ContentError(f"There is no {kind} with id {slug!r}.")
        item = ContentItem(platform_id=platform_id, kind=kind, slug=slug)
        session.add(item)
        session.flush()
    draft = session.scalar(select(ContentDraft).where(ContentDraft.item_id == item.id))
    if draft is None:
        base = effective_version(session, platform_id, kind, slug)
        if base is None:
            raise ContentError(f"There is no {kind} with id {slug!r}.")
        draft = ContentDraft(item_id=item.id, source=base.source, revision=1, based_on_version_id=base.id,
                             updated_at=now, updated_by=by)
        session.add(draft)
        session.flush()
    return draft


def new_item_draft(
    session: Session, platform_id: int | None, kind: str, slug: str, source: str, *, by: str, now: datetime
) -> ContentDraft:
    """A draft for a brand-new item; refused if the id is taken."""
    if effective_version(session, platform_id, kind, slug) is not None or _item(session, platform_id, kind, slug):
        raise ContentError(f"A {kind} with id {slug!r} already exists; choose another id.")
    item = ContentItem(platform_id=platform_id, kind=kind, slug=slug)
    session.add(item)
    session.flush()
    draft = ContentDraft(item_id=item.id, source=source, revision=1, updated_at=now, updated_by=by)
    session.add(draft)
    session.flush()
    return draft


def save_draft(
    session: Session, draft: ContentDraft, source: str, *, expected_revision: int, by: str, now: datetime
) -> ContentDraft:
    """Save a draft, refusing when someone saved it since the editor loaded `expected_revision`."""
    # The UPDATE's WHERE makes two simultaneous saves impossible to both succeed.
    result = session.execute(
        update(ContentDraft)
        .where(ContentDraft.id == draft.id, ContentDraft.revision == expected_revision)
        .values(source=source, revision=expected_revision + 1, updated_at=now, updated_by=by)
        .execution_options(synchronize_session=False)
    )
    session.refresh(draft)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleDraft(draft)
    return draft


def publish_draft(
    session: Session, draft: ContentDraft, parsed: ParsedContent, *, expected_revision: int, by: str, now: datetime
) -> ContentVersion:
    """Turn a validated draft into the next immutable published version."""
    if draft.revision != expected_revision:
        raise StaleDraft(draft)
    item = session.get(ContentItem, draft.item_id)
    assert item is not None
    latest_own = _latest(session, item)
    base = effective_version(session, item.platform_id, item.kind, item.slug)
    number = max(latest_own.number if latest_own else 0, base.number if base else 0) + 1
    kind = content_kinds()[item.kind]
    text = kind.with_version(parsed.text, number)
    version = ContentVersion(
        item_id=item.id, number=number, title=parsed.title, source=text, checksum=checksum(text),
        meta=parsed.meta, published_at=now, published_by=by,
    )
    session.add(version)
    session.delete(draft)
    session.flush()
    return version


def history(session: Session, platform_id: int | None, kind: str, slug: str) -> list[ContentVersion]:
    """Every published version of an item a tenant can see, newest first (its own and shipped)."""
    items = [i for i in (_item(session, platform_id, kind, slug), _item(session, None, kind, slug)) if i is not None]
    ids = list(dict.fromkeys(i.id for i in items))
    if not ids:
        return []
    return list(
        session.scalars(
            select(ContentVersion)
            .where(ContentVersion.item_id.in_(ids))
            .order_by(ContentVersion.number.desc(), ContentVersion.id.desc())
        )
    )


def restore_as_draft(
    session: Session, platform_id: int | None, kind: str, slug: str, version: ContentVersion, *, by: str, now: datetime
) -> ContentDraft:
    """Start a draft from an older version; the published history is left as it was."""
    if version not in history(session, platform_id, kind, slug):
        raise ContentError("That version does not belong to this item.")
    draft = draft_for(session, platform_id, kind, slug, by=by, now=now)
    draft.source = version.source
    draft.based_on_version_id = version.id
    draft.revision += 1
    draft.updated_at, draft.updated_by = now, by
    session.flush()
    return draft
