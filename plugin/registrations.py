"""Registering LMS platforms (tenants) and their deployments, and finding them at launch."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, selectinload

from course.models import Deployment, Platform
from plugin.errors import LaunchError
from plugin.roles import normalize_overrides

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


class RegistrationError(ValueError):
    """A registration can't be stored as given; the message says which field and why."""


@dataclass(frozen=True)
class PlatformRegistration:
    """The validation view of a platform (implements `plugin.id_token.Registration`)."""

    issuer: str
    client_id: str
    deployment_ids: frozenset[str]


def registration_of(platform: Platform) -> PlatformRegistration:
    """What id_token validation needs to know about a platform."""
    return PlatformRegistration(
        issuer=platform.issuer,
        client_id=platform.client_id,
        deployment_ids=frozenset(d.deployment_id for d in platform.deployments),
    )


def check_url(value: str, field: str, *, allow_http_hosts: Iterable[str] = LOCAL_HOSTS) -> str:
    """An absolute https URL (http only for local hosts, for development LMSes)."""
    value = (value or "").strip()
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise RegistrationError(f"{field} must be an absolute https URL, not {value!r}.")
    if parts.scheme == "http" and parts.hostname not in set(allow_http_hosts):
        raise RegistrationError(f"{field} must use https ({value!r} uses http).")
    if parts.fragment:
        raise RegistrationError(f"{field} must not contain a #fragment.")
    return value


def origin_of(url: str) -> str:
    """scheme://host[:port] of a URL."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def register_platform(
    session: Session,
    *,
    name: str,
    issuer: str,
    client_id: str,
    auth_login_url: str,
    auth_token_url: str,
    jwks_url: str,
    deployment_ids: Iterable[str] = (),
    auth_token_audience: str | None = None,
    registration: str = "static",
    role_overrides: dict[str, list[str]] | None = None,
    frame_origins: Iterable[str] = (),
    http_hosts_allowed: bool = True,
) -> Platform:
    """Store a new platform registration after checking every field."""
    name, issuer, client_id = name.strip(), issuer.strip(), client_id.strip()
    if not name:
        raise RegistrationError("name must not be empty.")
    if not client_id:
        raise RegistrationError("client_id must not be empty.")
    # Plain http is only ever accepted for LMSes on this machine, and never in production.
    hosts = LOCAL_HOSTS if http_hosts_allowed else set()
    check_url(issuer, "issuer", allow_http_hosts=hosts)
    urls = {
        "auth_login_url": check_url(auth_login_url, "auth_login_url", allow_http_hosts=hosts),
        "auth_token_url": check_url(auth_token_url, "auth_token_url", allow_http_hosts=hosts),
        "jwks_url": check_url(jwks_url, "jwks_url", allow_http_hosts=hosts),
    }
    origins = [origin_of(check_url(o, "frame origin", allow_http_hosts=hosts)) for o in frame_origins]
    if auth_token_audience:
        auth_token_audience = auth_token_audience.strip()
    try:
        normalize_overrides(role_overrides or {})
    except ValueError as error:
        raise RegistrationError(str(error)) from None
    existing = session.scalar(
        select(Platform).where(Platform.issuer == issuer, Platform.client_id == client_id)
    )
    if existing is not None:
        raise RegistrationError(
            f"Platform {issuer} with client_id {client_id} is already registered (id {existing.id})."
        )
    platform = Platform(
        name=name,
        issuer=issuer,
        client_id=client_id,
        auth_token_audience=auth_token_audience or None,
        registration=registration,
        role_overrides=role_overrides or {},
        frame_origins=origins,
        **urls,
    )
    for deployment_id in dict.fromkeys(d.strip() for d in deployment_ids if d.strip()):
        platform.deployments.append(Deployment(deployment_id=deployment_id))
    session.add(platform)
    session.flush()
    return platform


def add_deployment(session: Session, platform: Platform, deployment_id: str) -> Deployment:
    """Add a deployment id to a platform (no-op if it is already there)."""
    deployment_id = deployment_id.strip()
    if not deployment_id:
        raise RegistrationError("deployment_id must not be empty.")
    for deployment in platform.deployments:
        if deployment.deployment_id == deployment_id:
            return deployment
    deployment = Deployment(deployment_id=deployment_id)
    platform.deployments.append(deployment)
    session.flush()
    return deployment


def all_platforms(session: Session) -> list[Platform]:
    """Every registered platform with its deployments."""
    return list(
        session.scalars(
            select(Platform).options(selectinload(Platform.deployments)).order_by(Platform.id)
        )
    )


def get_platform(session: Session, reference: str) -> Platform:
    """A platform by id, or by issuer when that is unambiguous; RegistrationError otherwise."""
    if reference.isdigit():
        platform = session.get(Platform, int(reference))
        if platform is None:
            raise RegistrationError(f"No platform has id {reference}.")
        return platform
    matches = list(session.scalars(select(Platform).where(Platform.issuer == reference)))
    if not matches:
        raise RegistrationError(f"No platform has issuer {reference!r}.")
    if len(matches) > 1:
        ids = ", ".join(str(p.id) for p in matches)
        raise RegistrationError(f"Several platforms share issuer {reference!r} (ids {ids}); use an id.")
    return matches[0]


def platform_for_login(session: Session, issuer: str, client_id: str | None) -> Platform:
    """The registration an OIDC login names; a LaunchError says what is unknown."""
    query = select(Platform).where(Platform.issuer == issuer, Platform.active.is_(True))
    if client_id:
        query = query.where(Platform.client_id == client_id)
    # Deployments joined into the same round trip (login checks the deployment id).
    matches = list(session.scalars(query.options(joinedload(Platform.deployments))).unique())
    if len(matches) == 1:
        return matches[0]
    if not matches:
        known_issuer = session.scalar(select(Platform.id).where(Platform.issuer == issuer))
        if known_issuer is not None and client_id:
            raise LaunchError(
                "client-unknown",
                "This LMS connection is not set up in Rebound yet.",
                f"Rebound knows the issuer {issuer} but not the client_id {client_id}. "
                "Register this client with `rebound platforms add` or dynamic registration.",
                details={"issuer": issuer, "client_id": client_id},
            )
        raise LaunchError(
            "issuer-unknown",
            "This LMS is not registered with Rebound.",
            f"No platform with issuer {issuer!r} is registered. Register it with "
            "`rebound platforms add` or paste Rebound's dynamic registration URL into the LMS.",
            details={"issuer": issuer, "client_id": client_id},
        )
    raise LaunchError(
        "client-id-needed",
        "Rebound can't tell which connection of this LMS is launching.",
        f"Several registrations share the issuer {issuer}; the LMS must send client_id in the "
        "login request (LTI 1.3 lets it). Check the tool's configuration in the LMS.",
        details={"issuer": issuer},
    )


def frame_ancestor_origins(session: Session) -> list[str]:
    """Origins allowed to frame Rebound: every active platform's login and issuer origins."""
    rows = session.execute(
        select(Platform.issuer, Platform.auth_login_url, Platform.frame_origins).where(
            Platform.active.is_(True)
        )
    ).all()
    origins = set()
    for issuer, login_url, learned in rows:
        origins |= {origin_of(issuer), origin_of(login_url), *(learned or [])}
    return sorted(o for o in origins if o.startswith(("https://", "http://")))
