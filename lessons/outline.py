"""The course as a learner meets it: modules in order, each with its lessons and cases,
limited to what a placement points at."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from flask import Flask, current_app
from sqlalchemy.orm import Session

from course.content import PublishedVersion, effective_versions
from course.models import Placement
from lessons.kind import shipped_modules


@dataclass(frozen=True)
class LessonEntry:
    """A lesson in the outline: the published version a tenant's learners see."""

    slug: str
    title: str
    module: str
    order: int
    estimated_minutes: int
    version: PublishedVersion


@dataclass(frozen=True)
class ActivityEntry:
    """Something else a module holds (a case), contributed by its package."""

    kind: str
    slug: str
    title: str
    summary: str
    url: str
    status: str
    estimated_minutes: int = 0


@dataclass(frozen=True)
class ModuleEntry:
    id: str
    title: str
    summary: str
    lessons: tuple[LessonEntry, ...]
    activities: tuple[ActivityEntry, ...] = field(default_factory=tuple)


# Packages add activities to modules: (session, placement, user_id) -> {module_id: [ActivityEntry]}.
ActivitySource = Callable[[Session, Placement, int], dict[str, list[ActivityEntry]]]


def activity_sources(app: Flask | None = None) -> list[ActivitySource]:
    return (app or current_app).extensions.setdefault("rebound.course_activities", [])  # type: ignore[no-any-return]


def lessons_for(session: Session, platform_id: int | None) -> list[LessonEntry]:
    """Every published lesson a tenant's learners see, in course order."""
    module_order = {m.id: m.order for m in shipped_modules()}
    entries = [
        LessonEntry(
            slug=_slug(v),
            title=v.title,
            module=v.meta["module"],
            order=int(v.meta["order"]),
            estimated_minutes=int(v.meta["estimated_minutes"]),
            version=v,
        )
        for v in effective_versions(session, platform_id, "lesson")
    ]
    return sorted(entries, key=lambda e: (module_order.get(e.module, 99), e.order, e.slug))


def _slug(version: PublishedVersion) -> str:
    return version.item.slug


def in_scope(placement: Placement, lessons: Sequence[LessonEntry]) -> list[LessonEntry]:
    """The lessons a placement covers: all, one module's, one lesson, or none (a case)."""
    kind, ref = placement.target_kind, placement.target_ref
    if kind == "module":
        return [lesson for lesson in lessons if lesson.module == ref]
    if kind == "lesson":
        return [lesson for lesson in lessons if lesson.slug == ref]
    if kind == "case":
        return []
    return list(lessons)


def outline(session: Session, placement: Placement, user_id: int) -> list[ModuleEntry]:
    """The modules of a placement with their lessons and other activities."""
    lessons = in_scope(placement, lessons_for(session, placement.platform_id))
    extra: dict[str, list[ActivityEntry]] = {}
    for source in activity_sources():
        for module_id, entries in source(session, placement, user_id).items():
            extra.setdefault(module_id, []).extend(entries)
    modules = []
    for module in shipped_modules():
        module_lessons = tuple(lesson for lesson in lessons if lesson.module == module.id)
        activities = tuple(extra.get(module.id, ()))
        if module_lessons or activities:
            modules.append(ModuleEntry(module.id, module.title, module.summary, module_lessons, activities))
    return modules
