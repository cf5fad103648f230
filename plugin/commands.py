"""Operator commands for LTI: static platform registration and the tool's keys."""

from __future__ import annotations

from datetime import timedelta

import click
from flask import Flask, current_app
from flask.cli import AppGroup

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


def register(app: Flask) -> None:
    """Add the LTI commands to `rebound` / `flask`."""
    app.cli.add_command(platforms_cli)
    app.cli.add_command(keys_cli)
