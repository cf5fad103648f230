"""The `rebound` command: migrations, accounts and settings, with clear failures."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from course.database import db
from course.models import LocalAccount, Platform
from tests.conftest import DEFAULT_PASSWORD


def run_rebound(*args: str, env: dict[str, str] | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run the real console script in a clean environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("REBOUND_")}
    return subprocess.run(
        [sys.executable, "-c", "from course.cli import main; main()", *args],
        env={**base, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_db_upgrade_twice_is_safe_and_says_so(app_factory: Callable[..., Flask], empty_database_url: str) -> None:
    app = app_factory(DATABASE_URL=empty_database_url)
    runner = app.test_cli_runner()
    first = runner.invoke(args=["db", "upgrade"])
    assert first.exit_code == 0, first.output
    assert "Database upgraded from empty to" in first.output
    second = runner.invoke(args=["db", "upgrade"])
    assert second.exit_code == 0
    assert "already at" in second.output and "nothing to do" in second.output
    current = runner.invoke(args=["db", "current"])
    assert "(up to date)" in current.output
    db.state(app).engine.dispose()


def test_db_downgrade_asks_before_deleting_data(app_factory: Callable[..., Flask], empty_database_url: str) -> None:
    app = app_factory(DATABASE_URL=empty_database_url)
    runner = app.test_cli_runner()
    runner.invoke(args=["db", "upgrade"])
    refused = runner.invoke(args=["db", "downgrade", "base"], input="n\n")
    assert refused.exit_code == 1
    assert "(up to date)" in runner.invoke(args=["db", "current"]).output
    done = runner.invoke(args=["db", "downgrade", "base", "--yes"])
    assert done.exit_code == 0 and "to empty" in done.output
    db.state(app).engine.dispose()


def test_users_create_reads_the_password_without_echoing_it(
    app: Flask, make_platform: Callable[..., Platform]
) -> None:
    platform = make_platform(name="Acme LMS")
    result = app.test_cli_runner().invoke(
        args=["users", "create", "--username", "Hana", "--role", "hr", "--platform", str(platform.id), "--password-stdin"],
        input=DEFAULT_PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    assert "Created hr account 'hana' for platform 'Acme LMS'." in result.output
    assert DEFAULT_PASSWORD not in result.output
    account = db.session.scalar(select(LocalAccount).where(LocalAccount.username == "hana"))
    assert account is not None and account.platform_id == platform.id


def test_users_create_prompts_twice_with_hidden_input(app: Flask) -> None:
    result = app.test_cli_runner().invoke(
        args=["users", "create", "--username", "ops", "--role", "admin"],
        input=f"{DEFAULT_PASSWORD}\n{DEFAULT_PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert DEFAULT_PASSWORD not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "hr"], "belongs to one LMS platform"),
        (["--role", "hr", "--platform", "424242"], "No platform has id 424242"),
        (["--role", "hr", "--platform", "https://unknown.example"], "No platform has issuer"),
        (["--role", "owner"], "Invalid value for '--role'"),
    ],
)
def test_users_create_explains_what_is_wrong(app: Flask, args: list[str], message: str) -> None:
    result = app.test_cli_runner().invoke(
        args=["users", "create", "--username", "hana", *args, "--password-stdin"], input=DEFAULT_PASSWORD + "\n"
    )
    assert result.exit_code != 0
    assert message in result.output
    assert db.session.scalar(select(LocalAccount).where(LocalAccount.username == "hana")) is None


def test_users_create_refuses_a_weak_password_and_keeps_nothing(app: Flask) -> None:
    result = app.test_cli_runner().invoke(
        args=["users", "create", "--username", "ops", "--role", "admin", "--password-stdin"], input="short\n"
    )
    assert result.exit_code == 1
    assert "at least 12 characters" in result.output
    assert "short" not in result.output.replace("at least", "")
    assert db.session.scalar(select(LocalAccount)) is None


def test_users_list_shows_accounts_but_never_hashes(app: Flask, make_account: Callable[..., LocalAccount]) -> None:
    make_account(username="hana", role="hr")
    output = app.test_cli_runner().invoke(args=["users", "list"]).output
    assert "hana\thr\t" in output
    assert "argon2" not in output


def test_config_shows_settings_without_secrets(app: Flask) -> None:
    output = app.test_cli_runner().invoke(args=["config"]).output
    assert "REBOUND_BASE_URL=https://rebound.test" in output
    assert app.config["SECRET_KEY"] not in output


def test_unknown_setting_stops_the_command_with_a_suggestion() -> None:
    result = run_rebound("db", "current", env={"REBOUND_DATABSE_URL": "sqlite://"})
    assert result.returncode == 1
    assert "REBOUND_DATABSE_URL is not a Rebound setting. Did you mean REBOUND_DATABASE_URL?" in result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_database_url_stops_the_command(tmp_path: Path) -> None:
    result = run_rebound("db", "upgrade", env={"REBOUND_DATABASE_URL": "::::", "REBOUND_DATA_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert "is not a database URL" in result.stderr


def test_database_down_at_start_gives_one_clear_line(tmp_path: Path) -> None:
    env = {
        "REBOUND_DATABASE_URL": "postgresql://rebound:s3cret@127.0.0.1:1/rebound",
        "REBOUND_DATA_DIR": str(tmp_path),
    }
    for command in (["db", "upgrade"], ["serve", "--port", "5999"]):
        result = run_rebound(*command, env=env)
        assert result.returncode == 1
        assert "Cannot reach the database at postgresql+psycopg://rebound:***@127.0.0.1:1/rebound" in result.stderr
        assert "s3cret" not in result.stderr
        assert "Traceback" not in result.stderr


def test_production_serve_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    env = {
        "REBOUND_ENV": "production",
        "REBOUND_DATABASE_URL": f"sqlite:///{tmp_path / 'prod.sqlite3'}",
        "REBOUND_SECRET_KEY": "p" * 20 + "0123456789abcdef",
        "REBOUND_BASE_URL": "https://rebound.example.com",
    }
    result = run_rebound("serve", "--port", "5998", env=env)
    assert result.returncode == 1
    assert "Run `rebound db upgrade` first." in result.stderr
