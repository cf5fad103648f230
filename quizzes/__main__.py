"""Command line for case authors: `python -m quizzes validate PATH...`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from quizzes.case_format import MAX_FILE_BYTES, Case, Problem
from quizzes.validator import check_case

CASE_SUFFIXES = (".yaml", ".yml")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m quizzes", description="Tools for branching case files.")
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser(
        "validate",
        help="check case files",
        description="Print every problem in the case files as file:line: message; exit 1 if any.",
    )
    validate.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="a case file, or a folder of .yaml case files"
    )
    arguments = parser.parse_args(argv)
    return run_validate(arguments.paths)


def run_validate(paths: Sequence[Path]) -> int:
    """Validate the files (and folders of files) given; print problems; 1 if any, else 0."""
    problems: list[Problem] = []
    cases: list[tuple[Path, Case]] = []
    files = 0
    for path in paths:
        found = _case_files(path)
        if not found:
            problems.append(Problem(str(path), 1, "no case files here (expected .yaml or .yml files)", code="missing"))
        for file in found:
            files += 1
            case, file_problems = _check_file(file)
            problems += file_problems
            if case is not None:
                cases.append((file, case))
    problems += _duplicate_case_ids(cases)
    for problem in problems:
        print(problem)
    print(f"{files} case file(s) checked, {len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems else 0


def _case_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(file for file in path.iterdir() if file.suffix in CASE_SUFFIXES and file.is_file())
    return [path]


def _check_file(path: Path) -> tuple[Case | None, list[Problem]]:
    name = str(path)
    try:
        with path.open("rb") as stream:
            # Read one byte past the limit: enough to know a file is too large without reading all of it.
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        return None, [Problem(name, 1, f"cannot read the file: {error.strerror or error}", code="unreadable")]
    if len(data) > MAX_FILE_BYTES:
        return None, [Problem(name, 1, f"the file is larger than {MAX_FILE_BYTES:,} bytes", code="too-large")]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        return None, [Problem(name, line, "the file is not UTF-8 text", code="unreadable")]
    return check_case(text, name)


def _duplicate_case_ids(cases: Sequence[tuple[Path, Case]]) -> list[Problem]:
    first: dict[str, Path] = {}
    problems = []
    for path, case in cases:
        if case.id in first:
            message = f'case id "{case.id}" is also used by {first[case.id]}; case ids must be unique'
            problems.append(Problem(str(path), case.source.line_of("id"), message, code="duplicate-id"))
        else:
            first[case.id] = path
    return problems


if __name__ == "__main__":
    sys.exit(main())
