"""Settings read from `REBOUND_*` environment variables, validated before the app starts."""

from __future__ import annotations

import difflib
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

PREFIX = "REBOUND_"
ENVIRONMENTS = ("development", "production")
LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
MIN_SECRET_KEY_LENGTH = 32
# Values people paste from tutorials; refusing them in production is cheap insurance.
WEAK_SECRET_KEYS = {"dev", "secret", "changeme", "change-me", "development", "please-change-me"}


class ConfigError(Exception):
    """A setting is missing, unknown or malformed; the message says which and how to fix it."""


@dataclass(frozen=True)
class Setting:
    """One documented `REBOUND_*` environment variable."""

    name: str
    help: str
    default: str | None = None


SETTINGS: tuple[Setting, ...] = (
    Setting("ENV", "`development` (default) or `production`.", "development"),
    Setting(
        "DATABASE_URL",
        "SQLAlchemy URL: `sqlite:///path.db` or `postgresql://user@host:5432/db`. "
        "Development default: SQLite in the data directory. Required in production.",
    ),
    Setting(
        "SECRET_KEY",
        "Signs sessions and CSRF tokens; at least 32 random characters. Required in "
        "production; in development one is generated and kept in the data directory.",
    ),
    Setting(
        "BASE_URL",
        "The public URL the LMS and browsers use, e.g. `https://rebound.example.com`. "
        "Required (https) in production.",
        "http://127.0.0.1:5000",
    ),
    Setting("DATA_DIR", "Where the development database, secret and keys are kept.", "instance"),
    Setting(
        "TRUSTED_PROXY_HOPS",
        "How many reverse proxies in front of Rebound to trust for `X-Forwarded-*` headers. "
        "0 (default) trusts none.",
        "0",
    ),
    Setting("MAX_REQUEST_BYTES", "Largest request body accepted; larger ones get 413.", "1048576"),
    Setting("LOG_LEVEL", "DEBUG, INFO (default), WARNING or ERROR.", "INFO"),
    Setting(
        "LOG_FORMAT",
        "`json` (one object per line; the production default) or `text` (the development default).",
    ),
    Setting("LOGIN_MAX_FAILURES", "Failed sign-ins per account before a lockout.", "5"),
    Setting("LOGIN_LOCKOUT_SECONDS", "How long a lockout lasts, and the counting window.", "900"),
    Setting(
        "RETENTION_DAYS",
        "Days after a learner's last activity when `rebound learners purge-expired` erases them. "
        "Unset (default): learners' data is kept.",
    ),
    Setting(
        "ROSTER_SYNC_MINUTES",
        "Trainer and HR visits refresh a course's LMS roster (NRPS) at most this often.",
        "60",
    ),
)
SETTING_NAMES = {s.name for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """The validated configuration the app runs with."""

    env: str
    database_url: str
    secret_key: str
    base_url: str
    data_dir: Path
    trusted_proxy_hops: int
    max_request_bytes: int
    log_level: str
    log_format: str
    login_max_failures: int
    login_lockout_seconds: int
    retention_days: int | None = None
    roster_sync_minutes: int = 60
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def flask_config(self) -> dict[str, Any]:
        """The Flask config keys derived from these settings."""
        # Browsers treat loopback hosts as secure, so a development LMS on localhost can
        # frame the tool with the same SameSite=None; Secure; Partitioned cookies as production.
        secure = self.base_url.startswith("https://") or urlsplit(self.base_url).hostname in (
            "localhost",
            "127.0.0.1",
        )
        return {
            "REBOUND_SETTINGS": self,
            "ENV_NAME": self.env,
            "SECRET_KEY": self.secret_key,
            "DATABASE_URL": self.database_url,
            "BASE_URL": self.base_url,
            "MAX_CONTENT_LENGTH": self.max_request_bytes,
            "MAX_FORM_MEMORY_SIZE": self.max_request_bytes,
            "SESSION_COOKIE_HTTPONLY": True,
            "SESSION_COOKIE_SECURE": secure,
            "SESSION_COOKIE_SAMESITE": "None" if secure else "Lax",
            "SESSION_COOKIE_PARTITIONED": secure,
            "SESSION_COOKIE_NAME": "rebound_session",
            "PERMANENT_SESSION_LIFETIME": 12 * 3600,
            "REMEMBER_COOKIE_SECURE": secure,
            "PREFERRED_URL_SCHEME": "https" if secure else "http",
            "WTF_CSRF_TIME_LIMIT": 8 * 3600,
            "WTF_CSRF_SSL_STRICT": False,
        }


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"{PREFIX}{name}={value!r} is not allowed; use one of: {', '.join(allowed)}.")
    return value


def _positive_int(name: str, value: str, *, minimum: int = 0) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name}={value!r} is not a whole number.") from None
    if number < minimum:
        raise ConfigError(f"{PREFIX}{name}={value!r} must be at least {minimum}.")
    return number


def normalise_database_url(value: str) -> str:
    """Check a database URL and pick the driver Rebound ships with (psycopg 3 for PostgreSQL)."""
    try:
        url: URL = make_url(value)
    except ArgumentError:
        raise ConfigError(
            f"{PREFIX}DATABASE_URL={_redact(value)!r} is not a database URL; expected e.g. "
            "sqlite:///instance/rebound.db or postgresql://user@host:5432/rebound."
        ) from None
    backend = url.get_backend_name()
    if backend in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+psycopg")
        if not url.database:
            raise ConfigError(f"{PREFIX}DATABASE_URL names no database; add /DBNAME to the URL.")
    elif backend == "sqlite":
        url = url.set(drivername="sqlite")
    else:
        raise ConfigError(
            f"{PREFIX}DATABASE_URL uses {backend!r}; Rebound supports sqlite and postgresql."
        )
    return url.render_as_string(hide_password=False)


def _redact(value: str) -> str:
    """Hide a password in a URL-like string before it reaches a message or a log."""
    parts = urlsplit(value)
    if parts.password:
        return value.replace(f":{parts.password}@", ":***@")
    return value


def redacted_database_url(value: str) -> str:
    """The database URL with its password masked, for messages and logs."""
    try:
        return make_url(value).render_as_string(hide_password=True)
    except ArgumentError:
        return _redact(value)


def _check_base_url(value: str, *, production: bool) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{PREFIX}BASE_URL={value!r} is not an http(s) URL; expected e.g. https://rebound.example.com."
        )
    if production and parts.scheme != "https":
        raise ConfigError(
            f"{PREFIX}BASE_URL must use https in production (LMSes embed the tool in https pages)."
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"{PREFIX}BASE_URL={value!r} must not have a query or fragment.")
    return value.rstrip("/")


def _development_secret(data_dir: Path) -> str:
    """A per-installation random key kept beside the dev database, never a fixed default."""
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


def _reject_unknown(environ: Mapping[str, str]) -> None:
    for key in environ:
        if not key.startswith(PREFIX):
            continue
        name = key.removeprefix(PREFIX)
        if name in SETTING_NAMES or name.startswith("TEST_"):
            continue
        close = difflib.get_close_matches(name, sorted(SETTING_NAMES), n=1)
        hint = f" Did you mean {PREFIX}{close[0]}?" if close else ""
        raise ConfigError(f"{key} is not a Rebound setting.{hint} See the README's settings table.")


def load_settings(
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    make_secret: Callable[[Path], str] = _development_secret,
) -> Settings:
    """Read and validate settings from the environment; `overrides` win (used by tests)."""
    environ = dict(os.environ if environ is None else environ)
    _reject_unknown(environ)
    raw = {s.name: environ.get(PREFIX + s.name, s.default) for s in SETTINGS}
    extra: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        if key in SETTING_NAMES:
            raw[key] = value
        else:
            extra[key] = value

    env = _choice("ENV", str(raw["ENV"]).strip().lower(), ENVIRONMENTS)
    production = env == "production"
    data_dir = Path(str(raw["DATA_DIR"])).expanduser().resolve()

    database_url = raw["DATABASE_URL"]
    if not database_url:
        if production:
            raise ConfigError(
                f"{PREFIX}DATABASE_URL is required in production "
                "(e.g. postgresql://rebound@db.internal:5432/rebound)."
            )
        database_url = f"sqlite:///{data_dir / 'rebound.sqlite3'}"

    secret_key = raw["SECRET_KEY"]
    if not secret_key:
        if production:
            raise ConfigError(
                f"{PREFIX}SECRET_KEY is required in production; generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`."
            )
        secret_key = make_secret(data_dir)
    if production and (
        len(secret_key) < MIN_SECRET_KEY_LENGTH or secret_key.lower() in WEAK_SECRET_KEYS
    ):
        raise ConfigError(
            f"{PREFIX}SECRET_KEY is too weak for production: use at least "
            f"{MIN_SECRET_KEY_LENGTH} random characters."
        )

    return Settings(
        env=env,
        database_url=normalise_database_url(str(database_url)),
        secret_key=str(secret_key),
        base_url=_check_base_url(str(raw["BASE_URL"]), production=production),
        data_dir=data_dir,
        trusted_proxy_hops=_positive_int("TRUSTED_PROXY_HOPS", str(raw["TRUSTED_PROXY_HOPS"])),
        max_request_bytes=_positive_int(
            "MAX_REQUEST_BYTES", str(raw["MAX_REQUEST_BYTES"]), minimum=1024
        ),
        log_level=_choice("LOG_LEVEL", str(raw["LOG_LEVEL"]).upper(), LOG_LEVELS),
        log_format=_choice(
            "LOG_FORMAT",
            str(raw["LOG_FORMAT"] or ("json" if production else "text")).lower(),
            LOG_FORMATS,
        ),
        login_max_failures=_positive_int(
            "LOGIN_MAX_FAILURES", str(raw["LOGIN_MAX_FAILURES"]), minimum=1
        ),
        login_lockout_seconds=_positive_int(
            "LOGIN_LOCKOUT_SECONDS", str(raw["LOGIN_LOCKOUT_SECONDS"]), minimum=1
        ),
        retention_days=(
            _positive_int("RETENTION_DAYS", str(raw["RETENTION_DAYS"]), minimum=1)
            if raw["RETENTION_DAYS"] not in (None, "")
            else None
        ),
        roster_sync_minutes=_positive_int("ROSTER_SYNC_MINUTES", str(raw["ROSTER_SYNC_MINUTES"]), minimum=1),
        extra=extra,
    )
