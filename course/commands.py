"""Operator commands: serve, migrate, accounts, settings (on `rebound` and on `flask --app`)."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from course import migrate
from course.accounts.services import AccountError, create_account, find_platform
from course.config import SETTINGS, Settings, redacted_database_url
from course.content import ContentKind, ParsedContent, content_kinds, export_items, import_items, import_shipped
from course.database import db, utcnow
from course.models import LocalAccount
from course.models.people import LOCAL_ROLES

F = TypeVar("F", bound=Callable[..., Any])


def _settings() -> Settings:
    return current_app.config["REBOUND_SETTINGS"]  # type: ignore[no-any-return]


def database_errors_explained(command: F) -> F:
    """Turn an unreachable database into one clear sentence and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except OperationalError as error:
            url = redacted_database_url(current_app.config["DATABASE_URL"])
            reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
            raise click.ClickException(
                f"Cannot reach the database at {url}: {reason}. "
                "Check REBOUND_DATABASE_URL and that the database server is running."
            ) from None

    return wrapper  # type: ignore[return-value]


db_cli = AppGroup("db", help="Create and migrate the database schema.")
content_cli = AppGroup("content", help="Lessons and cases as files: import, export, check.")
users_cli = AppGroup("users", help="Manage local accounts for trainers, HR and admins.")


@db_cli.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@database_errors_explained
def db_upgrade(revision: str) -> None:
    """Apply schema migrations (safe to run again: a current database is left alone)."""
    before = migrate.current_revision(db.engine)
    migrate.upgrade(db.engine, revision)
    after = migrate.current_revision(db.engine)
    if before == after:
        click.echo(f"Database already at {after}; nothing to do.")
    else:
        click.echo(f"Database upgraded from {before or 'empty'} to {after}.")


@db_cli.command("downgrade")
@click.argument("revision")
@click.option("--yes", is_flag=True, help="Don't ask for confirmation.")
@database_errors_explained
def db_downgrade(revision: str, yes: bool) -> None:
    """Undo migrations down to REVISION (`base` removes every table and its data)."""
    if not yes:
        click.confirm(
            f"Downgrading to {revision} can delete data. Continue?", abort=True, err=True
        )
    before = migrate.current_revision(db.engine)
    migrate.downgrade(db.engine, revision)
    click.echo(f"Database downgraded from {before} to {migrate.current_revision(db.engine) or 'empty'}.")


@db_cli.command("current")
@database_errors_explained
def db_current() -> None:
    """Show the schema revision of the database and of this release."""
    status = migrate.schema_status(db.engine)
    state = "up to date" if status.up_to_date else "needs `rebound db upgrade`"
    click.echo(f"database: {status.current or 'empty'}  code: {status.head}  ({state})")


@users_cli.command("create")
@click.option("--username", required=True)
@click.option("--role", type=click.Choice(LOCAL_ROLES), required=True)
@click.option("--email", default=None)
@click.option("--platform", "platform_ref", default=None, help="Platform id or issuer (hr, trainer).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@database_errors_explained
def users_create(
    username: str, role: str, email: str | None, platform_ref: str | None, password_stdin: bool
) -> None:
    """Create a local account; the password is asked for and never shown."""
    session = db.session
    try:
        platform = find_platform(session, platform_ref) if platform_ref else None
        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
        account = create_account(
            session, username=username, role=role, email=email, password=password, platform=platform
        )
        session.commit()
    except AccountError as error:
        session.rollback()
        raise click.ClickException(str(error)) from None
    where = f" for platform {platform.name!r}" if platform else ""
    click.echo(f"Created {account.role} account {account.username!r}{where}.")


@users_cli.command("list")
@database_errors_explained
def users_list() -> None:
    """List local accounts (never their passwords)."""
    accounts = db.session.scalars(select(LocalAccount).order_by(LocalAccount.username)).all()
    if not accounts:
        click.echo("No local accounts yet. Create one with `rebound users create`.")
    for account in accounts:
        platform = account.platform.name if account.platform else "all platforms"
        state = "active" if account.active else "disabled"
        click.echo(f"{account.username}\t{account.role}\t{platform}\t{state}")


@click.command("config")
@with_appcontext
def config_show() -> None:
    """Show the settings in force (secrets hidden)."""
    settings = _settings()
    values = {
        "ENV": settings.env,
        "DATABASE_URL": redacted_database_url(settings.database_url),
        "SECRET_KEY": "(set)" if os.environ.get("REBOUND_SECRET_KEY") else "(generated, in data dir)",
        "BASE_URL": settings.base_url,
        "DATA_DIR": str(settings.data_dir),
        "TRUSTED_PROXY_HOPS": str(settings.trusted_proxy_hops),
        "MAX_REQUEST_BYTES": str(settings.max_request_bytes),
        "LOG_LEVEL": settings.log_level,
        "LOG_FORMAT": settings.log_format,
        "LOGIN_MAX_FAILURES": str(settings.login_max_failures),
        "LOGIN_LOCKOUT_SECONDS": str(settings.login_lockout_seconds),
        "RETENTION_DAYS": str(settings.retention_days or "(unset: keep)"),
        "ROSTER_SYNC_MINUTES": str(settings.roster_sync_minutes),
    }
    for setting in SETTINGS:
        click.echo(f"REBOUND_{setting.name}={values[setting.name]}")


@click.command("serve")
@with_appcontext
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 64))
@click.option("--with-worker", is_flag=True, help="Also run the grade worker (`rebound worker`) beside the server.")
@database_errors_explained
def serve(host: str, port: int, workers: int, threads: int, with_worker: bool) -> None:
    """Run Rebound with Gunicorn (development: prepares the SQLite database itself)."""
    from course.server import ReboundServer, server_options

    settings = _settings()
    status = migrate.schema_status(db.engine)
    if not status.up_to_date:
        if settings.is_production:
            raise click.ClickException(
                f"The database schema is at {status.current or 'nothing'} but this release needs "
                f"{status.head}. Run `rebound db upgrade` first."
            )
        migrate.upgrade(db.engine)
        click.echo(f"Prepared the database at {redacted_database_url(settings.database_url)}.")
    prepare_content()
    base_url = settings.base_url
    if not settings.is_production and "REBOUND_BASE_URL" not in os.environ:
        shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
        base_url = f"http://{shown_host}:{port}"
        os.environ["REBOUND_BASE_URL"] = base_url
    announce = f"Rebound ({settings.env}) is running at {base_url}/"
    from course.app import create_app

    # Built again so the links (the development LMS's, for one) use the address just chosen.
    for link in create_app().extensions["rebound.home_links"]:
        announce += f" - {link['label']}: {link['url']}"
    click.echo(announce)
    options = server_options(
        host=host,
        port=port,
        workers=workers,
        threads=threads,
        trust_proxy=settings.trusted_proxy_hops > 0,
        announce=announce,
        log_level=settings.log_level,
        log_format=settings.log_format,
        with_worker=with_worker,
    )
    ReboundServer(options).run()


def _tenant(platform_ref: str | None) -> int | None:
    if platform_ref is None:
        return None
    try:
        return find_platform(db.session, platform_ref).id
    except AccountError as error:
        raise click.ClickException(str(error)) from None


@content_cli.command("import")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--platform", "platform_ref", default=None, help="Import into this platform's copy (default: the shipped library)."
)
@database_errors_explained
def content_import(directory: Path, platform_ref: str | None) -> None:
    """Import lessons/ and cases/ from DIRECTORY; every file is validated first, and nothing
    is stored unless all of them pass."""
    tenant = _tenant(platform_ref)
    batches, problems = _read_content_folder(directory)
    if problems:
        raise click.ClickException("Nothing was imported; fix these first:\n" + "\n".join(problems))
    now, summary = utcnow(), []
    for kind, items in batches:
        created, unchanged = import_items(
            db.session, kind.name, items, platform_id=tenant, by="rebound content import", now=now
        )
        summary.append(f"{kind.label.lower()}s: {created} new version(s), {unchanged} unchanged")
    db.session.commit()
    click.echo("Imported " + "; ".join(summary) + ".")


@content_cli.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--platform", "platform_ref", default=None, help="Export this platform's course (default: shipped).")
@database_errors_explained
def content_export(directory: Path, platform_ref: str | None) -> None:
    """Write the course learners see as files, in the layout `content import` reads."""
    files = export_items(db.session, list(content_kinds().values()), _tenant(platform_ref))
    for relative, text in files.items():
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    click.echo(f"Exported {len(files)} file(s) to {directory}.")


@content_cli.command("check")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
def content_check(directory: Path) -> None:
    """Validate a content folder without importing it."""
    batches, problems = _read_content_folder(directory)
    if problems:
        raise click.ClickException("\n".join(problems))
    counted = ", ".join(f"{len(items)} {kind.label.lower()}(s)" for kind, items in batches)
    click.echo(f"No problems found in {counted}.")


def _read_content_folder(directory: Path) -> tuple[list[tuple[ContentKind, list[ParsedContent]]], list[str]]:
    """Every item under DIRECTORY's lessons/ and cases/ folders, with every problem found."""
    batches: list[tuple[ContentKind, list[ParsedContent]]] = []
    problems: list[str] = []
    for kind in content_kinds().values():
        folder = directory / kind.folder
        if folder.is_dir():
            items, found = kind.read_directory(folder)
            batches.append((kind, items))
            problems.extend(found)
    if not batches:
        folders = " nor a ".join(f"{kind.folder}/" for kind in content_kinds().values())
        raise click.ClickException(
            f"{directory} has neither a {folders} folder; give the folder `rebound content export` writes."
        )
    return batches, problems


def prepare_content() -> None:
    """Import the shipped course (first start) and any shipped changes (upgrades)."""
    created, _ = import_shipped(db.session, list(content_kinds().values()), utcnow())
    db.session.commit()
    if created:
        click.echo(f"Imported {created} shipped lesson/case version(s).")


OPERATOR_COMMANDS: tuple[click.Command, ...] = (serve, config_show, db_cli, users_cli, content_cli)


def register_commands(app: Flask) -> None:
    """Make the operator commands available to `flask --app course.app` too."""
    for command in OPERATOR_COMMANDS:
        app.cli.add_command(command)
    from course.privacy_cli import learners_cli

    app.cli.add_command(learners_cli)
