"""Operator commands for LTI: static platform registration, the tool's keys, the grade worker and rosters."""

from __future__ import annotations

from datetime import timedelta

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from course.commands import database_errors_explained
from course.database import db, utcnow
from plugin.registrations import (
    RegistrationError,
    add_deployment,
    all_platforms,
    get_platform,
    register_platform,
)
from plugin.stores import KeyringStore
from plugin.tool_config import endpoints

platforms_cli = AppGroup("platforms", help="Register LMS platforms (tenants) without dynamic registration.")
keys_cli = AppGroup("keys", help="The tool's signing keys, published at /lti/jwks.")


def _role_overrides(values: tuple[str, ...]) -> dict[str, list[str]]:
    overrides: dict[str, list[str]] = {}
    for value in values:
        uri, sep, roles = value.rpartition("=")
        if not sep or not uri:
            raise click.BadParameter(f"{value!r}: use ROLE_URI=role[,role]", param_hint="--role-override")
        overrides[uri] = [r for r in roles.split(",") if r]
    return overrides


@platforms_cli.command("add")
@click.option("--name", required=True, help="A name people recognise, e.g. 'Acme Moodle'.")
@click.option("--issuer", required=True, help="The platform's issuer (iss), exactly as it sends it.")
@click.option("--client-id", required=True, help="The client id the LMS gave Rebound.")
@click.option("--auth-login-url", required=True, help="The platform's OIDC authentication endpoint.")
@click.option("--auth-token-url", required=True, help="The platform's OAuth2 token endpoint.")
@click.option("--jwks-url", required=True, help="The platform's public keys (JWKS) URL.")
@click.option("--deployment-id", "deployment_ids", multiple=True, help="A deployment id (repeatable).")
@click.option(
    "--token-audience", "auth_token_audience", default=None, help="Assertion audience if not the token URL (D2L)."
)
@click.option("--frame-origin", "frame_origins", multiple=True, help="An origin allowed to frame Rebound.")
@click.option("--role-override", "role_overrides", multiple=True, help="ROLE_URI=role[,role] (repeatable).")
@database_errors_explained
def platforms_add(**options: object) -> None:
    """Register a platform statically (for LMSes without dynamic registration)."""
    overrides = _role_overrides(options.pop("role_overrides"))  # type: ignore[arg-type]
    try:
        platform = register_platform(
            db.session,
            role_overrides=overrides,
            http_hosts_allowed=not current_app.config["REBOUND_SETTINGS"].is_production,
            **options,  # type: ignore[arg-type]
        )
        db.session.commit()
    except RegistrationError as error:
        db.session.rollback()
        raise click.ClickException(str(error)) from None
    urls = endpoints(current_app.config["BASE_URL"])
    click.echo(f"Registered platform {platform.id}: {platform.name} ({platform.issuer}, client {platform.client_id}).")
    click.echo(f"In the LMS use: login {urls['login']}  redirect {urls['launch']}  keys {urls['jwks']}")


@platforms_cli.command("add-deployment")
@click.argument("platform_ref")
@click.argument("deployment_id")
@database_errors_explained
def platforms_add_deployment(platform_ref: str, deployment_id: str) -> None:
    """Add a deployment id to a registered platform."""
    try:
        platform = get_platform(db.session, platform_ref)
        add_deployment(db.session, platform, deployment_id)
        db.session.commit()
    except RegistrationError as error:
        db.session.rollback()
        raise click.ClickException(str(error)) from None
    click.echo(f"Platform {platform.id} now accepts deployment {deployment_id!r}.")


@platforms_cli.command("list")
@database_errors_explained
def platforms_list() -> None:
    """List registered platforms, one a line."""
    platforms = all_platforms(db.session)
    if not platforms:
        click.echo("No platforms registered. Use `rebound platforms add` or dynamic registration.")
    for p in platforms:
        deployments = ",".join(d.deployment_id for d in p.deployments) or "-"
        click.echo(f"{p.id}\t{p.name}\t{p.issuer}\t{p.client_id}\t{deployments}\t{p.registration}")


@platforms_cli.command("show")
@click.argument("platform_ref")
@database_errors_explained
def platforms_show(platform_ref: str) -> None:
    """Show one platform's registration and health."""
    try:
        p = get_platform(db.session, platform_ref)
    except RegistrationError as error:
        raise click.ClickException(str(error)) from None
    fields = {
        "id": p.id,
        "name": p.name,
        "issuer": p.issuer,
        "client_id": p.client_id,
        "registration": p.registration,
        "auth_login_url": p.auth_login_url,
        "auth_token_url": p.auth_token_url,
        "token_audience": p.auth_token_audience or "(token URL)",
        "jwks_url": p.jwks_url,
        "deployments": ", ".join(d.deployment_id for d in p.deployments) or "none",
        "frame_origins": ", ".join(p.frame_origins or []) or "none learned yet",
        "role_overrides": p.role_overrides or "none",
        "last_launch_at": p.last_launch_at.isoformat() if p.last_launch_at else "never",
        "last_error": f"{p.last_error_at.isoformat()} {p.last_error}" if p.last_error_at else "none",
        "clock_skew_seconds": p.clock_skew_seconds if p.clock_skew_seconds is not None else "unknown",
    }
    for key, value in fields.items():
        click.echo(f"{key}: {value}")


@platforms_cli.command("remove")
@click.argument("platform_ref")
@click.option("--yes", is_flag=True, help="Don't ask for confirmation.")
@database_errors_explained
def platforms_remove(platform_ref: str, yes: bool) -> None:
    """Remove a platform and every record of its tenant."""
    try:
        platform = get_platform(db.session, platform_ref)
    except RegistrationError as error:
        raise click.ClickException(str(error)) from None
    if not yes:
        click.confirm(
            f"Remove {platform.name} and all its users, progress and records?", abort=True, err=True
        )
    db.session.delete(platform)
    db.session.commit()
    click.echo(f"Removed platform {platform_ref}.")


@keys_cli.command("rotate")
@click.option("--grace-hours", default=48, show_default=True, type=click.IntRange(0, 24 * 90),
              help="How long the old key stays published after the new one starts signing.")
@click.option("--publish-ahead-minutes", default=10, show_default=True, type=click.IntRange(0, 24 * 60),
              help="How long the new key is published before it signs (LMSes cache JWKS).")
@database_errors_explained
def keys_rotate(grace_hours: int, publish_ahead_minutes: int) -> None:
    """Add a new signing key without downtime; the old one stays published for the grace period."""
    now = utcnow()
    store = KeyringStore(db.session, current_app.config["SECRET_KEY"])
    keyring = store.ensure(now).rotate(
        now, timedelta(hours=grace_hours), publish_ahead=timedelta(minutes=publish_ahead_minutes)
    )
    store.save(keyring.prune(now))
    db.session.commit()
    new = keyring.keys[-1]
    click.echo(f"New key {new.kid} is published now and signs from {new.activated_at.isoformat(timespec='seconds')}.")


@keys_cli.command("list")
@database_errors_explained
def keys_list() -> None:
    """List the tool's keys and what each may do now."""
    now = utcnow()
    keyring = KeyringStore(db.session, current_app.config["SECRET_KEY"]).ensure(now)
    db.session.commit()
    signer = keyring.signing_key(now).kid
    for key in keyring.keys:
        state = "signing" if key.kid == signer else "published" if key.is_published(now) else "retired"
        retire = key.retire_after.isoformat(timespec="seconds") if key.retire_after else "-"
        click.echo(f"{key.kid}\t{state}\tactivated {key.activated_at.isoformat(timespec='seconds')}\tretires {retire}")


outbox_cli = AppGroup("outbox", help="Grades waiting for, or refused by, the LMS (AGS).")
roster_cli = AppGroup("roster", help="Course rosters from the LMS (NRPS).")


@click.command("worker")
@click.option("--once", is_flag=True, help="Deliver what is due, then exit.")
@click.option("--interval", default=5.0, show_default=True, type=click.FloatRange(0.1, 3600),
              help="Seconds between passes over the outbox.")
@with_appcontext
def worker(once: bool, interval: float) -> None:
    """Deliver queued grades to the LMSes, retrying with backoff; stops cleanly on SIGTERM."""
    import signal
    import threading

    from plugin.outbox import run_worker

    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    previous = {signum: signal.signal(signum, request_stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        run_worker(current_app._get_current_object(), interval=interval, stop=stop, once=once)  # type: ignore[attr-defined]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@outbox_cli.command("status")
@database_errors_explained
def outbox_status_command() -> None:
    """Counts by status, the oldest pending grade, and the last error per platform."""
    from plugin.outbox import outbox_status

    status = outbox_status(db.session)
    counts = status.counts
    click.echo(
        f"pending {counts['pending']}  sent {counts['sent']} (of which {status.superseded} superseded or "
        f"already held by the LMS)  failed {counts['failed']}"
    )
    if status.oldest_pending is not None:
        age = utcnow() - status.oldest_pending
        queued = status.oldest_pending.isoformat(timespec="seconds")
        click.echo(f"oldest pending: queued {queued} ({age.total_seconds() / 60:.0f} min ago)")
    for p in status.platforms:
        click.echo(
            f"platform {p.platform_id} {p.name}: {p.pending} pending, {p.failed} failed; "
            f"last error: {p.last_error or 'none'}"
        )
    for row_id, error in status.failed_rows:
        click.echo(f"failed #{row_id}: {error}")
    if status.failed_rows:
        click.echo("Fix the cause, then `rebound outbox retry ID` or `rebound outbox retry --failed`.")


@outbox_cli.command("retry")
@click.argument("row_id", required=False, type=int)
@click.option("--failed", is_flag=True, help="Queue every failed grade again.")
@database_errors_explained
def outbox_retry(row_id: int | None, failed: bool) -> None:
    """Send a failed (or backed-off) grade again now: one by ID, or every failed one."""
    from plugin.outbox import retry

    if (row_id is None) == (not failed):
        raise click.UsageError("Give either an outbox ID or --failed.")
    count = retry(db.session, row_id=row_id, failed=failed, now=utcnow())
    db.session.commit()
    if row_id is not None and count == 0:
        raise click.ClickException(
            f"No pending or failed grade #{row_id}: it does not exist or was sent already (sending it again "
            "would send the same change twice)."
        )
    click.echo(f"Queued {count} grade(s) for delivery now.")


@roster_cli.command("sync")
@click.option("--platform", "platform_ref", default=None, help="Only this platform (id or issuer).")
@click.option("--context", "context_id", default=None, type=int, help="Only this context (Rebound's id).")
@database_errors_explained
def roster_sync(platform_ref: str | None, context_id: int | None) -> None:
    """Fetch course rosters from the LMS now (every context with NRPS, or the ones chosen)."""
    from plugin.nrps import contexts_to_sync, sync_roster
    from plugin.service_tokens import ServiceError, client_for, ensure_signing_key

    try:
        platform_id = get_platform(db.session, platform_ref).id if platform_ref else None
    except RegistrationError as error:
        raise click.ClickException(str(error)) from None
    contexts = contexts_to_sync(db.session, platform_id=platform_id, context_id=context_id)
    if not contexts:
        raise click.ClickException("No course with an LMS roster service (NRPS) matches; launch from the LMS first.")
    client, failures = client_for(current_app), 0
    ensure_signing_key(db.session, client, utcnow())
    db.session.commit()
    for context in contexts:
        label = f"context {context.id} ({context.title or context.lms_context_id})"
        try:
            result = sync_roster(db.session, context, utcnow(), client)
            db.session.commit()
        except ServiceError as error:
            db.session.rollback()
            failures += 1
            click.echo(f"{label}: not synced, roster unchanged: {error}", err=True)
            continue
        click.echo(f"{label}: {result.summary()}")
    if failures:
        raise click.ClickException(f"{failures} of {len(contexts)} roster(s) could not be synced.")


def register(app: Flask) -> None:
    """Add the LTI commands to `rebound` / `flask`."""
    app.cli.add_command(platforms_cli)
    app.cli.add_command(keys_cli)
    app.cli.add_command(worker)
    app.cli.add_command(outbox_cli)
    app.cli.add_command(roster_cli)
