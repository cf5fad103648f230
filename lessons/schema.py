"""The lesson file format: YAML front matter and a Markdown body, read, checked and written back.

Pure: no Flask, no database. Shipped files and the web editor meet in `parse_lesson`, which never
raises and names every problem with its file and line, so a trainer can fix them all in one pass.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from lessons.render import TAKEAWAYS_TITLE, outline, section_key

MAX_FILE_BYTES = 256 * 1024
MAX_YAML_CHARS = 16 * 1024
MAX_YAML_NESTING = 16
MAX_BODY_CHARS = 60_000
MAX_ID_CHARS = 100
MAX_TITLE_CHARS = 120
MIN_OBJECTIVES = 1
MAX_OBJECTIVES = 6
MAX_OBJECTIVE_CHARS = 200
MIN_MINUTES = 1
MAX_MINUTES = 60
MAX_SUMMARY_CHARS = 600
LESSON_KEYS = ("id", "title", "module", "order", "objectives", "estimated_minutes", "version")
MODULE_KEYS = ("id", "title", "order", "summary")
MODULES_FILE = "modules.yaml"
DELIMITER = "---"

_KEBAB = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_DELIMITER_LINE = re.compile(r"^---[ \t]*$", re.MULTILINE)
_TAKEAWAYS_KEY = section_key(TAKEAWAYS_TITLE)
_FILE_LIMIT = f"{MAX_FILE_BYTES:,} bytes ({MAX_FILE_BYTES // 1024} KiB)"
_YAML_HINT = "check the indentation, and put a value in double quotes if it contains `: ` or starts with a quote"


@dataclass(frozen=True, order=True)
class Problem:
    """Something wrong in a content file, at a 1-based line."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class LessonInvalid(ValueError):
    """A lesson that can't be used, with every problem found in it."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class Module:
    """A module of the course, as listed in modules.yaml."""

    id: str
    title: str
    order: int
    summary: str


@dataclass(frozen=True)
class Lesson:
    """A lesson: its front matter settings and its Markdown body."""

    id: str
    title: str
    module: str
    order: int
    objectives: tuple[str, ...]
    estimated_minutes: int
    version: int
    body: str

    def to_text(self) -> str:
        """The lesson in its file format; `parse_lesson` reads it back to an equal lesson."""
        objectives = "".join(f"  - {_scalar(o, in_list=True)}\n" for o in self.objectives)
        return (
            f"{DELIMITER}\n"
            f"id: {_scalar(self.id)}\n"
            f"title: {_scalar(self.title)}\n"
            f"module: {_scalar(self.module)}\n"
            f"order: {self.order}\n"
            f"objectives:\n{objectives}"
            f"estimated_minutes: {self.estimated_minutes}\n"
            f"version: {self.version}\n"
            f"{DELIMITER}\n\n{self.body}"
        )


def parse_lesson(text: str, filename: str, module_ids: Collection[str]) -> tuple[Lesson | None, list[Problem]]:
    """Read a lesson file: a lesson whenever its settings have the right types, and every problem, by line."""
    parsed = _parse_lesson(text, filename, module_ids)
    return parsed.lesson, parsed.problems


def load_lesson(text: str, filename: str, module_ids: Collection[str]) -> Lesson:
    """Read a lesson file, raising `LessonInvalid` with every problem if it has any."""
    lesson, problems = parse_lesson(text, filename, module_ids)
    if problems or lesson is None:
        raise LessonInvalid(problems)
    return lesson


def parse_modules(text: str, filename: str) -> tuple[list[Module], list[Problem]]:
    """Read modules.yaml: a list of modules with unique kebab-case ids and unique orders."""
    report = _Report(filename)
    if (costly := _costly_yaml(text, "the module list")) is not None:
        report.add(1, costly)
        return [], report.problems
    root = _load_yaml(_normalise(text), report, first_line=1)
    if root is None:
        return [], report.problems
    if not isinstance(root.node, yaml.SequenceNode) or not root.node.value:
        report.add(root.line(root.node), "the file must be a list of modules, each starting with `- id:`")
        return [], report.problems
    modules: list[Module] = []
    claims = _Claims()
    for item in root.node.value:
        module, lines = _module(root, item, report)
        if module is not None:
            report.problems.extend(claims.check_module(module, filename, lines))
            modules.append(module)
    return modules, sorted(report.problems)


def load_course_directory(path: Path) -> tuple[list[Module], list[Lesson], list[Problem]]:
    """Read modules.yaml and every `<module>/*.md` under `path`, checking each file and the rules between files."""
    problems: list[Problem] = []
    modules: list[Module] = []
    modules_text = _read_file(path / MODULES_FILE, MODULES_FILE, problems)
    if modules_text is not None:
        modules, module_problems = parse_modules(modules_text, MODULES_FILE)
        problems.extend(module_problems)
    # With no readable module list, saying every lesson's module is unknown would bury the one real problem.
    module_ids = [m.id for m in modules] if modules else None
    lessons: list[Lesson] = []
    claims = _Claims()
    for file in _lesson_files(path):
        name = file.relative_to(path).as_posix()
        text = _read_file(file, name, problems)
        if text is None:
            continue
        parsed = _parse_lesson(text, name, module_ids)
        problems.extend(parsed.problems)
        if parsed.lesson is not None:
            problems.extend(claims.check_lesson(parsed.lesson, name, parsed.lines, folder=file.parent.name))
            if not parsed.problems:
                lessons.append(parsed.lesson)
    module_order = {m.id: m.order for m in modules}
    lessons.sort(key=lambda lesson: (module_order.get(lesson.module, math.inf), lesson.order, lesson.id))
    return sorted(modules, key=lambda m: m.order), lessons, sorted(problems)


# --- reading a lesson ---------------------------------------------------------------------------


@dataclass
class _Report:
    file: str
    problems: list[Problem] = field(default_factory=list)

    def add(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.file, line, message))


@dataclass
class _ParsedLesson:
    lesson: Lesson | None
    problems: list[Problem]
    lines: dict[str, int] = field(default_factory=dict)


def _parse_lesson(text: str, filename: str, module_ids: Collection[str] | None) -> _ParsedLesson:
    report = _Report(filename)
    # Refuse before any parsing: an oversized upload must cost a length check, not a YAML parse.
    if (too_big := _size_problem(text)) is not None:
        report.add(1, too_big)
        return _ParsedLesson(None, report.problems)
    parts = _split(_normalise(text), report)
    if parts is None:
        return _ParsedLesson(None, report.problems)
    front_matter, body, body_line = parts
    root = None
    if (costly := _costly_yaml(front_matter, "the front matter")) is not None:
        report.add(2, costly)
    else:
        root = _load_yaml(front_matter, report, first_line=2)
    settings, lines = _front_matter(root, report, module_ids) if root is not None else ({}, {})
    _check_body(body, body_line, report)
    lesson = Lesson(**settings, body=body) if all(key in settings for key in LESSON_KEYS) else None
    return _ParsedLesson(lesson, sorted(report.problems), lines)


def _normalise(text: str) -> str:
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def _size_problem(text: str) -> str | None:
    # Every character takes at least one byte, so the cheap length test settles the huge cases.
    size = len(text) if len(text) > MAX_FILE_BYTES else len(text.encode("utf-8", "surrogatepass"))
    if size <= MAX_FILE_BYTES:
        return None
    return f"the file is at least {size:,} bytes, over the limit of {_FILE_LIMIT}"


def _split(text: str, report: _Report) -> tuple[str, str, int] | None:
    """Front matter, body and the body's first line; None (with a problem) when there's no front matter."""
    opening = _DELIMITER_LINE.match(text)
    if opening is None:
        report.add(1, "the file must start with front matter: a `---` line, the lesson's settings, then another `---`")
        return None
    closing = _DELIMITER_LINE.search(text, opening.end())
    if closing is None:
        report.add(1, "the front matter that starts on line 1 is never closed: add a `---` line after the settings")
        return None
    body_line = text.count("\n", 0, closing.start()) + 2
    body = text[closing.end() :].removeprefix("\n")
    if body.startswith("\n"):
        # The blank line after the closing `---` belongs to the format, not to the body.
        body, body_line = body[1:], body_line + 1
    return text[opening.end() + 1 : closing.start()], body, body_line


def _costly_yaml(text: str, what: str) -> str | None:
    """Why `text` is refused before YAML reads it, if it is: settings never need much room or nesting."""
    # PyYAML's time grows with the square of bracket nesting; these limits keep an upload's cost bounded.
    if len(text) > MAX_YAML_CHARS:
        return f"{what} is {len(text):,} characters, over the limit of {MAX_YAML_CHARS:,}"
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(depth - 1, 0)
    if deepest > MAX_YAML_NESTING:
        return f"{what} has brackets nested {deepest} deep; each setting is a single value or a list"
    return None


def _check_body(body: str, line: int, report: _Report) -> None:
    if not body.strip():
        report.add(line, "the lesson has no body: write it below the front matter's closing `---`")
    elif len(body) > MAX_BODY_CHARS:
        report.add(line, f"the body is {len(body):,} characters, over the limit of {MAX_BODY_CHARS:,}")
    elif not any(h.level == 2 and section_key(h.text) == _TAKEAWAYS_KEY for h in outline(body)):
        report.add(line, f"the body has no `## {TAKEAWAYS_TITLE}` section: end the lesson with it and a short list")


def _front_matter(
    root: _Yaml, report: _Report, module_ids: Collection[str] | None
) -> tuple[dict[str, Any], dict[str, int]]:
    if not isinstance(root.node, yaml.MappingNode):
        report.add(root.line(root.node), "the front matter must be `key: value` lines, starting with `id:`")
        return {}, {}
    settings, lines = _checked(root, root.node, _LESSON_FIELDS, report, missing_line=1)
    _check_module(settings, lines, report, module_ids)
    return settings, lines


def _check_module(
    settings: dict[str, Any], lines: dict[str, int], report: _Report, module_ids: Collection[str] | None
) -> None:
    """The module is known (unless the module list itself is unreadable) and prefixes the id."""
    module = settings.get("module")
    if not module:
        return
    if module_ids is not None and module not in module_ids:
        known = _and(sorted(module_ids)) if module_ids else "there are none yet"
        suggestion = _suggest(module, module_ids)
        report.add(lines["module"], f"`module` {module!r} isn't one of the course's modules ({known}){suggestion}")
    lesson_id = settings.get("id")
    if lesson_id and not lesson_id.startswith(f"{module}-"):
        # A lesson moved between modules keeps the rest of its id; suggest swapping only the prefix.
        rest = next((lesson_id[len(m) + 1 :] for m in module_ids or () if lesson_id.startswith(f"{m}-")), lesson_id)
        report.add(lines["id"], f"`id` must start with its module's id and a hyphen, like {module}-{rest}")


# --- YAML with line numbers ---------------------------------------------------------------------


@dataclass
class _Yaml:
    """A composed YAML document, kept as nodes so every value can be reported at its own line."""

    node: yaml.Node
    loader: yaml.SafeLoader
    first_line: int

    def line(self, node: yaml.Node) -> int:
        return int(node.start_mark.line) + self.first_line

    def value(self, node: yaml.Node) -> Any:
        return self.loader.construct_object(node, deep=True)


def _load_yaml(text: str, report: _Report, first_line: int) -> _Yaml | None:
    last_line = first_line + text.count("\n")
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        if node is None:
            report.add(first_line, "there are no settings here: write `key: value` lines")
            return None
        root = _Yaml(node, loader, first_line)
        root.value(node)  # builds every value now, so bad tags and unhashable keys surface here, with a line
        return root
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = min(mark.line + first_line, last_line) if mark else first_line
        report.add(line, f"this isn't valid YAML ({error.problem or error.context}); {_YAML_HINT}")
    except RecursionError:
        report.add(first_line, "the settings are nested too deeply to read; each one is a single value or a list")
    except yaml.YAMLError as error:
        # Reader errors (characters YAML refuses) carry a position rather than a mark.
        line = first_line + text.count("\n", 0, getattr(error, "position", 0))
        report.add(line, f"this isn't valid YAML ({error}); {_YAML_HINT}")
    return None


def _entries(
    root: _Yaml, node: yaml.MappingNode, allowed: tuple[str, ...], report: _Report, missing_line: int
) -> dict[str, tuple[int, yaml.Node]]:
    """The mapping's known keys with their line and value node; unknown, repeated and missing keys reported."""
    entries: dict[str, tuple[int, yaml.Node]] = {}
    for key_node, value_node in node.value:
        line, key = root.line(key_node), root.value(key_node)
        if not isinstance(key, str) or key not in allowed:
            known = f"; the keys are {_and(allowed)}"
            report.add(line, f"unknown key `{key}`{_suggest(str(key), allowed, otherwise=known)}")
        elif key in entries:
            report.add(line, f"`{key}` is given twice (also on line {entries[key][0]}); keep one")
        else:
            entries[key] = (line, value_node)
    for key in allowed:
        if key not in entries:
            report.add(missing_line, f"`{key}` is missing; add a line `{key}: ...`")
    return entries


def _suggest(word: str, choices: Collection[str], otherwise: str = "") -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else otherwise


def _and(words: Collection[str]) -> str:
    listed = list(words)
    return listed[0] if len(listed) == 1 else f"{', '.join(listed[:-1])} and {listed[-1]}"


# --- fields -------------------------------------------------------------------------------------


@dataclass
class _Field:
    """One `key: value` entry, with what is needed to check its value and report at its line."""

    key: str
    line: int
    node: yaml.Node
    root: _Yaml

    @property
    def value(self) -> Any:
        return self.root.value(self.node)


_Check = Callable[[_Field, _Report], Any]


def _checked(
    root: _Yaml, node: yaml.MappingNode, fields: dict[str, _Check], report: _Report, missing_line: int
) -> tuple[dict[str, Any], dict[str, int]]:
    """Every field's checked value (left out when its type is wrong) and the line of each key."""
    entries = _entries(root, node, tuple(fields), report, missing_line)
    values: dict[str, Any] = {}
    for key, (line, value_node) in entries.items():
        value = fields[key](_Field(key, line, value_node, root), report)
        if value is not None:
            values[key] = value
    return values, {key: line for key, (line, _) in entries.items()}


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{str(value).lower()} (YAML reads yes/no, true/false and on/off as yes-or-no values)"
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, date):
        return f"the date {value.isoformat()}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a set of keys"
    return type(value).__name__


def _text(spec: _Field, report: _Report, limit: int) -> str | None:
    return _one_line(spec.key, spec.value, spec.line, limit, report)


def _one_line(key: str, value: Any, line: int, limit: int, report: _Report) -> str | None:
    if not isinstance(value, str):
        hint = "; put it in double quotes if it looks like a number, a date or yes/no" if value is not None else ""
        report.add(line, f"`{key}` must be text, not {_describe(value)}{hint}")
        return None
    if not value.strip():
        report.add(line, f"`{key}` is empty")
    elif "\n" in value:
        report.add(line, f"`{key}` must be a single line")
    elif len(value) > limit:
        report.add(line, f"`{key}` is {len(value)} characters, over the limit of {limit}")
    return value


def _paragraph(spec: _Field, report: _Report, limit: int) -> str | None:
    value = spec.value
    if not isinstance(value, str) or not value.strip():
        report.add(spec.line, f"`{spec.key}` must be a sentence or two of text, not {_describe(value)}")
        return None
    if len(value) > limit:
        report.add(spec.line, f"`{spec.key}` is {len(value)} characters, over the limit of {limit}")
    return value


def _whole_number(spec: _Field, report: _Report, low: int, high: int | None = None) -> int | None:
    value = spec.value
    wanted = f"a whole number from {low} to {high}" if high is not None else f"a whole number, {low} or more"
    if isinstance(value, bool) or not isinstance(value, int):
        report.add(spec.line, f"`{spec.key}` must be {wanted}, not {_describe(value)}")
        return None
    if value < low or (high is not None and value > high):
        report.add(spec.line, f"`{spec.key}` must be {wanted}, not {value}")
    return value


def _kebab_id(spec: _Field, report: _Report) -> str | None:
    value = _text(spec, report, MAX_ID_CHARS)
    if value and len(value) <= MAX_ID_CHARS and not _KEBAB.fullmatch(value):
        report.add(
            spec.line,
            f"`{spec.key}` must be lowercase letters and digits joined by single hyphens "
            f"(like own-apologizing-well), not {value!r}",
        )
    return value


def _objectives(spec: _Field, report: _Report) -> tuple[str, ...] | None:
    if not isinstance(spec.node, yaml.SequenceNode):
        wrong = _describe(spec.value)
        report.add(spec.line, f"`objectives` must be a list with one `  - ` line per objective, not {wrong}")
        return None
    items = list(spec.node.value)
    if not MIN_OBJECTIVES <= len(items) <= MAX_OBJECTIVES:
        wanted = f"{MIN_OBJECTIVES} to {MAX_OBJECTIVES}"
        report.add(spec.line, f"`objectives` must list {wanted} objectives, not {len(items)}")
    texts = [_objective(spec, item, report) for item in items]
    return tuple(t for t in texts if t is not None) if all(t is not None for t in texts) else None


def _objective(spec: _Field, item: yaml.Node, report: _Report) -> str | None:
    value = spec.root.value(item)
    # An empty `  - ` line reads as null: that is an empty objective, not one of the wrong type.
    return _one_line(spec.key, "" if value is None else value, spec.root.line(item), MAX_OBJECTIVE_CHARS, report)


_LESSON_FIELDS: dict[str, _Check] = {
    "id": _kebab_id,
    "title": lambda spec, report: _text(spec, report, MAX_TITLE_CHARS),
    "module": lambda spec, report: _text(spec, report, MAX_ID_CHARS),
    "order": lambda spec, report: _whole_number(spec, report, 1),
    "objectives": _objectives,
    "estimated_minutes": lambda spec, report: _whole_number(spec, report, MIN_MINUTES, MAX_MINUTES),
    "version": lambda spec, report: _whole_number(spec, report, 1),
}
_MODULE_FIELDS: dict[str, _Check] = {
    "id": _kebab_id,
    "title": lambda spec, report: _text(spec, report, MAX_TITLE_CHARS),
    "order": lambda spec, report: _whole_number(spec, report, 1),
    "summary": lambda spec, report: _paragraph(spec, report, MAX_SUMMARY_CHARS),
}


def _module(root: _Yaml, node: yaml.Node, report: _Report) -> tuple[Module | None, dict[str, int]]:
    if not isinstance(node, yaml.MappingNode):
        report.add(root.line(node), f"each module must be a set of keys: {_and(MODULE_KEYS)}")
        return None, {}
    values, lines = _checked(root, node, _MODULE_FIELDS, report, missing_line=root.line(node))
    return (Module(**values) if all(key in values for key in MODULE_KEYS) else None), lines


# --- writing ------------------------------------------------------------------------------------


def _scalar(value: str, *, in_list: bool = False) -> str:
    """A string as YAML: plain when that reads back unchanged, as the shipped files are written, else quoted."""
    if value and "\n" not in value and _reads_back_plain(value, in_list=in_list):
        return value
    return yaml.safe_dump(value, default_style='"', allow_unicode=True, width=math.inf).rstrip("\n")


def _reads_back_plain(value: str, *, in_list: bool) -> bool:
    document = f"v:\n  - {value}\n" if in_list else f"v: {value}\n"
    try:
        loaded = yaml.safe_load(document)
    except yaml.YAMLError:
        return False
    return bool(loaded == {"v": [value] if in_list else value})


# --- the course directory -----------------------------------------------------------------------


def _lesson_files(path: Path) -> Iterator[Path]:
    for file in sorted(path.glob("*/*.md")):
        if not any(part.startswith(".") for part in file.relative_to(path).parts):
            yield file


def _read_file(file: Path, name: str, problems: list[Problem]) -> str | None:
    if not file.is_file():
        problems.append(Problem(name, 1, f"{name} is missing"))
        return None
    size = file.stat().st_size
    if size > MAX_FILE_BYTES:
        problems.append(Problem(name, 1, f"the file is {size:,} bytes, over the limit of {_FILE_LIMIT}"))
        return None
    data = file.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        problems.append(Problem(name, line, "the file isn't UTF-8 text; save it as UTF-8"))
        return None


@dataclass
class _Claims:
    """Who first used each id and each place in an order, to catch clashes between entries."""

    taken: dict[tuple[object, ...], str] = field(default_factory=dict)

    def claim(self, key: tuple[object, ...], by: str) -> str | None:
        """Who took `key` before, or None when `by` is the first and now holds it."""
        if key in self.taken:
            return self.taken[key]
        self.taken[key] = by
        return None

    def check_module(self, module: Module, name: str, lines: dict[str, int]) -> list[Problem]:
        found: list[Problem] = []
        if (first := self.claim(("id", module.id), f"line {lines['id']}")) is not None:
            message = f"`id` {module.id!r} is already used on {first}; module ids must be unique"
            found.append(Problem(name, lines["id"], message))
        if (first := self.claim(("order", module.order), f"line {lines['order']}")) is not None:
            message = f"`order` {module.order} is already used on {first}; give each module its own place"
            found.append(Problem(name, lines["order"], message))
        return found

    def check_lesson(self, lesson: Lesson, name: str, lines: dict[str, int], folder: str) -> list[Problem]:
        found: list[Problem] = []
        if lesson.module != folder:
            message = (
                f"`module` is {lesson.module!r} but the file is in the folder {folder}/; "
                f"move it to {lesson.module}/ or change `module`"
            )
            found.append(Problem(name, lines["module"], message))
        if (first := self.claim(("id", lesson.id), name)) is not None:
            message = f"`id` {lesson.id!r} is also the id of {first}; lesson ids must be unique"
            found.append(Problem(name, lines["id"], message))
        if (first := self.claim(("order", lesson.module, lesson.order), name)) is not None:
            message = f"`order` {lesson.order} in module {lesson.module!r} is also used by {first}; each needs its own"
            found.append(Problem(name, lines["order"], message))
        return found
