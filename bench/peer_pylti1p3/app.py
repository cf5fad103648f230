"""A minimal LTI 1.3 tool on pylti1p3 2.0 and Flask, the way pylti1p3's documentation builds one.

It does what Rebound's launch does, with pylti1p3's own machinery: the OIDC login
redirect (state cookie, nonce in the Flask session), the id_token post (pylti1p3's
validation, the platform's JWKS fetched over https and cached per process), the user
and the placement upserted in PostgreSQL, a 303 to a landing URL that restores the
launch, and a course home page read from the database. Its settings come from the
BENCH_PEER_CONFIG environment variable (JSON), set by bench/launch_bench.py.
"""

from __future__ import annotations

import json
import os
import secrets
import typing as t
from datetime import UTC, datetime

from flask import Flask, abort, redirect, render_template_string, session
from pylti1p3.contrib.flask import FlaskMessageLaunch, FlaskOIDCLogin, FlaskRequest
from pylti1p3.launch_data_storage.base import LaunchDataStorage
from pylti1p3.tool_config import ToolConfDict
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    create_engine,
    select,
)
from sqlalchemy.dialects.postgresql import insert
from werkzeug.wrappers import Response

metadata = MetaData()
users = Table(
    "peer_users", metadata,
    Column("id", Integer, primary_key=True),
    Column("issuer", String(255), nullable=False),
    Column("sub", String(255), nullable=False),
    Column("name", String(255)),
    Column("email", String(255)),
    Column("last_launch_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("issuer", "sub"),
)
placements = Table(
    "peer_placements", metadata,
    Column("id", Integer, primary_key=True),
    Column("issuer", String(255), nullable=False),
    Column("context_id", String(255), nullable=False),
    Column("resource_link_id", String(255), nullable=False),
    Column("title", String(255)),
    UniqueConstraint("issuer", "context_id", "resource_link_id"),
)
CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
HOME = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title></head>
<body><main><h1>{{ title }}</h1><p>Welcome, {{ user.name }}.</p>
<ol>{% for module in modules %}<li>{{ module }}</li>{% endfor %}</ol></main></body></html>"""


class ProcessKeyCache(LaunchDataStorage[t.Any]):
    """pylti1p3's public-key cache kept in process memory (what Flask-Caching's SimpleCache does)."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, t.Any] = {}

    def can_set_keys_expiration(self) -> bool:
        return True

    def get_value(self, key: str) -> t.Any:
        return self.values.get(self._prepare_key(key))

    def set_value(self, key: str, value: t.Any, exp: int | None = None) -> None:
        self.values[self._prepare_key(key)] = value

    def check_value(self, key: str) -> bool:
        return self._prepare_key(key) in self.values


def create_schema(database_url: str) -> None:
    """The peer's two tables (called by the benchmark before the server starts)."""
    engine = create_engine(database_url)
    metadata.create_all(engine)
    engine.dispose()


def _upsert(engine: Engine, claims: dict[str, t.Any]) -> tuple[int, int]:
    now = datetime.now(UTC)
    with engine.begin() as connection:
        user_id = connection.execute(
            insert(users).values(issuer=claims["iss"], sub=claims["sub"], name=claims.get("name"),
                                 email=claims.get("email"), last_launch_at=now)
            .on_conflict_do_update(index_elements=["issuer", "sub"],
                                   set_={"name": claims.get("name"), "email": claims.get("email"),
                                         "last_launch_at": now})
            .returning(users.c.id)
        ).scalar_one()
        link = claims[CLAIM + "resource_link"]
        placement_id = connection.execute(
            insert(placements).values(issuer=claims["iss"], context_id=claims[CLAIM + "context"]["id"],
                                      resource_link_id=link["id"], title=link.get("title"))
            .on_conflict_do_update(index_elements=["issuer", "context_id", "resource_link_id"],
                                   set_={"title": link.get("title")})
            .returning(placements.c.id)
        ).scalar_one()
    return int(user_id), int(placement_id)


def create_peer_app() -> Flask:
    """The peer tool, configured from BENCH_PEER_CONFIG."""
    config = json.loads(os.environ["BENCH_PEER_CONFIG"])
    app = Flask("peer_pylti1p3")
    app.secret_key = config.get("secret_key") or secrets.token_urlsafe(32)
    app.config.update(SESSION_COOKIE_SECURE=True, SESSION_COOKIE_SAMESITE="None")
    tool_conf = ToolConfDict({
        config["issuer"]: [{
            "default": True,
            "client_id": config["client_id"],
            "auth_login_url": config["auth_login_url"],
            "auth_token_url": config["auth_login_url"].replace("/auth", "/token"),
            "key_set_url": config["jwks_url"],
            "deployment_ids": [config["deployment_id"]],
        }]
    })
    key_cache = ProcessKeyCache()
    engine = create_engine(config["database_url"], pool_size=8, max_overflow=4)
    launch_url = config["base_url"] + "/lti/launch"

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    @app.route("/lti/login", methods=["GET", "POST"])
    def login() -> Response:
        return FlaskOIDCLogin(FlaskRequest(), tool_conf).redirect(launch_url)  # type: ignore[no-any-return]

    @app.post("/lti/launch")
    def launch() -> Response:
        message = FlaskMessageLaunch(FlaskRequest(), tool_conf)
        message.set_public_key_caching(key_cache, cache_lifetime=7200)
        claims = message.get_launch_data()
        user_id, placement_id = _upsert(engine, claims)
        session["user_id"], session["placement_id"] = user_id, placement_id
        return redirect(f"/lti/landing?launch={message.get_launch_id()}", code=303)

    @app.get("/lti/landing")
    def landing() -> Response:
        from flask import request

        restored = FlaskMessageLaunch.from_cache(request.args.get("launch", ""), FlaskRequest(), tool_conf)
        if restored.check_jwt_body_is_empty() or "user_id" not in session:
            abort(400)
        return redirect(f"/p/{session['placement_id']}/", code=303)

    @app.get("/p/<int:placement_id>/")
    def home(placement_id: int) -> str:
        if session.get("placement_id") != placement_id:
            abort(404)
        with engine.connect() as connection:
            user = connection.execute(select(users).where(users.c.id == session["user_id"])).one()
            placement = connection.execute(select(placements).where(placements.c.id == placement_id)).one()
        return render_template_string(HOME, title=placement.title, user=user,
                                      modules=["Recognise", "Own", "Learn"])

    return app
