"""A scripted LMS for launch tests: it starts the OIDC login, signs the id_token, posts it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from course.database import db
from course.models import Platform
from plugin import claims as c
from plugin.platform_keys import FetchError
from plugin.registrations import register_platform

TOOL = "https://rebound.test"
ISSUER = "https://lms.example.edu"
CLIENT_ID = "rebound-client-1"
DEPLOYMENT_ID = "deployment-1"
JWKS_URL = "https://lms.example.edu/jwks"
AUTH_URL = "https://lms.example.edu/auth"


@dataclass
class Login:
    """What the tool sent the LMS's authentication endpoint."""

    state: str
    nonce: str
    params: dict[str, str]


@dataclass
class LmsDouble:
    """One registered platform, its signing key and a browser (the test client)."""

    app: Flask
    client: FlaskClient
    key: Any
    kid: str
    issuer: str = ISSUER
    client_id: str = CLIENT_ID
    jwks_documents: dict[str, str] = field(default_factory=dict)
    fetches: list[str] = field(default_factory=list)

    def register(self, **fields: Any) -> Platform:
        platform = register_platform(
            db.session,
            name="Example LMS",
            issuer=self.issuer,
            client_id=self.client_id,
            auth_login_url=AUTH_URL,
            auth_token_url="https://lms.example.edu/token",
            jwks_url=JWKS_URL,
            deployment_ids=[DEPLOYMENT_ID],
            **fields,
        )
        db.session.commit()
        return platform

    def fetch(self, url: str) -> str:
        self.fetches.append(url)
        if url not in self.jwks_documents:
            raise FetchError("connection refused")
        return self.jwks_documents[url]

    def login(self, **overrides: str) -> Login:
        """Start a launch as the LMS does: the browser posts the login initiation form."""
        data = {
            "iss": self.issuer,
            "login_hint": "user-42",
            "target_link_uri": f"{TOOL}/lti/launch",
            "client_id": self.client_id,
            "lti_deployment_id": DEPLOYMENT_ID,
            **overrides,
        }
        response = self.client.post("/lti/login", data={k: v for k, v in data.items() if v is not None})
        assert response.status_code == 302, response.get_data(as_text=True)
        params = {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}
        return Login(state=params["state"], nonce=params["nonce"], params=params)

    def claims(self, login: Login | None = None, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.client_id,
            "sub": "user-42",
            "iat": now,
            "exp": now + 300,
            "nonce": login.nonce if login else "nonce",
            "name": "Ada Lovelace",
            "given_name": "Ada",
            "family_name": "Lovelace",
            "email": "ada@example.com",
            c.VERSION: "1.3.0",
            c.MESSAGE_TYPE: c.RESOURCE_LINK_REQUEST,
            c.DEPLOYMENT_ID: DEPLOYMENT_ID,
            c.TARGET_LINK_URI: f"{TOOL}/lti/launch",
            c.RESOURCE_LINK: {"id": "link-1", "title": "Own it"},
            c.ROLES: ["http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"],
            c.CONTEXT: {"id": "course-1", "title": "Social media mistakes", "label": "SMM"},
            c.LIS: {"person_sourcedid": "sis-42"},
            c.LAUNCH_PRESENTATION: {"return_url": "https://school.example.edu/course/1"},
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, claims: dict[str, Any], key: Any = None, kid: str | None = None) -> str:
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": kid or self.kid})

    def post_launch(self, id_token: str, state: str, client: FlaskClient | None = None) -> TestResponse:
        return (client or self.client).post("/lti/launch", data={"id_token": id_token, "state": state})

    def launch(self, **claim_overrides: Any) -> TestResponse:
        """A whole, valid launch: login, then the signed id_token posted back."""
        login = self.login()
        return self.post_launch(self.sign(self.claims(login, **claim_overrides)), login.state)


_KEY: list[Any] = []


def platform_key() -> tuple[Any, str]:
    """One RSA key for the test platform, made once per test run (key generation is slow)."""
    if not _KEY:
        from cryptography.hazmat.primitives.asymmetric import rsa

        from plugin.tool_keys import jwk_thumbprint

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _KEY.append((key, jwk_thumbprint(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True))))
    return _KEY[0]  # type: ignore[no-any-return]


def platform_jwks() -> str:
    import json

    key, kid = platform_key()
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return json.dumps({"keys": [{**jwk, "kid": kid, "alg": "RS256", "use": "sig"}]})


def register_development_lms(app: Flask, tool: str = TOOL) -> Platform:
    """The built-in development LMS registered with the tool, which reads its JWKS in-process."""
    from urllib.parse import urlsplit

    from plugin.dev_lms import platform as dev_lms

    urls = dev_lms.urls(tool)
    platform = register_platform(
        db.session, name="Rebound development LMS", issuer=urls["issuer"], client_id=dev_lms.CLIENT_ID,
        auth_login_url=urls["auth"], auth_token_url=urls["token"], jwks_url=urls["jwks"],
        deployment_ids=[dev_lms.DEPLOYMENT_ID],
    )
    db.session.commit()
    fetcher = app.test_client()

    def fetch(url: str) -> str:
        response = fetcher.get(urlsplit(url).path, base_url=tool)
        if response.status_code != 200:
            raise FetchError(f"HTTP status {response.status_code}")
        return response.get_data(as_text=True)

    app.extensions["rebound.http_fetch"] = fetch
    return platform
