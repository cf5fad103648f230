"""Lessons as a content kind: how they are parsed, laid out in folders and versioned."""

from __future__ import annotations

import re
from pathlib import Path

from flask import current_app, has_app_context

from course.content import ParsedContent
from lessons.schema import Lesson, Module, load_course_directory, parse_lesson, parse_modules

CONTENT_DIR = Path(__file__).parent / "content"
MODULES_FILE = "modules.yaml"
_VERSION_LINE = re.compile(r"^version:[ \t]*\d+[ \t]*$", re.MULTILINE)


def _read_modules() -> tuple[Module, ...]:
    modules, problems = parse_modules((CONTENT_DIR / MODULES_FILE).read_text(encoding="utf-8"), MODULES_FILE)
    if problems:
        raise ValueError("\n".join(str(p) for p in problems))
    return tuple(sorted(modules, key=lambda m: m.order))


def shipped_modules() -> list[Module]:
    """The course's modules, in order (they are fixed; lessons are what trainers edit)."""
    # Read once per app: the file ships with the package and never changes while it runs.
    if not has_app_context():
        return list(_read_modules())
    cached = current_app.extensions.get("rebound.shipped_modules")
    if cached is None:
        cached = current_app.extensions["rebound.shipped_modules"] = _read_modules()
    return list(cached)


def _parsed(lesson: Lesson, text: str) -> ParsedContent:
    return ParsedContent(
        slug=lesson.id,
        title=lesson.title,
        version=lesson.version,
        text=text,
        meta={
            "module": lesson.module,
            "order": lesson.order,
            "objectives": list(lesson.objectives),
            "estimated_minutes": lesson.estimated_minutes,
        },
    )


class LessonKind:
    """Lessons: Markdown with front matter, one file per lesson under its module's folder."""

    name = "lesson"
    label = "Lesson"
    folder = "lessons"

    def module_ids(self) -> list[str]:
        return [m.id for m in shipped_modules()]

    def parse(self, text: str, filename: str) -> tuple[ParsedContent | None, list[str]]:
        lesson, problems = parse_lesson(text, filename, self.module_ids())
        if lesson is None or problems:
            return None, [str(p) for p in problems]
        return _parsed(lesson, text), []

    def read_directory(self, path: Path) -> tuple[list[ParsedContent], list[str]]:
        if not (path / MODULES_FILE).exists():
            return [], [f"{path / MODULES_FILE}:1: the lessons folder needs a {MODULES_FILE}"]
        _, lessons, problems = load_course_directory(path)
        if problems:
            return [], [str(p) for p in problems]
        return [_parsed(lesson, lesson.to_text()) for lesson in lessons], []

    def relative_path(self, item: ParsedContent) -> str:
        return f"lessons/{item.meta['module']}/{int(item.meta['order']):02d}-{_file_slug(item)}.md"

    def with_version(self, text: str, version: int) -> str:
        return _VERSION_LINE.sub(f"version: {version}", text, count=1)

    def extra_files(self) -> dict[str, str]:
        return {f"lessons/{MODULES_FILE}": (CONTENT_DIR / MODULES_FILE).read_text(encoding="utf-8")}

    def shipped_directory(self) -> Path:
        return CONTENT_DIR


def _file_slug(item: ParsedContent) -> str:
    # Files are named after the id without its module prefix, as the shipped ones are.
    prefix = f"{item.meta['module']}-"
    return item.slug.removeprefix(prefix)
