"""Cases as a content kind: one YAML file per case, validated by the case validator."""

from __future__ import annotations

import re
from pathlib import Path

from course.content import ParsedContent
from quizzes.case_format import Case
from quizzes.validator import check_case

CASES_DIR = Path(__file__).parent / "cases"
_VERSION_LINE = re.compile(r"^version:[ \t]*\d+[ \t]*$", re.MULTILINE)


def _parsed(case: Case, text: str) -> ParsedContent:
    return ParsedContent(
        slug=case.id,
        title=case.title,
        version=case.version,
        text=text,
        meta={"module": case.module, "summary": case.summary, "pass_mark": case.pass_mark},
    )


class CaseKind:
    """Branching cases: `<id>.yaml` files."""

    name = "case"
    label = "Case"
    folder = "cases"

    def parse(self, text: str, filename: str) -> tuple[ParsedContent | None, list[str]]:
        case, problems = check_case(text, filename)
        if case is None or problems:
            return None, [str(p) for p in problems]
        return _parsed(case, text), []

    def read_directory(self, path: Path) -> tuple[list[ParsedContent], list[str]]:
        items: list[ParsedContent] = []
        problems: list[str] = []
        seen: dict[str, str] = {}
        for file in sorted(path.glob("*.yaml")):
            parsed, found = self.parse(file.read_text(encoding="utf-8"), file.name)
            problems.extend(found)
            if parsed is None:
                continue
            if parsed.slug in seen:
                problems.append(f"{file.name}:1: case id {parsed.slug!r} is also used by {seen[parsed.slug]}")
                continue
            seen[parsed.slug] = file.name
            items.append(parsed)
        return items, problems

    def relative_path(self, item: ParsedContent) -> str:
        return f"cases/{item.slug}.yaml"

    def with_version(self, text: str, version: int) -> str:
        return _VERSION_LINE.sub(f"version: {version}", text, count=1)

    def extra_files(self) -> dict[str, str]:
        return {}

    def shipped_directory(self) -> Path:
        return CASES_DIR
