"""`rebound learners ...`: a learner's data exported for them, erased on request, and
erased after the retention period."""

from __future__ import annotations

import json
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from course.accounts.services import AccountError, find_platform
from course.commands import database_errors_explained
from course.config import Settings
from course.database import db, utcnow
from course.models import Platform, User
from course.privacy import PrivacyError, erase_learner, export_learner, find_learner, purge_expired

learners_cli = AppGroup("learners", help="A learner's data: export it for them, erase it, apply the retention period.")


def _settings() -> Settings:
    return current_app.config["REBOUND_SETTINGS"]  # type: ignore[no-any-return]


def _learner(platform_ref: str, sub: str) -> tuple[Platform, User]:
    try:
        platform = find_platform(db.session, platform_ref)
        return platform, find_learner(db.session, platform, sub, key=_settings().secret_key)
    except (AccountError, PrivacyError) as error:
        raise click.ClickException(str(error)) from None


@learners_cli.command("export")
@click.option("--platform", "platform_ref", required=True, help="Platform id or issuer.")
@click.option("--sub", required=True, help="The learner's LMS user id (the `sub` of their launches).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to FILE instead of standard output.")
@database_errors_explained
def learners_export(platform_ref: str, sub: str, output: Path | None) -> None:
    """Everything Rebound holds about one learner, as JSON (a subject access request)."""
    _, user = _learner(platform_ref, sub)
    text = json.dumps(export_learner(db.session, user, now=utcnow()), indent=2, ensure_ascii=False) + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    click.echo(f"Wrote the data of learner {sub!r} to {output}.", err=True)


@learners_cli.command("erase")
@click.option("--platform", "platform_ref", required=True, help="Platform id or issuer.")
@click.option("--sub", required=True, help="The learner's LMS user id (the `sub` of their launches).")
@click.option("--yes", is_flag=True, help="Don't ask for confirmation.")
@database_errors_explained
def learners_erase(platform_ref: str, sub: str, yes: bool) -> None:
    """Erase what identifies a learner; their completion facts stay, anonymised."""
    platform, user = _learner(platform_ref, sub)
    if user.erased_at is None and not yes:
        click.confirm(
            f"Erase learner {sub!r} of {platform.name!r}? Their name, email and ids are removed for good; "
            "completion records stay, under a pseudonym. Continue?",
            abort=True, err=True,
        )
    erasure = erase_learner(db.session, user, key=_settings().secret_key, now=utcnow())
    db.session.commit()
    if erasure.already_erased:
        click.echo(f"Learner {sub!r} was already erased (now {erasure.pseudonym}); nothing else to remove.")
        return
    click.echo(
        f"Erased learner {sub!r}: now {erasure.pseudonym}; {erasure.records_anonymised} completion record(s) "
        f"anonymised, {erasure.roster_entries_removed} roster entry(ies) removed. If they are still enrolled "
        "in the LMS course, the next roster sync lists them again."
    )


@learners_cli.command("purge-expired")
@click.option("--dry-run", is_flag=True, help="List who would be erased, change nothing.")
@database_errors_explained
def learners_purge_expired(dry_run: bool) -> None:
    """Erase every learner whose last activity is older than REBOUND_RETENTION_DAYS."""
    days = _settings().retention_days
    if days is None:
        raise click.ClickException(
            "REBOUND_RETENTION_DAYS is not set, so learners' data is kept and nothing expires. "
            "Set it (e.g. REBOUND_RETENTION_DAYS=730) to purge learners inactive that long."
        )
    expired = purge_expired(db.session, retention_days=days, key=_settings().secret_key, now=utcnow(),
                            dry_run=dry_run)
    if not dry_run:
        db.session.commit()
    verb = "Would erase" if dry_run else "Erased"
    for user, last_seen in expired:
        # Only ids, never names: this output ends up in cron mails and logs.
        click.echo(f"{verb} user {user.id} (platform {user.platform_id}), last active {last_seen.isoformat()}")
    click.echo(f"{verb} {len(expired)} learner(s) inactive for more than {days} days.")
