"""The HR export: its rows (started learners and never-started roster members), filters,
statuses, keyset paging, the three formats agreeing row by row, and the export log."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from flask import Flask
from sqlalchemy import select

from course.database import db
from course.exports import formats as export_formats_module
from course.exports.cells import csv_cell, neutralise
from course.exports.formats import builtin_formats, export_formats, write_csv, write_json, write_xlsx
from course.exports.rows import (
    FIELD_NAMES,
    Cursor,
    ExportFilters,
    ExportRow,
    FilterError,
    due_date,
    iter_rows,
    resolve_filters,
)
from course.exports.services import RowCounter, fail_export, failure_reason, finish_export, start_export
from course.models import (
    CaseAttempt,
    CompletionRecord,
    ContentItem,
    ContentVersion,
    Context,
    ExportRun,
    LessonProgress,
    Placement,
    Platform,
    RosterMember,
    User,
)
from course.statuses import STATUSES

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"
INSTRUCTOR = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"


@dataclass
class World:
    """Builds export data straight through the models, the way other parts will write it."""

    platform: Platform
    version_id: int
    counter: Iterator[int] = field(default_factory=lambda: iter(range(1, 1_000_000)))

    def context(self, lms_id: str = "course-1", title: str | None = "Social media at Acme",
                platform: Platform | None = None) -> Context:
        platform = platform or self.platform
        context = Context(
            platform_id=platform.id, deployment_id=platform.deployments[0].id, lms_context_id=lms_id, title=title
        )
        db.session.add(context)
        db.session.flush()
        return context

    def placement(self, context: Context, link: str | None = None, title: str | None = "Rebound",
                  **settings: Any) -> Placement:
        placement = Placement(
            platform_id=context.platform_id, context_id=context.id,
            resource_link_id=link or f"link-{next(self.counter)}", title=title, settings=settings,
        )
        db.session.add(placement)
        db.session.flush()
        return placement

    def learner(self, sub: str, name: str | None = None, email: str | None = None,
                platform: Platform | None = None) -> User:
        user = User(platform_id=(platform or self.platform).id, sub=sub, name=name, email=email)
        db.session.add(user)
        db.session.flush()
        return user

    def reads(self, user: User, placement: Placement, *, at: datetime, seconds: int = 60,
              slug: str | None = None) -> LessonProgress:
        progress = LessonProgress(
            user_id=user.id, placement_id=placement.id, lesson_slug=slug or f"lesson-{next(self.counter)}",
            content_version_id=self.version_id, first_opened_at=at, last_opened_at=at, last_active_at=at,
            seconds_spent=seconds,
        )
        db.session.add(progress)
        db.session.flush()
        return progress

    def plays(self, user: User, placement: Placement, *, at: datetime, number: int = 1, percent: int | None = None,
              passed: bool | None = None, status: str = "ended", seconds: int = 30) -> CaseAttempt:
        attempt = CaseAttempt(
            user_id=user.id, placement_id=placement.id, case_slug="airline-reply", content_version_id=self.version_id,
            number=number, status=status, started_at=at, percent=percent, passed=passed, seconds_spent=seconds,
        )
        db.session.add(attempt)
        db.session.flush()
        return attempt

    def completes(self, user: User, placement: Placement, *, at: datetime, status: str = "passed",
                  score: int | None = 90, sequence: int = 1, valid_until: datetime | None = None,
                  versions: dict[str, Any] | None = None) -> CompletionRecord:
        context = db.session.get(Context, placement.context_id)
        assert context is not None
        record = CompletionRecord(
            public_id=str(uuid.uuid4()), platform_id=placement.platform_id, user_id=user.id,
            placement_id=placement.id, sequence=sequence, learner_sub=user.sub, learner_name=user.name,
            learner_email=user.email, context_lms_id=context.lms_context_id, context_title=context.title,
            resource_link_id=placement.resource_link_id, status=status, score_percent=score, case_attempts=1,
            seconds_spent=120, completed_at=at, valid_until=valid_until,
            content_versions=versions if versions is not None else {"lesson:own-apologise-well": 2},
        )
        db.session.add(record)
        db.session.flush()
        return record

    def rostered(self, context: Context, sub: str, name: str | None = None, email: str | None = None,
                 roles: list[str] | None = None, status: str = "Active") -> RosterMember:
        member = RosterMember(
            platform_id=context.platform_id, context_id=context.id, sub=sub, name=name, email=email,
            roles=[LEARNER] if roles is None else roles, status=status,
        )
        db.session.add(member)
        db.session.flush()
        return member


def new_world(make_platform: Callable[..., Platform]) -> World:
    """An empty tenant with one content version that progress rows can name."""
    item = ContentItem(platform_id=None, kind="lesson", slug=f"export-test-{uuid.uuid4().hex[:6]}")
    item.versions.append(ContentVersion(number=1, title="A lesson", source="# A lesson", checksum="0" * 64))
    db.session.add(item)
    db.session.flush()
    return World(platform=make_platform(name="Acme Moodle"), version_id=item.versions[0].id)


@pytest.fixture
def world(app: Flask, make_platform: Callable[..., Platform]) -> World:
    """An empty tenant to fill with export data."""
    return new_world(make_platform)


def rows_of(filters: ExportFilters, **options: Any) -> list[ExportRow]:
    return list(iter_rows(db.session, filters, now=NOW, **options))


def by_learner(rows: list[ExportRow]) -> dict[str, ExportRow]:
    return {row.learner_id: row for row in rows}


def test_a_learner_who_completed_gets_one_row_with_every_field(world: World) -> None:
    context = world.context()
    placement = world.placement(context, link="link-a", title="Rebound course", due_at="2026-07-01T00:00:00+00:00")
    ada = world.learner("u-ada", "Ada Lovelace", "ada@example.com")
    world.reads(ada, placement, at=NOW - timedelta(days=3, hours=2), seconds=300)
    world.plays(ada, placement, at=NOW - timedelta(days=2), percent=80, passed=True, seconds=200)
    record = world.completes(ada, placement, at=NOW - timedelta(days=1), score=85,
                             versions={"lesson:own-apologise-well": 2, "case:airline-reply": 1})

    [row] = rows_of(ExportFilters(platform_id=world.platform.id))

    assert row.as_dict() == {
        "platform": "Acme Moodle",
        "context_id": "course-1",
        "context_title": "Social media at Acme",
        "resource_link_id": "link-a",
        "placement_title": "Rebound course",
        "learner_id": "u-ada",
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "status": "passed",
        "due_at": "2026-07-01T00:00:00+00:00",
        "score_percent": 85,
        "attempts": 1,
        "first_access": "2026-06-12T10:00:00+00:00",
        "completed_at": "2026-06-14T12:00:00+00:00",
        "valid_until": None,
        "time_zone": "UTC",
        "time_spent_seconds": 500,
        "content_versions": "case:airline-reply=1; lesson:own-apologise-well=2",
        "completion_record_id": record.public_id,
    }
    assert tuple(row.as_dict()) == FIELD_NAMES


def test_the_latest_completion_record_counts_when_a_learner_retook_the_course(world: World) -> None:
    placement = world.placement(world.context())
    ada = world.learner("u-ada")
    world.completes(ada, placement, at=NOW - timedelta(days=400), score=70, sequence=1)
    latest = world.completes(ada, placement, at=NOW - timedelta(days=10), score=95, sequence=2)

    [row] = rows_of(ExportFilters(platform_id=world.platform.id))

    assert (row.completion_record_id, row.score_percent) == (latest.public_id, 95)


def test_a_learner_the_lms_sent_no_name_for_shows_the_name_on_their_record(world: World) -> None:
    placement = world.placement(world.context())
    record = world.completes(world.learner("u-anon"), placement, at=NOW - timedelta(days=1))
    record.learner_name, record.learner_email = "Named At Completion", "named@example.com"
    db.session.flush()

    [row] = rows_of(ExportFilters(platform_id=world.platform.id))

    assert (row.name, row.email) == ("Named At Completion", "named@example.com")


def test_roster_members_who_never_started_get_a_not_started_row(world: World) -> None:
    context = world.context()
    placement = world.placement(context)
    started = world.learner("u-started", "Started Person")
    world.reads(started, placement, at=NOW - timedelta(days=1))
    world.rostered(context, "u-started", "Started Person")
    world.rostered(context, "u-never", "Zoë Ñúñez", "zoe@example.com")
    world.learner("u-launched-only", "Launched Only")  # a user row, nothing done: still never started
    world.rostered(context, "u-launched-only", "Launched Only")
    world.rostered(context, "u-teacher", "A Teacher", roles=[INSTRUCTOR])
    world.rostered(context, "u-gone", "Left The Course", status="Deleted")

    rows = by_learner(rows_of(ExportFilters(platform_id=world.platform.id)))

    assert set(rows) == {"u-started", "u-never", "u-launched-only"}
    assert rows["u-started"].status == "in progress"
    never = rows["u-never"]
    assert (never.status, never.name, never.email, never.attempts, never.time_spent_seconds) == (
        "not started", "Zoë Ñúñez", "zoe@example.com", 0, 0)
    assert never.first_access is None and never.completed_at is None and never.completion_record_id is None
    assert rows["u-launched-only"].status == "not started"


def test_a_roster_member_gets_a_row_for_each_placement_of_their_course(world: World) -> None:
    context = world.context()
    first, second = world.placement(context, link="a"), world.placement(context, link="b")
    world.placement(world.context("other-course"), link="c")
    world.rostered(context, "u-never")

    rows = rows_of(ExportFilters(platform_id=world.platform.id))

    assert sorted(row.resource_link_id for row in rows) == [first.resource_link_id, second.resource_link_id]


@pytest.mark.parametrize(
    ("facts", "status"),
    [
        ({}, "not started"),
        ({"read": True}, "in progress"),
        ({"record": "completed"}, "completed"),
        ({"record": "passed"}, "passed"),
        ({"record": "failed"}, "failed"),
        ({"read": True, "due": "2026-06-01"}, "overdue"),
        ({"due": "2026-06-01"}, "overdue"),
        ({"record": "passed", "valid_until": NOW - timedelta(days=1)}, "expired"),
        ({"record": "passed", "valid_until": NOW + timedelta(days=1)}, "passed"),
        ({"record": "passed", "due": "2026-06-01"}, "passed"),
    ],
)
def test_statuses_follow_the_one_definition_in_course_statuses(world: World, facts: dict[str, Any],
                                                               status: str) -> None:
    context = world.context()
    placement = world.placement(context, **({"due_at": facts["due"]} if "due" in facts else {}))
    learner = world.learner("u-1")
    world.rostered(context, "u-1")
    if facts.get("read"):
        world.reads(learner, placement, at=NOW - timedelta(days=2))
    if "record" in facts:
        world.completes(learner, placement, at=NOW - timedelta(days=1), status=facts["record"],
                        valid_until=facts.get("valid_until"))

    [row] = rows_of(ExportFilters(platform_id=world.platform.id))

    assert row.status == status
    assert row.status in STATUSES


def test_a_due_date_is_read_from_the_placement_settings_and_a_bare_date_means_the_end_of_that_day() -> None:
    assert due_date({"due_at": "2026-06-30"}) == datetime(2026, 6, 30, 23, 59, 59, tzinfo=UTC)
    assert due_date({"due_at": "2026-06-30T09:00:00+02:00"}) == datetime(2026, 6, 30, 7, 0, tzinfo=UTC)
    assert due_date({"due_at": "2026-06-30T09:00:00"}) == datetime(2026, 6, 30, 9, 0, tzinfo=UTC)
    assert due_date({"due_at": "next friday"}) is None
    assert due_date({}) is None and due_date(None) is None


def test_another_tenant_s_learners_and_rosters_never_appear(world: World,
                                                          make_platform: Callable[..., Platform]) -> None:
    other = make_platform(name="Other LMS")
    mine = world.placement(world.context())
    theirs_context = world.context("course-1", platform=other)
    theirs = world.placement(theirs_context)
    world.reads(world.learner("u-mine"), mine, at=NOW)
    world.reads(world.learner("u-theirs", platform=other), theirs, at=NOW)
    world.rostered(theirs_context, "u-their-roster")

    assert [row.learner_id for row in rows_of(ExportFilters(platform_id=world.platform.id))] == ["u-mine"]
    assert {row.learner_id for row in rows_of(ExportFilters(platform_id=None))} == {
        "u-mine", "u-theirs", "u-their-roster"}


def test_filters_by_context_status_and_date_range(world: World) -> None:
    course = world.context("course-1")
    other = world.context("course-2")
    here, there = world.placement(course), world.placement(other)
    early, late, busy = world.learner("u-early"), world.learner("u-late"), world.learner("u-busy")
    world.completes(early, here, at=datetime(2026, 3, 1, 23, 30, tzinfo=UTC))
    world.completes(late, here, at=datetime(2026, 5, 2, 8, 0, tzinfo=UTC))
    world.reads(busy, there, at=datetime(2026, 3, 5, 9, 0, tzinfo=UTC))
    world.rostered(course, "u-never")

    def learners(**given: str) -> list[str]:
        filters = resolve_filters(db.session, platform_id=world.platform.id, given=given, may_cross_tenants=False)
        return sorted(row.learner_id for row in rows_of(filters))

    assert learners(context="course-1") == ["u-early", "u-late", "u-never"]
    assert learners(context="course-2") == ["u-busy"]
    assert learners(status="passed") == ["u-early", "u-late"]
    assert learners(status="not started") == ["u-never"]
    assert learners(status="in progress") == ["u-busy"]
    # Both ends are whole UTC days, included; first access stands in for a completion time.
    assert learners(**{"from": "2026-03-01", "to": "2026-03-31"}) == ["u-busy", "u-early"]
    assert learners(**{"from": "2026-03-02"}) == ["u-busy", "u-late"]
    assert learners(to="2026-03-01") == ["u-early"]
    assert learners(status="passed", **{"from": "2026-04-01"}, context="course-1") == ["u-late"]


@pytest.mark.parametrize(
    ("given", "field_name", "words"),
    [
        ({"status": "finished"}, "status", "not a status"),
        ({"context": "no-such-course"}, "context", "No course"),
        ({"from": "2026-05-01", "to": "2026-04-01"}, "to", "before it starts"),
        ({"from": "last tuesday"}, "from", "not a date"),
        ({"to": "2026-13-45"}, "to", "not a date"),
        ({"platform": "999999"}, "platform", "only export your own platform"),
    ],
)
def test_unusable_filter_values_are_refused_with_a_reason(world: World, given: dict[str, str], field_name: str,
                                                          words: str) -> None:
    with pytest.raises(FilterError) as caught:
        resolve_filters(db.session, platform_id=world.platform.id, given=given, may_cross_tenants=False)
    assert caught.value.field == field_name
    assert words in caught.value.message


def test_a_context_of_another_tenant_is_unknown_to_this_one(world: World,
                                                            make_platform: Callable[..., Platform]) -> None:
    world.context("their-course", platform=make_platform())
    with pytest.raises(FilterError, match="No course"):
        resolve_filters(db.session, platform_id=world.platform.id, given={"context": "their-course"},
                        may_cross_tenants=False)


def test_an_admin_names_a_platform_by_id_or_issuer_and_an_unknown_one_is_refused(world: World) -> None:
    by_issuer = resolve_filters(db.session, platform_id=None, given={"platform": world.platform.issuer},
                                may_cross_tenants=True)
    by_id = resolve_filters(db.session, platform_id=None, given={"platform": str(world.platform.id)},
                            may_cross_tenants=True)
    assert by_issuer.platform_id == by_id.platform_id == world.platform.id
    with pytest.raises(FilterError, match="No platform"):
        resolve_filters(db.session, platform_id=None, given={"platform": "https://nowhere"}, may_cross_tenants=True)


def test_keyset_paging_resumes_exactly_after_the_cursor_across_page_and_pass_boundaries(world: World) -> None:
    context = world.context()
    placements = [world.placement(context, link=f"p{n}") for n in range(3)]
    for n in range(7):
        learner = world.learner(f"u-{n}")
        for placement in placements[: 1 + n % 3]:
            world.reads(learner, placement, at=NOW - timedelta(hours=n))
    for n in range(5):
        world.rostered(context, f"r-{n}")
    filters = ExportFilters(platform_id=world.platform.id)
    everything = rows_of(filters, batch_size=2)
    assert len(everything) == sum(1 + n % 3 for n in range(7)) + 5 * 3
    assert rows_of(filters, batch_size=1000) == everything

    for start in range(len(everything)):
        cursor = Cursor.decode(everything[start].cursor.encode())
        assert rows_of(filters, after=cursor, batch_size=3) == everything[start + 1:]


@pytest.mark.parametrize("text", ["", "x12.3", "l12", "l.3", "l12.3; drop", "r-1.2", "l1.2.3"])
def test_a_cursor_that_was_not_handed_out_is_refused(text: str) -> None:
    with pytest.raises(FilterError, match="not a cursor"):
        Cursor.decode(text)


def sample_rows(world: World) -> list[ExportRow]:
    """Rows with hostile text, accents, empty cells and numbers."""
    context = world.context("=cmd|' /C calc'!A0", title="+Sales, \"Q3\"\nteam")
    placement = world.placement(context, title="@SUM(1+1)", due_at="2026-12-31")
    evil = world.learner("-2+3", "=HYPERLINK(\"http://evil\",\"x\")", "\tmail@example.com")
    world.completes(evil, placement, at=NOW - timedelta(days=1), score=100)
    ren = world.learner("u-renée", "Renée Ørsted", "renee@example.com")
    world.plays(ren, placement, at=NOW - timedelta(days=1), percent=40, passed=False, status="ended")
    world.rostered(context, "u-carriage", "\rcarriage start")
    world.rostered(context, "u-plain", None, None)
    rows = rows_of(ExportFilters(platform_id=world.platform.id))
    # PostgreSQL refuses NUL in text, but an export must stay safe whatever a row holds.
    return [*rows, replace(rows[-1], name="\0null start")]


def csv_table(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(data[3:].decode("utf-8"), newline="")))


def xlsx_table(data: bytes, tmp_path: Path) -> list[list[Any]]:
    path = tmp_path / "export.xlsx"
    path.write_bytes(data)
    workbook = openpyxl.load_workbook(path, read_only=True)
    rows = [[_unescape(cell) for cell in row] for sheet in workbook.worksheets for row in sheet.iter_rows(values_only=True)]
    workbook.close()
    return rows


def _unescape(cell: Any) -> Any:
    """OOXML writes control characters as `_xHHHH_`; Excel reads them back, openpyxl leaves them."""
    if not isinstance(cell, str):
        return cell
    return re.sub(r"_x([0-9A-F]{4})_", lambda match: chr(int(match[1], 16)), cell)


def test_csv_xlsx_and_json_agree_row_by_row(world: World, tmp_path: Path) -> None:
    rows = sample_rows(world)
    assert len(rows) == 5
    from_csv = csv_table(b"".join(write_csv(rows)))
    from_xlsx = xlsx_table(b"".join(write_xlsx(rows)), tmp_path)
    from_json = json.loads(b"".join(write_json(rows)))

    assert from_csv[0] == list(FIELD_NAMES) == [str(name) for name in from_xlsx[0]]
    assert len(from_csv) == len(from_xlsx) == len(from_json) + 1
    for row, csv_row, xlsx_row, json_row in zip(rows, from_csv[1:], from_xlsx[1:], from_json, strict=True):
        assert json_row == row.as_dict()
        # Spreadsheets get the same values, text neutralised, blanks for None, numbers as numbers.
        expected = [csv_cell(value) for value in row.values()]
        assert csv_row == expected
        assert ["" if cell is None else str(cell) for cell in xlsx_row] == expected
        for (name, kind), cell in zip(export_formats_module.FIELDS, xlsx_row, strict=True):
            value = row.as_dict()[name]
            if kind == "number":
                assert cell == value and not isinstance(cell, str)


def test_text_that_a_spreadsheet_would_run_is_neutralised_in_csv_and_xlsx_alike(world: World,
                                                                                tmp_path: Path) -> None:
    rows = sample_rows(world)
    cells_csv = [cell for row in csv_table(b"".join(write_csv(rows)))[1:] for cell in row]
    cells_xlsx = [cell for row in xlsx_table(b"".join(write_xlsx(rows)), tmp_path)[1:] for cell in row]
    for cells in (cells_csv, [cell for cell in cells_xlsx if isinstance(cell, str)]):
        assert not [cell for cell in cells if cell[:1] in {"=", "+", "-", "@", "\t", "\r", "\0"}]
        assert "'=cmd|' /C calc'!A0" in cells
        assert "'@SUM(1+1)" in cells
        assert "'-2+3" in cells
        assert "'\tmail@example.com" in cells
        assert "'\0null start" in cells
        assert "'\rcarriage start" in cells
        assert "Renée Ørsted" in cells
    assert 100 in cells_xlsx and 40 in cells_xlsx  # scores stay numbers


def test_the_xlsx_is_written_in_constant_memory_and_continues_on_a_new_sheet_when_one_is_full(
    world: World, tmp_path: Path
) -> None:
    rows = sample_rows(world)
    path = tmp_path / "split.xlsx"
    path.write_bytes(b"".join(write_xlsx(rows, max_rows=3)))
    workbook = openpyxl.load_workbook(path, read_only=True)
    sheets = [[list(row) for row in sheet.iter_rows(values_only=True)] for sheet in workbook.worksheets]
    workbook.close()
    assert [len(sheet) for sheet in sheets] == [3, 3, 2]
    assert all(sheet[0][0] == "platform" for sheet in sheets)


@pytest.mark.parametrize("value", ["=1+1", "+1", "-", "@x", "\tx", "\rx", "\0x", "-1+2", "-5", "+3.25", "plain", ""])
def test_the_shared_neutraliser_agrees_with_the_case_analytics_csv(value: str) -> None:
    from quizzes.analytics import csv_cell as analytics_cell

    assert neutralise(value) == csv_cell(value) == analytics_cell(value)


def test_csv_has_a_byte_order_mark_and_crlf_lines_for_excel(world: World) -> None:
    data = b"".join(write_csv(sample_rows(world)))
    assert data.startswith(b"\xef\xbb\xbfplatform,context_id,")
    assert data.split(b"\n")[0].endswith(b"\r")
    assert "Renée Ørsted".encode() in data


def test_an_empty_export_is_still_a_well_formed_file_in_every_format(tmp_path: Path) -> None:
    assert csv_table(b"".join(write_csv([]))) == [list(FIELD_NAMES)]
    assert json.loads(b"".join(write_json([]))) == []
    assert xlsx_table(b"".join(write_xlsx([])), tmp_path) == [list(FIELD_NAMES)]


def test_every_time_is_iso_8601_with_an_offset_and_a_time_zone_column_says_which(world: World) -> None:
    for row in sample_rows(world):
        assert row.time_zone == "UTC"
        for moment in (row.due_at, row.first_access, row.completed_at):
            if moment is not None:
                assert moment.endswith("+00:00")
                assert datetime.fromisoformat(moment).utcoffset() == timedelta(0)


def test_the_format_registry_lives_on_the_app_and_names_each_writer(app: Flask) -> None:
    registry = export_formats(app)
    assert app.extensions["rebound.export_formats"] is registry
    assert set(registry) == {"csv", "xlsx", "json"} == set(builtin_formats())
    assert registry["xlsx"].extension == "xlsx" and registry["csv"].mimetype.startswith("text/csv")


def test_a_finished_export_is_logged_complete_with_its_row_count_and_filters(world: World) -> None:
    placement = world.placement(world.context())
    for n in range(3):
        world.reads(world.learner(f"u-{n}"), placement, at=NOW)
    filters = resolve_filters(db.session, platform_id=world.platform.id, given={"status": "in progress"},
                              may_cross_tenants=False)
    run = start_export(db.session, filters=filters, format_name="csv", channel="cli", requested_by="cli:ops", now=NOW)
    assert run.status == "running"
    counter = RowCounter(iter_rows(db.session, filters, now=NOW))
    b"".join(write_csv(counter))
    finish_export(db.session, run, row_count=counter.count, now=NOW)

    stored = db.session.scalar(select(ExportRun).where(ExportRun.id == run.id))
    assert stored is not None
    assert (stored.status, stored.row_count, stored.channel, stored.requested_by) == ("complete", 3, "cli", "cli:ops")
    assert stored.filters == {"platform_id": world.platform.id, "status": "in progress"}
    assert stored.platform_id == world.platform.id and stored.finished_at is not None


def test_an_export_that_breaks_midway_is_logged_failed_never_complete(world: World) -> None:
    placement = world.placement(world.context())
    for n in range(5):
        world.reads(world.learner(f"u-{n}"), placement, at=NOW)
    filters = ExportFilters(platform_id=world.platform.id)
    run = start_export(db.session, filters=filters, format_name="json", channel="web", requested_by="x", now=NOW)

    def breaking() -> Iterator[ExportRow]:
        for number, row in enumerate(iter_rows(db.session, filters, now=NOW)):
            if number == 2:
                raise ConnectionError("database went away")
            yield row

    counter = RowCounter(breaking())
    with pytest.raises(ConnectionError) as caught:
        b"".join(write_json(counter))
    fail_export(db.session, run, reason=failure_reason(caught.value), row_count=counter.count, now=NOW)

    assert (run.status, run.row_count) == ("failed", 2)
    assert run.error == "ConnectionError: database went away"
    assert failure_reason(GeneratorExit()) == "the download was interrupted before the file was finished"


def test_an_unknown_channel_is_a_programming_error(world: World) -> None:
    with pytest.raises(ValueError, match="channel"):
        start_export(db.session, filters=ExportFilters(platform_id=None), format_name="csv", channel="email",
                     requested_by="x", now=NOW)


def test_dates_are_whole_utc_days(world: World) -> None:
    filters = resolve_filters(db.session, platform_id=world.platform.id,
                              given={"from": "2026-01-01T23:30:00-02:00", "to": "2026-01-31"}, may_cross_tenants=False)
    assert (filters.date_from, filters.date_to) == (date(2026, 1, 2), date(2026, 1, 31))
