"""Operator commands: `rebound export completions` and `rebound tokens create|list|revoke`."""

from __future__ import annotations

import getpass
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import click
from flask import current_app
from flask.cli import AppGroup

from course.accounts.services import AccountError, find_platform
from course.commands import database_errors_explained
from course.database import db, utcnow
from course.exports.formats import export_formats
from course.exports.rows import ExportRow, FilterError, estimate_rows, iter_rows, resolve_filters
from course.exports.services import RowCounter, fail_export, failure_reason, finish_export, start_export
from course.exports.tokens import TOKEN_ROLES, TokenError, create_token, list_tokens, revoke_token

export_cli = AppGroup("export", help="Export completion records for HR and auditors.")
tokens_cli = AppGroup("tokens", help="API tokens for HR systems (GET /api/v1/completions).")
OPTION_OF = {"platform": "--platform", "context": "--context", "from": "--from", "to": "--to", "status": "--status"}


@export_cli.command("completions")
@click.option("--format", "format_name", required=True, help="csv, xlsx or json.")
@click.option("--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The file to write.")
@click.option("--platform", "platform_ref", default=None, help="Only this platform (id or issuer); default: all.")
@click.option("--context", default=None, help="Only this course: the LMS's context id (or Rebound's id).")
@click.option("--from", "date_from", default=None, help="First day (YYYY-MM-DD, UTC) of completion or first access.")
@click.option("--to", "date_to", default=None, help="Last day (YYYY-MM-DD, UTC), included.")
@click.option("--status", default=None, help="Only rows with this status (see the README).")
@database_errors_explained
def export_completions(
    format_name: str,
    output: Path,
    platform_ref: str | None,
    context: str | None,
    date_from: str | None,
    date_to: str | None,
    status: str | None,
) -> None:
    """Write every matching row to OUTPUT; the file appears only once it is complete."""
    formats = export_formats(current_app)
    if format_name not in formats:
        raise click.BadParameter(f"use one of: {', '.join(formats)}", param_hint="--format")
    if not output.parent.is_dir():
        raise click.BadParameter(f"the folder {str(output.parent)!r} does not exist", param_hint="--output")
    session = db.session
    given = {"platform": platform_ref, "context": context, "from": date_from, "to": date_to, "status": status}
    try:
        filters = resolve_filters(session, platform_id=None, given=given, may_cross_tenants=True)
    except FilterError as error:
        raise click.BadParameter(error.message, param_hint=OPTION_OF.get(error.field, error.field)) from None
    run = start_export(
        session, filters=filters, format_name=format_name, channel="cli",
        requested_by=f"cli:{_operator()}", now=utcnow(),
    )
    session.commit()
    expected = estimate_rows(session, filters)
    counter = RowCounter(iter_rows(session, filters, now=utcnow()))
    # Written beside the target and renamed at the end: a failed export never leaves a file
    # that looks complete, and an earlier file of the same name stays until the new one is whole.
    handle, partial = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent)
    try:
        with os.fdopen(handle, "wb") as out, click.progressbar(
            length=max(expected, 1), label=f"Exporting {format_name.upper()}", file=sys.stderr,
            show_pos=True,
        ) as bar:
            for chunk in formats[format_name].write(_advancing(counter, bar)):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, output)
    except BaseException as error:
        Path(partial).unlink(missing_ok=True)
        session.rollback()
        fail_export(session, run, reason=failure_reason(error), row_count=counter.count, now=utcnow())
        session.commit()
        if isinstance(error, Exception) and not isinstance(error, click.ClickException):
            raise click.ClickException(
                f"The export failed after {counter.count} rows and no file was written: {failure_reason(error)}"
            ) from None
        raise
    finish_export(session, run, row_count=counter.count, now=utcnow())
    session.commit()
    click.echo(f"Wrote {counter.count} rows to {output} (export {run.id}).")


class _Bar(Protocol):
    def update(self, n_steps: int) -> None: ...


def _advancing(counter: RowCounter, bar: _Bar) -> Iterator[ExportRow]:
    """The counted rows, moving the progress bar every few hundred."""
    done = 0
    for row in counter:
        yield row
        if counter.count - done >= 250:
            bar.update(counter.count - done)
            done = counter.count
    bar.update(max(counter.count - done, 0))


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@tokens_cli.command("create")
@click.option("--platform", "platform_ref", required=True, help="The tenant (platform id or issuer) it may read.")
@click.option("--name", required=True, help="Who uses it, e.g. 'Workday sync'.")
@click.option("--role", type=click.Choice(TOKEN_ROLES), default="hr", show_default=True)
@click.option("--expires-days", type=click.IntRange(min=1), default=None, help="Days until it stops working.")
@database_errors_explained
def tokens_create(platform_ref: str, name: str, role: str, expires_days: int | None) -> None:
    """Make an API token; it is printed once and only its SHA-256 is kept."""
    session = db.session
    try:
        platform = find_platform(session, platform_ref)
        token, secret = create_token(
            session, platform=platform, name=name, role=role, expires_days=expires_days, now=utcnow()
        )
    except (AccountError, TokenError) as error:
        session.rollback()
        raise click.ClickException(str(error)) from None
    session.commit()
    expiry = f", expires {token.expires_at.isoformat(timespec='seconds')}" if token.expires_at else ", no expiry"
    click.echo(f"Token {token.id} ({token.role}) for {platform.name!r}{expiry}. Copy it now; it is not shown again:")
    click.echo(secret)


@tokens_cli.command("list")
@database_errors_explained
def tokens_list() -> None:
    """List tokens (their first characters only, never the token)."""
    tokens = list_tokens(db.session)
    if not tokens:
        click.echo("No API tokens yet. Make one with `rebound tokens create`.")
    now = utcnow()
    for token in tokens:
        if token.revoked_at is not None:
            state = f"revoked {token.revoked_at.isoformat(timespec='seconds')}"
        elif token.expires_at is not None and token.expires_at <= now:
            state = f"expired {token.expires_at.isoformat(timespec='seconds')}"
        else:
            state = "active"
        used = token.last_used_at.isoformat(timespec="seconds") if token.last_used_at else "never used"
        click.echo(f"{token.id}\t{token.prefix}…\t{token.name}\t{token.role}\t{token.platform.name}\t{state}\t{used}")


@tokens_cli.command("revoke")
@click.argument("token_id", type=int)
@database_errors_explained
def tokens_revoke(token_id: int) -> None:
    """Revoke a token at once."""
    try:
        token = revoke_token(db.session, token_id, now=utcnow())
    except TokenError as error:
        raise click.ClickException(str(error)) from None
    db.session.commit()
    click.echo(f"Token {token.id} ({token.name}) is revoked.")
