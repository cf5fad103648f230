"""Settings come from REBOUND_* variables; bad ones stop the start with a clear message."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from course.config import ConfigError, load_settings

STRONG = "x" * 16 + "0123456789abcdefghij"
PRODUCTION = {
    "REBOUND_ENV": "production",
    "REBOUND_SECRET_KEY": STRONG,
    "REBOUND_DATABASE_URL": "postgresql://rebound@db.internal:5432/rebound",
    "REBOUND_BASE_URL": "https://rebound.example.com",
}


def test_development_defaults_need_no_settings(tmp_path: Path) -> None:
    settings = load_settings({"REBOUND_DATA_DIR": str(tmp_path)})
    assert settings.env == "development"
    assert settings.database_url == f"sqlite:///{tmp_path / 'rebound.sqlite3'}"
    assert settings.log_format == "text"
    assert len(settings.secret_key) >= 32


def test_development_secret_is_generated_once_private_and_reused(tmp_path: Path) -> None:
    first = load_settings({"REBOUND_DATA_DIR": str(tmp_path)}).secret_key
    second = load_settings({"REBOUND_DATA_DIR": str(tmp_path)}).secret_key
    assert first == second
    mode = stat.S_IMODE((tmp_path / "secret_key").stat().st_mode)
    assert mode == 0o600


def test_two_installations_get_different_development_secrets(tmp_path: Path) -> None:
    one = load_settings({"REBOUND_DATA_DIR": str(tmp_path / "a")}).secret_key
    two = load_settings({"REBOUND_DATA_DIR": str(tmp_path / "b")}).secret_key
    assert one != two


def test_unknown_setting_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"REBOUND_DATABSE_URL is not a Rebound setting\. Did you mean REBOUND_DATABASE_URL\?"):
        load_settings({"REBOUND_DATABSE_URL": "sqlite://"})


def test_unknown_environment_name_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"REBOUND_ENV='staging' is not allowed; use one of: development, production"):
        load_settings({"REBOUND_ENV": "staging"})


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "is not a database URL"),
        ("mysql://root@localhost/rebound", "Rebound supports sqlite and postgresql"),
        ("postgresql://db.internal:5432", "names no database"),
    ],
)
def test_malformed_database_url_is_refused(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({"REBOUND_DATABASE_URL": url, "REBOUND_SECRET_KEY": STRONG})


def test_database_password_never_appears_in_the_error() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({"REBOUND_DATABASE_URL": "oracle://scott:tiger-secret@db/x"})
    assert "tiger-secret" not in str(error.value)


def test_postgres_urls_use_the_shipped_driver() -> None:
    settings = load_settings({**PRODUCTION, "REBOUND_DATABASE_URL": "postgres://u:p@h:5432/d"})
    assert settings.database_url == "postgresql+psycopg://u:p@h:5432/d"


def test_production_starts_with_real_settings() -> None:
    settings = load_settings(PRODUCTION)
    assert settings.is_production
    assert settings.log_format == "json"


@pytest.mark.parametrize("missing", ["REBOUND_SECRET_KEY", "REBOUND_DATABASE_URL"])
def test_production_refuses_to_start_without_secret_or_database(missing: str) -> None:
    environ = {k: v for k, v in PRODUCTION.items() if k != missing}
    with pytest.raises(ConfigError, match=f"{missing} is required in production"):
        load_settings(environ)


@pytest.mark.parametrize("weak", ["changeme", "short-key", "please-change-me"])
def test_production_refuses_a_weak_secret(weak: str) -> None:
    with pytest.raises(ConfigError, match="too weak for production"):
        load_settings({**PRODUCTION, "REBOUND_SECRET_KEY": weak})


def test_production_needs_an_https_base_url() -> None:
    with pytest.raises(ConfigError, match="must use https in production"):
        load_settings({**PRODUCTION, "REBOUND_BASE_URL": "http://rebound.example.com"})


@pytest.mark.parametrize("value", ["rebound.example.com", "ftp://x", "https://x/?a=1"])
def test_base_url_must_be_a_plain_http_url(value: str) -> None:
    with pytest.raises(ConfigError, match="REBOUND_BASE_URL"):
        load_settings({"REBOUND_BASE_URL": value, "REBOUND_SECRET_KEY": STRONG})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TRUSTED_PROXY_HOPS", "two", "is not a whole number"),
        ("TRUSTED_PROXY_HOPS", "-1", "must be at least 0"),
        ("MAX_REQUEST_BYTES", "10", "must be at least 1024"),
        ("LOGIN_MAX_FAILURES", "0", "must be at least 1"),
        ("LOG_LEVEL", "LOUD", "use one of"),
        ("LOG_FORMAT", "xml", "use one of"),
    ],
)
def test_malformed_numbers_and_choices_are_refused(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"REBOUND_{name}.*{message}"):
        load_settings({f"REBOUND_{name}": value, "REBOUND_SECRET_KEY": STRONG})


def test_base_url_loses_its_trailing_slash() -> None:
    settings = load_settings({**PRODUCTION, "REBOUND_BASE_URL": "https://rebound.example.com/"})
    assert settings.base_url == "https://rebound.example.com"


def test_https_base_url_makes_cookies_work_inside_lms_iframes() -> None:
    config = load_settings(PRODUCTION).flask_config()
    assert config["SESSION_COOKIE_SECURE"] is True
    assert config["SESSION_COOKIE_SAMESITE"] == "None"
