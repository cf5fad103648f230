"""The `rebound` console script: the Flask CLI group with Rebound's operator commands."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import FlaskGroup, routes_command, shell_command

from course.app import create_app
from course.commands import OPERATOR_COMMANDS
from course.config import ConfigError


def _create_app_for_cli() -> Flask:
    try:
        return create_app()
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


cli = FlaskGroup(
    name="rebound",
    help="Rebound: an LTI 1.3 course on social media mistakes.",
    create_app=_create_app_for_cli,
    add_default_commands=False,
    load_dotenv=False,
    set_debug_flag=False,
)
# `rebound` always runs Rebound: Flask's --app/--env-file/--debug options would only confuse.
cli.params = [p for p in cli.params if p.name not in ("app", "env_file", "debug", "version")]
cli = click.version_option(package_name="rebound", prog_name="rebound")(cli)
cli.add_command(shell_command)
cli.add_command(routes_command)
for _command in OPERATOR_COMMANDS:
    cli.add_command(_command)


def main() -> None:
    """Entry point of the `rebound` console script."""
    cli.main(prog_name="rebound")
