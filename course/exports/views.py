"""The HR export page: filters, a preview of the first rows, and streamed downloads."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from flask import Blueprint, Response, g, render_template, stream_with_context
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import Session
from wtforms.fields.choices import SelectChoice

from course.access import allow, current_platform_id
from course.database import db, utcnow
from course.exports.formats import ExportFormat, export_formats
from course.exports.forms import ExportFilterForm
from course.exports.rows import ExportFilters, ExportRow, FilterError, iter_rows, resolve_filters
from course.exports.services import RowCounter, fail_export, failure_reason, finish_export, start_export
from course.models import Context, ExportRun, Platform

bp = Blueprint("exports", __name__, url_prefix="/hr/exports")
PREVIEW_ROWS = 50
FORM_FIELDS = {"platform": "platform", "context": "context", "from": "date_from", "to": "date_to", "status": "status"}


def requested_by() -> str:
    """Who is exporting, as the export log records them."""
    username = getattr(current_user, "username", None)
    if username:
        return f"account:{username}"
    sub = getattr(current_user, "sub", None)
    if sub is not None:
        return f"lti:{current_user.platform_id}:{sub}"
    name = getattr(current_user, "name", None)
    return f"token:{getattr(current_user, 'token_id', '?')}:{name}"


def deliver(
    session: Session, run: ExportRun, fmt: ExportFormat, rows: Iterable[ExportRow], *, filename: str,
    headers: dict[str, str] | None = None,
) -> Response:
    """Stream an export's file; the run is `complete` only after the last byte was handed over.

    An error or a client that goes away marks it `failed`, and the response is cut short
    (the connection closes without the final chunk), so no browser keeps it as a whole file.
    """
    counter = RowCounter(rows)
    run_id = run.id

    def generate() -> Iterator[bytes]:
        # The server streams after the request's teardown closed its session, so `run` is
        # detached by now: the outcome is written on a freshly loaded row, and the session
        # (reopened by the rows query) is closed here when no teardown is left to do it.
        try:
            try:
                yield from fmt.write(counter)
            except BaseException as error:
                session.rollback()
                fail_export(session, _live(session, run_id), reason=failure_reason(error),
                            row_count=counter.count, now=utcnow())
                session.commit()
                raise
            finish_export(session, _live(session, run_id), row_count=counter.count, now=utcnow())
            session.commit()
        finally:
            if session is not g.get("db_session"):  # the request's teardown let go of it
                session.close()

    response = Response(stream_with_context(generate()), content_type=fmt.mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}.{fmt.extension}"'
    response.headers["X-Export-Id"] = str(run.id)
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _live(session: Session, run_id: int) -> ExportRun:
    run = session.get(ExportRun, run_id)
    assert run is not None, "an export run is never deleted while it streams"
    return run


def _tenant_choices(form: ExportFilterForm, tenant: int | None) -> None:
    session = db.session
    if tenant is None:
        platforms = session.execute(select(Platform.id, Platform.name).order_by(Platform.name, Platform.id)).all()
        form.platform.choices = [
            SelectChoice("", "All platforms"), *(SelectChoice(str(pid), name) for pid, name in platforms)
        ]
    contexts = select(Context.id, Context.title, Context.lms_context_id).order_by(Context.title, Context.id)
    if tenant is not None:
        contexts = contexts.where(Context.platform_id == tenant)
    form.context.choices = [
        SelectChoice("", "All courses"),
        *(SelectChoice(str(cid), f"{title or lms_id} ({lms_id})") for cid, title, lms_id in session.execute(contexts)),
    ]


def _recent_runs(tenant: int | None) -> list[ExportRun]:
    query = select(ExportRun).order_by(ExportRun.started_at.desc(), ExportRun.id.desc()).limit(10)
    if tenant is not None:
        query = query.where(ExportRun.platform_id == tenant)
    return list(db.session.scalars(query))


@bp.route("/", methods=["GET", "POST"])
@allow("hr", "admin")
def index() -> Any:
    tenant = current_platform_id()
    form = ExportFilterForm()
    _tenant_choices(form, tenant)
    filters: ExportFilters | None = None
    status = 200
    if form.is_submitted():
        filters = _checked_filters(form, tenant)
        status = 200 if filters is not None else 400
    else:
        filters = ExportFilters(platform_id=tenant)
    if filters is not None and (name := form.chosen_format()) is not None:
        fmt = export_formats()[name]
        run = start_export(
            db.session, filters=filters, format_name=name, channel="web", requested_by=requested_by(), now=utcnow()
        )
        db.session.commit()
        now = utcnow()
        return deliver(
            db.session, run, fmt, iter_rows(db.session, filters, now=now),
            filename=f"rebound-completions-{now:%Y%m%d-%H%M%S}",
        )
    preview: list[ExportRow] = []
    more = False
    if filters is not None:
        rows = list(islice(iter_rows(db.session, filters, now=utcnow()), PREVIEW_ROWS + 1))
        preview, more = rows[:PREVIEW_ROWS], len(rows) > PREVIEW_ROWS
    page = render_template(
        "exports/index.html",
        form=form,
        cross_tenant=tenant is None,
        preview=preview,
        more=more,
        shown=filters is not None,
        runs=_recent_runs(tenant),
    )
    return page, status


def _checked_filters(form: ExportFilterForm, tenant: int | None) -> ExportFilters | None:
    """The form's filters, or None with the problems attached to their fields."""
    if not form.validate():
        return None
    try:
        return resolve_filters(db.session, platform_id=tenant, given=form.given(), may_cross_tenants=tenant is None)
    except FilterError as error:
        getattr(form, FORM_FIELDS.get(error.field, "status")).errors = [error.message]
        return None
