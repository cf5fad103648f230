"""The lesson file format: what a valid lesson is, and how every mistake is reported with its line."""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lessons
from lessons.schema import (
    MAX_BODY_CHARS,
    MAX_FILE_BYTES,
    MAX_YAML_CHARS,
    Lesson,
    LessonInvalid,
    Module,
    Problem,
    load_course_directory,
    load_lesson,
    parse_lesson,
    parse_modules,
)

CONTENT = Path(lessons.__file__).parent / "content"
SHIPPED_LESSONS = sorted(CONTENT.glob("*/*.md"))
MODULE_IDS = ("recognise", "own", "learn")
PROPERTY = settings(max_examples=150, deadline=None, database=None)  # shared checkout: no .hypothesis folder

# Line numbers in the tests below refer to this file.
VALID = """\
---
id: own-testing-lessons
title: Testing lessons
module: own
order: 1
objectives:
  - Say what a test is for.
  - Write one that reads like a specification.
estimated_minutes: 5
version: 1
---

## Why test

Because lessons change.

## Key takeaways

- Tests are specifications.
"""
BODY_LINE = 13


def edited(old: str, new: str, text: str = VALID) -> str:
    assert old in text, f"{old!r} is not in the lesson"
    return text.replace(old, new, 1)


def problems_in(text: str, module_ids: tuple[str, ...] = MODULE_IDS) -> list[Problem]:
    return parse_lesson(text, "own/01-testing-lessons.md", module_ids)[1]


def only_problem(text: str) -> Problem:
    problems = problems_in(text)
    assert len(problems) == 1, problems
    return problems[0]


def write_lesson(root: Path, relative: str, text: str) -> None:
    (root / relative).parent.mkdir(parents=True, exist_ok=True)
    (root / relative).write_text(text, encoding="utf-8")


@pytest.fixture
def course(tmp_path: Path) -> Path:
    """A copy of the shipped course that a test may break."""
    shutil.copytree(CONTENT, tmp_path / "content")
    return tmp_path / "content"


# --- the shipped course -------------------------------------------------------------------------


def test_every_shipped_lesson_and_the_module_list_load_without_problems() -> None:
    # FACT-CHECK.md sits beside modules.yaml: only files inside a module's folder are lessons.
    modules, loaded, problems = load_course_directory(CONTENT)

    assert problems == []
    assert [m.id for m in modules] == list(MODULE_IDS)
    assert len(loaded) == len(SHIPPED_LESSONS) == 9
    assert [(lesson.module, lesson.order) for lesson in loaded][:3] == [("recognise", 1), ("recognise", 2), ("recognise", 3)]


@pytest.mark.parametrize("path", SHIPPED_LESSONS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_each_shipped_lesson_is_written_back_byte_for_byte(path: Path) -> None:
    text = path.read_text(encoding="utf-8")

    lesson = load_lesson(text, path.name, MODULE_IDS)

    assert lesson.to_text() == text


# --- a valid lesson -----------------------------------------------------------------------------


def test_a_valid_lesson_is_read_into_typed_fields() -> None:
    lesson = load_lesson(VALID, "own/01-testing-lessons.md", MODULE_IDS)

    assert lesson == Lesson(
        id="own-testing-lessons",
        title="Testing lessons",
        module="own",
        order=1,
        objectives=("Say what a test is for.", "Write one that reads like a specification."),
        estimated_minutes=5,
        version=1,
        body="## Why test\n\nBecause lessons change.\n\n## Key takeaways\n\n- Tests are specifications.\n",
    )
    assert lesson.to_text() == VALID


def test_a_lesson_written_with_windows_line_endings_reads_the_same() -> None:
    assert load_lesson(VALID.replace("\n", "\r\n"), "x.md", MODULE_IDS) == load_lesson(VALID, "x.md", MODULE_IDS)


def test_text_that_yaml_would_misread_is_quoted_when_written_and_reads_back_unchanged() -> None:
    lesson = load_lesson(VALID, "x.md", MODULE_IDS)
    tricky = replace(lesson, title="Ready: yes", objectives=("yes", "123", "- a list?", '"Quoted" start', "a #b "))

    text = tricky.to_text()

    assert 'title: "Ready: yes"' in text
    assert '  - "yes"\n  - "123"\n' in text
    assert parse_lesson(text, "x.md", MODULE_IDS)[0] == tricky


single_lines = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)


@PROPERTY
@given(title=single_lines, objectives=st.lists(single_lines, min_size=1, max_size=6), body=st.text(max_size=200))
def test_any_lesson_reads_back_equal_from_its_own_text(title: str, objectives: list[str], body: str) -> None:
    lesson = Lesson(
        id="own-any", title=title, module="own", order=2, objectives=tuple(objectives),
        estimated_minutes=7, version=3, body=body.replace("\r", ""),
    )

    assert parse_lesson(lesson.to_text(), "x.md", MODULE_IDS)[0] == lesson


def test_problem_reads_as_file_line_message() -> None:
    assert str(Problem("own/01-x.md", 7, "`order` is missing")) == "own/01-x.md:7: `order` is missing"


def test_load_lesson_raises_with_every_problem() -> None:
    text = edited("order: 1", 'order: "two"', edited("version: 1", "version: 0"))

    with pytest.raises(LessonInvalid) as raised:
        load_lesson(text, "x.md", MODULE_IDS)

    assert [p.line for p in raised.value.problems] == [5, 10]
    assert "x.md:5: `order`" in str(raised.value)


def test_a_lesson_with_well_typed_settings_comes_back_beside_its_problems_so_an_editor_can_show_it() -> None:
    lesson, problems = parse_lesson(edited("## Key takeaways", "## Summary"), "x.md", MODULE_IDS)

    assert lesson is not None and lesson.id == "own-testing-lessons"
    assert len(problems) == 1


# --- the front matter ---------------------------------------------------------------------------


def test_a_file_without_front_matter_is_reported_at_line_1() -> None:
    problem = only_problem("## Key takeaways\n\n- No settings.\n")

    assert (problem.line, problem.message.startswith("the file must start with front matter")) == (1, True)
    assert parse_lesson("## Key takeaways\n", "x.md", MODULE_IDS)[0] is None


def test_front_matter_that_is_never_closed_is_reported_at_line_1() -> None:
    problem = only_problem(VALID.replace("---\n\n## Why", "\n## Why"))

    assert problem.line == 1 and "never closed" in problem.message


def test_malformed_yaml_is_reported_at_the_line_the_parser_stopped() -> None:
    problem = only_problem(edited("title: Testing lessons", "title: Testing: lessons"))

    assert problem.line == 3
    assert "isn't valid YAML (mapping values are not allowed here)" in problem.message
    assert "double quotes" in problem.message


def test_bad_yaml_still_lets_body_problems_be_reported() -> None:
    problems = problems_in(edited("## Key takeaways", "## Summary", edited("order: 1", "order: [1")))

    assert [p.line for p in problems] == [6, BODY_LINE]


@pytest.mark.parametrize(
    ("old", "new", "line", "expected"),
    [
        ("order: 1", 'order: "two"', 5, "`order` must be a whole number, 1 or more, not the text 'two'"),
        ("order: 1", "order: 1.5", 5, "`order` must be a whole number, 1 or more, not the number 1.5"),
        ("order: 1", "order: yes", 5, "`order` must be a whole number, 1 or more, not true"),
        ("order: 1", "order: 0", 5, "`order` must be a whole number, 1 or more, not 0"),
        ("version: 1", "version: -2", 10, "`version` must be a whole number, 1 or more, not -2"),
        ("estimated_minutes: 5", "estimated_minutes: 61", 9, "`estimated_minutes` must be a whole number from 1 to 60, not 61"),
        ("estimated_minutes: 5", "estimated_minutes: 0", 9, "`estimated_minutes` must be a whole number from 1 to 60, not 0"),
        ("title: Testing lessons", "title: 2024", 3, "`title` must be text, not the number 2024; put it in double quotes"),
        ("title: Testing lessons", "title: 2010-06-17", 3, "`title` must be text, not the date 2010-06-17"),
        ("title: Testing lessons", "title:", 3, "`title` must be text, not nothing"),
        ("title: Testing lessons", 'title: "  "', 3, "`title` is empty"),
        ("title: Testing lessons", "title: " + "x" * 121, 3, "`title` is 121 characters, over the limit of 120"),
        ("title: Testing lessons", 'title: "Two\\nlines"', 3, "`title` must be a single line"),
        ("module: own", "module: [own]", 4, "`module` must be text, not a list"),
    ],
)
def test_a_setting_of_the_wrong_type_or_range_is_reported_at_its_line(old: str, new: str, line: int, expected: str) -> None:
    problem = only_problem(edited(old, new))

    assert problem.line == line
    assert problem.message.startswith(expected)


def test_objectives_given_as_one_string_are_reported_at_the_objectives_line() -> None:
    text = edited("objectives:\n  - Say what a test is for.\n  - Write one that reads like a specification.\n",
                  'objectives: "a string"\n')

    problem = only_problem(text)

    assert problem.line == 6
    assert problem.message == "`objectives` must be a list with one `  - ` line per objective, not the text 'a string'"


def test_each_bad_objective_is_reported_at_its_own_line() -> None:
    text = edited("  - Write one that reads like a specification.\n", "  -\n  - " + "y" * 201 + "\n  - [nested]\n")

    problems = problems_in(text)

    assert [(p.line, p.message) for p in problems] == [
        (8, "`objectives` is empty"),
        (9, "`objectives` is 201 characters, over the limit of 200"),
        (10, "`objectives` must be text, not a list; put it in double quotes if it looks like a number, a date or yes/no"),
    ]


@pytest.mark.parametrize("count", [0, 7])
def test_between_one_and_six_objectives_are_allowed(count: int) -> None:
    items = "".join(f"  - Objective {n}.\n" for n in range(count))
    text = edited("objectives:\n  - Say what a test is for.\n  - Write one that reads like a specification.\n",
                  f"objectives:{' []' if count == 0 else ''}\n{items}")

    problem = only_problem(text)

    assert (problem.line, problem.message) == (6, f"`objectives` must list 1 to 6 objectives, not {count}")


def test_every_missing_setting_is_reported_at_line_1() -> None:
    text = edited("title: Testing lessons\n", "", edited("version: 1\n", ""))

    problems = problems_in(text)

    assert [(p.line, p.message) for p in problems] == [
        (1, "`title` is missing; add a line `title: ...`"),
        (1, "`version` is missing; add a line `version: ...`"),
    ]
    assert parse_lesson(text, "x.md", MODULE_IDS)[0] is None


def test_an_unknown_key_suggests_the_closest_known_one() -> None:
    text = edited("title: Testing lessons", "titel: Testing lessons")

    problems = problems_in(text)

    assert (problems[0].line, problems[0].message) == (1, "`title` is missing; add a line `title: ...`")
    assert (problems[1].line, problems[1].message) == (3, "unknown key `titel`; did you mean `title`?")


def test_an_unknown_key_with_no_close_match_lists_the_known_keys() -> None:
    problem = only_problem(edited("version: 1", "version: 1\ncolour: blue"))

    assert problem.line == 11
    assert problem.message == (
        "unknown key `colour`; the keys are id, title, module, order, objectives, estimated_minutes and version"
    )


def test_a_key_given_twice_is_reported_at_the_second_with_the_first_line() -> None:
    problem = only_problem(edited("version: 1", "version: 1\norder: 2"))

    assert (problem.line, problem.message) == (11, "`order` is given twice (also on line 5); keep one")


def test_front_matter_that_is_not_a_mapping_is_reported() -> None:
    problems = problems_in("---\n- id\n- title\n---\n\n## Key takeaways\n\n- x\n")

    assert [(p.line, p.message) for p in problems] == [
        (2, "the front matter must be `key: value` lines, starting with `id:`")
    ]


def test_yaml_tags_that_build_objects_are_refused_safely() -> None:
    problem = only_problem(edited("title: Testing lessons", "title: !!python/object:os.system echo"))

    assert problem.line == 3 and "isn't valid YAML" in problem.message


@pytest.mark.parametrize("bad_id", ["own-Testing", "own-testing_lessons", "own--testing", "own-testing-", "own-testing lessons"])
def test_an_id_that_is_not_lowercase_kebab_case_is_reported(bad_id: str) -> None:
    problem = only_problem(edited("id: own-testing-lessons", f'id: "{bad_id}"'))

    assert problem.line == 2
    assert problem.message.startswith("`id` must be lowercase letters and digits joined by single hyphens")


def test_an_id_longer_than_100_characters_is_reported() -> None:
    problem = only_problem(edited("id: own-testing-lessons", "id: own-" + "a" * 97))

    assert (problem.line, problem.message) == (2, "`id` is 101 characters, over the limit of 100")


def test_an_id_must_start_with_its_module() -> None:
    problem = only_problem(edited("id: own-testing-lessons", "id: learn-testing-lessons"))

    assert (problem.line, problem.message) == (
        2, "`id` must start with its module's id and a hyphen, like own-testing-lessons"
    )


def test_an_unknown_module_names_the_known_ones_and_suggests_the_closest() -> None:
    problems = problems_in(edited("module: own", "module: ownn"))

    assert [(p.line, p.message) for p in problems] == [
        (2, "`id` must start with its module's id and a hyphen, like ownn-testing-lessons"),
        (4, "`module` 'ownn' isn't one of the course's modules (learn, own and recognise); did you mean `own`?"),
    ]


# --- the body -----------------------------------------------------------------------------------


def test_an_empty_body_is_reported_at_the_line_after_the_front_matter() -> None:
    problem = only_problem(VALID.split("## Why test")[0])

    assert (problem.line, problem.message) == (
        BODY_LINE, "the lesson has no body: write it below the front matter's closing `---`"
    )


def test_a_body_without_key_takeaways_is_reported_at_its_first_line() -> None:
    problem = only_problem(edited("## Key takeaways", "## In short"))

    assert problem.line == BODY_LINE
    assert problem.message == "the body has no `## Key takeaways` section: end the lesson with it and a short list"


@pytest.mark.parametrize(
    "heading",
    ["### Key takeaways", "> ## Key takeaways", "```\n## Key takeaways\n```", "Key takeaways"],
    ids=["too-deep", "quoted", "in-code", "not-a-heading"],
)
def test_only_a_top_level_key_takeaways_heading_counts(heading: str) -> None:
    problem = only_problem(edited("## Key takeaways", heading))

    assert "no `## Key takeaways` section" in problem.message


def test_a_body_using_level_one_headings_has_its_takeaways_at_level_one() -> None:
    text = edited("## Why test", "# Why test", edited("## Key takeaways", "# Key takeaways"))

    assert problems_in(text) == []


def test_a_body_over_the_limit_is_reported() -> None:
    text = VALID + "x" * MAX_BODY_CHARS
    body = load_lesson(VALID, "x.md", MODULE_IDS).body + "x" * MAX_BODY_CHARS

    problem = only_problem(text)

    assert (problem.line, problem.message) == (BODY_LINE, f"the body is {len(body):,} characters, over the limit of 60,000")


def test_a_ten_megabyte_file_is_refused_at_once_without_being_parsed() -> None:
    huge = VALID + "x" * (10 * 1024 * 1024)

    started = time.perf_counter()
    problems = problems_in(huge)
    elapsed = time.perf_counter() - started

    # The size check comes first: parsing would also have reported the body over its limit.
    assert [(p.line, p.message) for p in problems] == [
        (1, f"the file is at least {len(huge):,} bytes, over the limit of {MAX_FILE_BYTES:,} bytes (256 KiB)")
    ]
    assert elapsed < 0.5


def test_the_size_limit_counts_bytes_not_characters() -> None:
    # Each "é" is two bytes in UTF-8: fewer characters than the limit, more bytes.
    problem = only_problem(VALID + "é" * (MAX_FILE_BYTES // 2))

    assert problem.message.startswith("the file is at least") and "262,144 bytes" in problem.message


def test_deeply_nested_front_matter_is_refused_before_yaml_reads_it() -> None:
    problem = only_problem(edited("title: Testing lessons", "title: " + "[" * 5000))

    assert problem.line == 2 and "nested 5000 deep" in problem.message


def test_front_matter_longer_than_any_real_settings_is_refused_before_yaml_reads_it() -> None:
    problem = only_problem(edited("version: 1", "version: 1\n# " + "x" * MAX_YAML_CHARS))

    assert problem.line == 2 and problem.message.startswith("the front matter is 16,5")
    assert problem.message.endswith("characters, over the limit of 16,384")


nasty = st.one_of(
    st.text(max_size=300),
    st.builds(lambda fm, body: f"---\n{fm}\n---\n{body}", st.text(max_size=200), st.text(max_size=200)),
    st.lists(st.sampled_from(["---\n", "id: ", "order: ", "[", "{", "- ", "  ", "\n", ": ", "!!", "&a ", "*a", '"', "#"]))
    .map("".join),
)


@PROPERTY
@given(text=nasty)
def test_any_text_gives_problems_with_real_line_numbers_and_never_raises(text: str) -> None:
    lesson, problems = parse_lesson(text, "x.md", MODULE_IDS)

    last_line = text.count("\n") + text.count("\r") + 2
    assert all(1 <= p.line <= last_line for p in problems)
    assert lesson is not None or problems


# --- modules.yaml -------------------------------------------------------------------------------

MODULES = """\
- id: recognise
  title: Recognize
  order: 1
  summary: Spot it.
- id: own
  title: Own
  order: 2
  summary: Own it.
"""


def test_the_module_list_is_read_in_file_order() -> None:
    modules, problems = parse_modules(MODULES, "modules.yaml")

    assert problems == []
    assert modules == [Module("recognise", "Recognize", 1, "Spot it."), Module("own", "Own", 2, "Own it.")]


@pytest.mark.parametrize(
    ("old", "new", "line", "expected"),
    [
        ("id: own", "id: recognise", 5, "`id` 'recognise' is already used on line 1; module ids must be unique"),
        ("order: 2", "order: 1", 7, "`order` 1 is already used on line 3; give each module its own place"),
        ("id: own", "id: Own_It", 5, "`id` must be lowercase letters and digits joined by single hyphens"),
        ("summary: Own it.", "sumary: Own it.", 5, "`summary` is missing"),
        ("summary: Own it.", "sumary: Own it.", 8, "unknown key `sumary`; did you mean `summary`?"),
        ("summary: Own it.", "summary: 3", 8, "`summary` must be a sentence or two of text, not the number 3"),
    ],
)
def test_module_list_problems_are_reported_at_their_line(old: str, new: str, line: int, expected: str) -> None:
    _, problems = parse_modules(MODULES.replace(old, new), "modules.yaml")

    assert any(p.line == line and p.message.startswith(expected) for p in problems), problems


def test_a_module_list_nested_too_deep_is_refused_before_yaml_reads_it() -> None:
    _, problems = parse_modules("- " + "[" * 10_000, "modules.yaml")

    assert [str(p) for p in problems] == [
        "modules.yaml:1: the module list has brackets nested 10000 deep; each setting is a single value or a list"
    ]


def test_a_module_list_that_is_not_a_list_is_reported() -> None:
    _, problems = parse_modules("id: own\n", "modules.yaml")

    assert [(p.line, p.message) for p in problems] == [(1, "the file must be a list of modules, each starting with `- id:`")]


# --- rules between files ------------------------------------------------------------------------


def test_two_lessons_with_the_same_id_are_reported_naming_both_files(course: Path) -> None:
    original = (course / "own/02-apologizing-well.md").read_text(encoding="utf-8")
    write_lesson(course, "own/04-apologizing-again.md", original.replace("order: 2", "order: 4"))

    _, loaded, problems = load_course_directory(course)

    assert [str(p) for p in problems] == [
        "own/04-apologizing-again.md:2: `id` 'own-apologizing-well' is also the id of own/02-apologizing-well.md; "
        "lesson ids must be unique"
    ]
    assert len(loaded) == 10


def test_two_lessons_in_the_same_place_in_a_module_are_reported(course: Path) -> None:
    write_lesson(course, "own/09-extra.md", edited("id: own-testing-lessons", "id: own-extra"))

    _, _, problems = load_course_directory(course)

    assert [str(p) for p in problems] == [
        "own/09-extra.md:5: `order` 1 in module 'own' is also used by own/01-taking-responsibility-in-public.md; "
        "each needs its own"
    ]


def test_a_lesson_in_another_modules_folder_is_reported(course: Path) -> None:
    write_lesson(course, "learn/09-misfiled.md", edited("order: 1", "order: 9"))

    _, _, problems = load_course_directory(course)

    assert [str(p) for p in problems] == [
        "learn/09-misfiled.md:4: `module` is 'own' but the file is in the folder learn/; move it to own/ or change `module`"
    ]


def test_a_lesson_for_a_module_the_course_does_not_have_is_reported(course: Path) -> None:
    text = edited("module: own", "module: extra", edited("id: own-testing-lessons", "id: extra-testing-lessons"))
    write_lesson(course, "extra/01-testing.md", text)

    _, loaded, problems = load_course_directory(course)

    assert [p.file for p in problems] == ["extra/01-testing.md"]
    assert (problems[0].line, problems[0].message.startswith("`module` 'extra' isn't one of the course's modules")) == (4, True)
    assert len(loaded) == 9


def test_a_course_without_a_module_list_is_reported(course: Path) -> None:
    (course / "modules.yaml").unlink()

    modules, loaded, problems = load_course_directory(course)

    # Only the cause: the lessons' modules can't be checked against a list that isn't there.
    assert (modules, [str(p) for p in problems]) == ([], ["modules.yaml:1: modules.yaml is missing"])
    assert len(loaded) == 9


def test_an_oversized_or_non_utf8_file_on_disk_is_refused_without_being_parsed(course: Path) -> None:
    (course / "own/08-huge.md").write_bytes(b"x" * (MAX_FILE_BYTES + 1))
    (course / "own/09-latin1.md").write_bytes(VALID.encode() + "\nCafé\n".encode("latin-1"))

    _, _, problems = load_course_directory(course)

    assert [str(p) for p in problems] == [
        "own/08-huge.md:1: the file is 262,145 bytes, over the limit of 262,144 bytes (256 KiB)",
        "own/09-latin1.md:21: the file isn't UTF-8 text; save it as UTF-8",
    ]


def test_problems_in_several_files_are_all_reported_in_file_and_line_order(course: Path) -> None:
    write_lesson(course, "own/07-bad.md", edited("order: 1", "order: 7", edited("version: 1", "version: none")))
    write_lesson(course, "learn/07-bad.md", "no front matter\n")

    _, _, problems = load_course_directory(course)

    assert [(p.file, p.line) for p in problems] == [("learn/07-bad.md", 1), ("own/07-bad.md", 10)]
