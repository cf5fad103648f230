"""Shared fixtures: every test that uses `app` runs once on SQLite and once on PostgreSQL.

Each run gets its own PostgreSQL database (so parallel runs never collide), migrated
once; each test runs inside a transaction that is rolled back at its end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, g, has_app_context
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from course import migrate
from course.accounts.services import create_account
from course.app import create_app
from course.database import db, make_engine
from course.models import Deployment, LocalAccount, Platform

POSTGRES_URL = os.environ.get(
    "REBOUND_TEST_POSTGRES_URL", "postgresql+psycopg://127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() == "true"
TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"
DEFAULT_PASSWORD = "correct horse battery staple"
BACKENDS = ("sqlite", "postgresql")


def _postgres_admin_engine() -> Engine:
    return create_engine(
        make_url(POSTGRES_URL).set(drivername="postgresql+psycopg"),
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 3},
    )


class Databases:
    """Creates throwaway databases for this test run and drops them at its end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.created: list[str] = []

    def new_url(self, backend: str) -> str:
        """The URL of a new, empty database on `backend`."""
        name = f"rebound_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        if backend == "sqlite":
            return f"sqlite:///{self.tmp / (name + '.sqlite3')}"
        admin = _postgres_admin_engine()
        try:
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        except OperationalError as error:
            message = f"PostgreSQL is not reachable at {POSTGRES_URL}: {error.orig}"
            if IN_CI:
                pytest.fail(message + " (CI=true: PostgreSQL tests may not be skipped)")
            pytest.skip(message)
        finally:
            admin.dispose()
        self.created.append(name)
        return make_url(POSTGRES_URL).set(drivername="postgresql+psycopg", database=name).render_as_string(
            hide_password=False
        )

    def drop_all(self) -> None:
        if not self.created:
            return
        admin = _postgres_admin_engine()
        with admin.connect() as connection:
            for name in self.created:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    manager = Databases(tmp_path_factory.mktemp("databases"))
    yield manager
    manager.drop_all()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The database backend a test runs on (the id in brackets after its name)."""
    return str(request.param)


@pytest.fixture(scope="session")
def database_url(backend: str, databases: Databases) -> str:
    """A database migrated to head, shared by the tests of one backend."""
    url = databases.new_url(backend)
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture
def empty_database_url(backend: str, databases: Databases) -> str:
    """A new database with no tables at all."""
    return databases.new_url(backend)


class FreshRequestClient(FlaskClient):
    """A test client whose every request starts with a fresh `g`, as on a real server.

    pytest-flask keeps one app context open for the whole test, and Flask reuses it for
    each request, so without this one browser's cached CSRF token (flask-wtf keeps it in
    `g`) would leak into the next browser's request. Only the test's database session,
    bound to the rolled-back transaction, is shared.
    """

    def open(self, *args: Any, **kwargs: Any) -> Any:
        if has_app_context():
            for key in [key for key in vars(g) if key != "db_session"]:
                g.pop(key)
        return super().open(*args, **kwargs)


@pytest.fixture
def app_factory(tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Build an app with test settings; keyword arguments override settings.

    Every app built is closed at the end of the test, so no connection outlives it.
    """
    built: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        config = {
            "SECRET_KEY": TEST_SECRET,
            "DATA_DIR": str(tmp_path / "data"),
            "BASE_URL": "https://rebound.test",
            "LOG_FORMAT": "json",
            "TESTING": True,
        }
        config.update(overrides)
        application = create_app(config)
        application.test_client_class = FreshRequestClient
        built.append(application)
        return application

    yield build
    for application in built:
        db.state(application).engine.dispose()


@pytest.fixture
def app(app_factory: Callable[..., Flask], database_url: str) -> Iterator[Flask]:
    """The app on the migrated database; everything a test writes is rolled back after it."""
    application = app_factory(DATABASE_URL=database_url)
    state = db.state(application)
    connection = state.engine.connect()
    transaction = connection.begin()
    # Views call commit(); with savepoints those commits stay inside the outer transaction.
    state.sessions.configure(bind=connection, join_transaction_mode="create_savepoint")
    yield application
    transaction.rollback()
    connection.close()
    state.engine.dispose()


@pytest.fixture
def make_platform(app: Flask) -> Callable[..., Platform]:
    """Factory: a registered platform with one deployment."""
    counter = iter(range(1, 10_000))

    def make(
        issuer: str | None = None, client_id: str | None = None, deployment_id: str = "dep-1", **fields: Any
    ) -> Platform:
        n = next(counter)
        platform = Platform(
            name=fields.pop("name", f"Test LMS {n}"),
            issuer=issuer or f"https://lms{n}.example.edu",
            client_id=client_id or f"client-{n}",
            auth_login_url=f"https://lms{n}.example.edu/auth",
            auth_token_url=f"https://lms{n}.example.edu/token",
            jwks_url=f"https://lms{n}.example.edu/jwks",
            **fields,
        )
        platform.deployments.append(Deployment(deployment_id=deployment_id))
        db.session.add(platform)
        db.session.commit()
        return platform

    return make


@pytest.fixture
def make_account(app: Flask, make_platform: Callable[..., Platform]) -> Callable[..., LocalAccount]:
    """Factory: a local staff account (hr and trainer get a platform of their own by default)."""

    def make(
        username: str = "hr.person",
        role: str = "hr",
        password: str = DEFAULT_PASSWORD,
        platform: Platform | None = None,
        **fields: Any,
    ) -> LocalAccount:
        if platform is None and role != "admin":
            platform = make_platform()
        account = create_account(
            db.session, username=username, role=role, password=password, platform=platform, **fields
        )
        db.session.commit()
        return account

    return make


@pytest.fixture
def course_content(app: Flask) -> None:
    """The shipped lessons and cases, imported as on first start."""
    from course.content import content_kinds, import_shipped
    from course.database import utcnow

    import_shipped(db.session, list(content_kinds(app).values()), utcnow())
    db.session.commit()


LEARNER_ROLE = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"
INSTRUCTOR_ROLE = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"
ADMIN_ROLE = "http://purl.imsglobal.org/vocab/lis/v2/institution/person#Administrator"


@pytest.fixture
def lti_platform(app: Flask) -> Any:
    """A registered LMS that can launch Rebound through the real /lti/login and /lti/launch."""
    from tests.plugin.lms_double import JWKS_URL, LmsDouble, platform_jwks, platform_key

    key, kid = platform_key()
    double = LmsDouble(app=app, client=app.test_client(), key=key, kid=kid)
    double.jwks_documents[JWKS_URL] = platform_jwks()
    app.extensions["rebound.http_fetch"] = double.fetch
    double.register()
    return double


@pytest.fixture
def launch_as(app: Flask, lti_platform: Any, course_content: None) -> Callable[..., Any]:
    """Factory: a browser launched into a placement as someone; returns (client, placement)."""
    from sqlalchemy import select

    from course.models import Placement
    from plugin import claims as c

    def launch(
        sub: str = "learner-1", role: str = LEARNER_ROLE, resource_link: str = "link-1", custom: dict | None = None,
        context: str = "course-1", name: str = "Ada Lovelace",
    ) -> tuple[Any, Placement]:
        browser = app.test_client()
        lti_platform.client = browser
        response = lti_platform.launch(
            sub=sub, name=name,
            **{c.ROLES: [role], c.RESOURCE_LINK: {"id": resource_link, "title": "Rebound"},
               c.CUSTOM: custom or {}, c.CONTEXT: {"id": context, "title": "Social media at Acme"}},
        )
        assert response.status_code == 303, response.get_data(as_text=True)
        placement = db.session.scalar(select(Placement).where(Placement.resource_link_id == resource_link))
        assert placement is not None
        return browser, placement

    return launch
