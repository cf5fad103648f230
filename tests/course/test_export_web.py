"""The HR export page: HR and admins of the tenant only, filters with inline errors, a preview,
and downloads that stream the whole result and are logged."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from course.database import db, utcnow
from course.models import ExportRun, LocalAccount, Platform
from tests.conftest import DEFAULT_PASSWORD, LEARNER_ROLE
from tests.course.test_exports import World, new_world
from tests.helpers import csrf_token_from, sign_in

PAGE = "/hr/exports/"


@pytest.fixture
def world(app: Flask, make_platform: Callable[..., Platform]) -> World:
    return new_world(make_platform)


@pytest.fixture
def hr(app: Flask, world: World, make_account: Callable[..., LocalAccount]) -> FlaskClient:
    """A browser signed in as HR of the world's tenant, with two learners and a roster member."""
    context = world.context()
    placement = world.placement(context, title="Rebound course")
    ada = world.learner("u-ada", "Ada Lovelace", "ada@example.com")
    world.completes(ada, placement, at=utcnow() - timedelta(days=1), score=90)
    world.reads(world.learner("u-bo", "Bo Renée"), placement, at=utcnow() - timedelta(days=2))
    world.rostered(context, "u-never", "Never Started")
    db.session.commit()
    make_account(username="hr.acme", role="hr", platform=world.platform)
    client = app.test_client()
    assert sign_in(client, "hr.acme", DEFAULT_PASSWORD).status_code == 302
    return client


def post(client: FlaskClient, **data: str) -> Any:
    token = csrf_token_from(client.get(PAGE).get_data(as_text=True))
    return client.post(PAGE, data={"csrf_token": token, **data})


def test_hr_sees_the_filters_and_a_preview_of_every_row_including_never_started(hr: FlaskClient) -> None:
    page = hr.get(PAGE)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'name="csrf_token"' in html and 'type="date"' in html
    for text in ("Ada Lovelace", "Bo Renée", "Never Started", "not started", "in progress", "passed"):
        assert text in html
    assert 'name="platform"' not in html  # HR works in one tenant; only admins choose
    assert "3 rows" in html


def test_the_preview_follows_the_filters(hr: FlaskClient) -> None:
    html = post(hr, status="not started", preview="Preview").get_data(as_text=True)
    assert "Never Started" in html and "Ada Lovelace" not in html
    assert "1 row:" in html


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"date_from": "2026-05-01", "date_to": "2026-04-01"}, "before it starts"),
        ({"status": "finished"}, "is not a status"),
        ({"context": "999999"}, "No course (context)"),
        ({"date_from": "not-a-date"}, "Not a valid date value"),
        ({"platform": "999999"}, "only export your own platform"),
    ],
)
def test_bad_filters_get_an_inline_error_and_no_download(hr: FlaskClient, data: dict[str, str], message: str) -> None:
    response = post(hr, csv="Download CSV", **data)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert message in html and 'role="alert"' in html
    if "platform" not in data:  # HR has no platform field; the summary above the form says it
        assert 'class="field-error"' in html and 'aria-invalid="true"' in html
    assert db.session.scalars(select(ExportRun)).all() == []


def test_a_csv_download_streams_every_row_and_is_logged_complete(hr: FlaskClient) -> None:
    response = post(hr, csv="Download CSV")
    assert response.status_code == 200
    assert response.is_streamed
    assert response.headers["Content-Disposition"].startswith('attachment; filename="rebound-completions-')
    data = response.get_data()
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(data[3:].decode())))
    assert sorted(row["learner_id"] for row in rows) == ["u-ada", "u-bo", "u-never"]
    run = db.session.scalar(select(ExportRun).where(ExportRun.id == int(response.headers["X-Export-Id"])))
    assert run is not None
    db.session.refresh(run)
    assert (run.status, run.row_count, run.channel, run.format, run.requested_by) == (
        "complete", 3, "web", "csv", "account:hr.acme")


def test_json_and_xlsx_downloads_carry_the_same_rows(hr: FlaskClient) -> None:
    as_json = json.loads(post(hr, json="Download JSON", status="passed").get_data())
    assert [row["learner_id"] for row in as_json] == ["u-ada"]
    xlsx = post(hr, xlsx="Download XLSX")
    assert xlsx.status_code == 200 and xlsx.get_data()[:2] == b"PK"  # a zip, as every XLSX is
    assert xlsx.mimetype.endswith("spreadsheetml.sheet")


def test_the_filter_form_refuses_a_post_without_its_csrf_token(hr: FlaskClient) -> None:
    response = hr.post(PAGE, data={"csv": "Download CSV"})
    assert response.status_code == 400
    assert db.session.scalars(select(ExportRun)).all() == []


def test_a_learner_launched_from_the_lms_is_refused(launch_as: Callable[..., Any]) -> None:
    learner, _ = launch_as(sub="learner-9", role=LEARNER_ROLE)
    assert learner.get(PAGE).status_code == 403


def test_a_trainer_account_is_refused_and_a_signed_out_visitor_is_sent_to_sign_in(
    app: Flask, make_account: Callable[..., LocalAccount]
) -> None:
    make_account(username="trainer.t", role="trainer")
    trainer = app.test_client()
    sign_in(trainer, "trainer.t", DEFAULT_PASSWORD)
    assert trainer.get(PAGE).status_code == 403
    visitor = app.test_client().get(PAGE)
    assert visitor.status_code == 302 and "/auth/login" in visitor.headers["Location"]


def test_hr_of_another_tenant_sees_none_of_these_rows(
    app: Flask, hr: FlaskClient, make_account: Callable[..., LocalAccount]
) -> None:
    make_account(username="hr.other", role="hr")
    other = app.test_client()
    sign_in(other, "hr.other", DEFAULT_PASSWORD)
    html = other.get(PAGE).get_data(as_text=True)
    assert "No rows match these filters." in html and "Ada Lovelace" not in html
    assert json.loads(post(other, json="Download JSON").get_data()) == []


def test_an_admin_chooses_a_platform_or_exports_every_tenant(
    app: Flask, hr: FlaskClient, world: World, make_account: Callable[..., LocalAccount],
    make_platform: Callable[..., Platform],
) -> None:
    other = make_platform(name="Other LMS")
    world.reads(world.learner("u-other", "Other Person", platform=other),
                world.placement(world.context(platform=other)), at=utcnow())
    db.session.commit()
    make_account(username="root", role="admin")
    admin = app.test_client()
    sign_in(admin, "root", DEFAULT_PASSWORD)
    html = admin.get(PAGE).get_data(as_text=True)
    assert 'name="platform"' in html and "Other Person" in html and "Ada Lovelace" in html
    only_other = json.loads(post(admin, json="Download JSON", platform=str(other.id)).get_data())
    assert [row["learner_id"] for row in only_other] == ["u-other"]
    run = db.session.scalars(select(ExportRun).order_by(ExportRun.id.desc())).first()
    assert run is not None and run.platform_id == other.id


def test_a_download_that_breaks_midway_is_cut_off_and_logged_failed(app: Flask, hr: FlaskClient) -> None:
    from course.exports.formats import ExportFormat, export_formats, write_csv

    def breaks(rows: Any) -> Any:
        def one_then_fail() -> Any:
            for number, row in enumerate(rows):
                if number == 1:
                    raise RuntimeError("database went away")
                yield row

        yield from write_csv(one_then_fail())

    export_formats(app)["csv"] = ExportFormat("csv", "CSV", "text/csv", "csv", breaks)
    response = post(hr, csv="Download CSV")
    assert response.status_code == 200  # the headers went out before the rows did
    with pytest.raises(RuntimeError, match="database went away"):
        response.get_data()
    run = db.session.scalars(select(ExportRun)).one()
    db.session.refresh(run)
    assert (run.status, run.error) == ("failed", "RuntimeError: database went away")
    assert run.row_count == 2


def test_a_download_streamed_after_the_request_ended_is_still_logged_complete(world: World) -> None:
    """Real servers stream the file after the request's teardown closed its session."""
    from course.exports.formats import export_formats
    from course.exports.rows import ExportFilters, iter_rows
    from course.exports.services import start_export
    from course.exports.views import deliver

    placement = world.placement(world.context())
    for n in range(3):
        world.reads(world.learner(f"streamed-{n}"), placement, at=utcnow())
    filters = ExportFilters(platform_id=world.platform.id)
    run = start_export(db.session, filters=filters, format_name="csv", channel="web", requested_by="hr", now=utcnow())
    db.session.commit()
    response = deliver(db.session, run, export_formats()["csv"], iter_rows(db.session, filters, now=utcnow()),
                       filename="out")
    db.session.close()  # what the app context's teardown does before a server streams the body
    body = b"".join(response.response)

    assert body.count(b"\r\n") == 4  # the header and three learners
    stored = db.session.scalar(select(ExportRun).where(ExportRun.id == run.id))
    assert stored is not None and (stored.status, stored.row_count) == ("complete", 3)
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
