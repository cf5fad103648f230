"""The README documents every setting and every operator command (documentation is tested)."""

from __future__ import annotations

from pathlib import Path

import click

from course.cli import cli
from course.config import SETTINGS

README = (Path(__file__).parents[2] / "README.md").read_text()


def _command_paths(group: click.Group, prefix: str = "rebound") -> list[str]:
    paths = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            paths.extend(_command_paths(command, path))
        else:
            paths.append(path)
    return paths


def test_every_setting_is_in_the_readme() -> None:
    missing = [f"REBOUND_{s.name}" for s in SETTINGS if f"`REBOUND_{s.name}`" not in README]
    assert missing == []


def test_every_cli_command_is_in_the_readme(app) -> None:  # type: ignore[no-untyped-def]
    paths = set(_command_paths(cli)) | set(_command_paths(app.cli))
    missing = [path for path in sorted(paths) if f"`{path}" not in README]
    assert missing == []


def test_every_lti_endpoint_is_in_the_readme(app) -> None:  # type: ignore[no-untyped-def]
    lti_rules = {rule.rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/lti/")}
    public = {"/lti/login", "/lti/launch", "/lti/jwks", "/lti/register", "/lti/config.json"}
    assert public <= lti_rules
    missing = [rule for rule in sorted(public) if f"`{rule}`" not in README]
    assert missing == []


def test_readme_keeps_exactly_two_setup_commands() -> None:
    setup = README.split("## Set-up: two commands", 1)[1].split("\n## ", 1)[0]
    assert setup.count("```sh") == 2
    assert "make run" in setup and "make test" in setup


def test_ci_runs_the_readme_test_command() -> None:
    ci = (Path(__file__).parents[2] / ".ci" / "run").read_text()
    assert "make test" in ci
