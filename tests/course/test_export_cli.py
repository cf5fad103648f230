"""`rebound export completions`: a progress bar on stderr, a file that appears only when whole,
and bad filters refused with a non-zero exit."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from pathlib import Path

import openpyxl
import pytest
from flask import Flask
from sqlalchemy import select

from course.database import db, utcnow
from course.exports.formats import ExportFormat, export_formats, write_csv
from course.exports.rows import ExportRow
from course.models import ExportRun, Platform
from tests.course.test_exports import World, new_world


@pytest.fixture
def world(app: Flask, make_platform: Callable[..., Platform]) -> World:
    return new_world(make_platform)


@pytest.fixture
def data(world: World) -> World:
    context = world.context("course-1")
    placement = world.placement(context)
    for n in range(4):
        learner = world.learner(f"u-{n}", f"Learnér {n}")
        world.completes(learner, placement, at=utcnow() - timedelta(days=n), score=70 + n)
    world.rostered(context, "r-1", "Never Started")
    db.session.commit()
    return world


def export(app: Flask, *args: str) -> object:
    return app.test_cli_runner().invoke(args=["export", "completions", *args])


def test_a_csv_export_writes_the_file_shows_progress_on_stderr_and_is_logged(app: Flask, data: World,
                                                                             tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    result = export(app, "--format", "csv", "--output", str(target))
    assert result.exit_code == 0, result.output
    assert "Exporting CSV" in result.stderr and "Exporting" not in result.stdout
    assert f"Wrote 5 rows to {target}" in result.stdout
    rows = list(csv.DictReader(io.StringIO(target.read_bytes()[3:].decode())))
    assert sorted(row["learner_id"] for row in rows) == ["r-1", "u-0", "u-1", "u-2", "u-3"]
    assert [path.name for path in tmp_path.iterdir()] == ["out.csv"]  # no temporary file left behind
    run = db.session.scalars(select(ExportRun)).one()
    assert (run.channel, run.status, run.row_count, run.format) == ("cli", "complete", 5, "csv")
    assert run.requested_by.startswith("cli:")


def test_json_and_xlsx_exports_hold_the_same_rows_with_filters(app: Flask, data: World, tmp_path: Path) -> None:
    assert export(app, "--format", "json", "--output", str(tmp_path / "a.json"), "--status", "passed",
                  "--platform", data.platform.issuer, "--context", "course-1").exit_code == 0
    from_json = json.loads((tmp_path / "a.json").read_bytes())
    assert sorted(row["learner_id"] for row in from_json) == ["u-0", "u-1", "u-2", "u-3"]
    assert export(app, "--format", "xlsx", "--output", str(tmp_path / "a.xlsx"), "--status", "passed").exit_code == 0
    workbook = openpyxl.load_workbook(tmp_path / "a.xlsx", read_only=True)
    sheet_rows = list(workbook.worksheets[0].iter_rows(values_only=True))
    workbook.close()
    assert sorted(row[5] for row in sheet_rows[1:]) == ["u-0", "u-1", "u-2", "u-3"]


def test_a_failed_export_leaves_no_file_keeps_an_older_one_and_is_logged_failed(app: Flask, data: World,
                                                                                tmp_path: Path) -> None:
    def breaks_after_two_rows(rows: Iterable[ExportRow]) -> Iterator[bytes]:
        def two_then_fail() -> Iterator[ExportRow]:
            for number, row in enumerate(rows):
                if number == 2:
                    raise OSError("disk full")
                yield row

        yield from write_csv(two_then_fail())

    export_formats(app)["broken"] = ExportFormat("broken", "Broken", "text/csv", "csv", breaks_after_two_rows)
    target = tmp_path / "out.csv"
    target.write_text("yesterday's export\n")

    result = export(app, "--format", "broken", "--output", str(target))

    assert result.exit_code == 1
    # The third row was handed to the writer, which broke on it.
    assert "failed after 3 rows" in result.output and "no file was written" in result.output
    assert target.read_text() == "yesterday's export\n"
    assert [path.name for path in tmp_path.iterdir()] == ["out.csv"]
    run = db.session.scalars(select(ExportRun)).one()
    assert (run.status, run.row_count, run.error) == ("failed", 3, "OSError: disk full")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--format", "pdf"], "use one of: csv, xlsx, json"),
        (["--format", "csv", "--status", "finished"], "'finished' is not a status"),
        (["--format", "csv", "--from", "2026-05-01", "--to", "2026-04-01"], "before it starts"),
        (["--format", "csv", "--from", "soon"], "not a date"),
        (["--format", "csv", "--context", "nowhere"], "No course"),
        (["--format", "csv", "--platform", "https://nowhere.example"], "No platform"),
    ],
)
def test_bad_options_exit_non_zero_with_a_reason_and_write_nothing(app: Flask, data: World, tmp_path: Path,
                                                                    args: list[str], words: str) -> None:
    result = export(app, *args, "--output", str(tmp_path / "out.csv"))
    assert result.exit_code == 2
    assert words in result.output
    assert list(tmp_path.iterdir()) == []
    assert db.session.scalars(select(ExportRun)).all() == []


def test_an_output_folder_that_does_not_exist_is_refused(app: Flask, data: World, tmp_path: Path) -> None:
    result = export(app, "--format", "csv", "--output", str(tmp_path / "missing" / "out.csv"))
    assert result.exit_code == 2 and "does not exist" in result.output
