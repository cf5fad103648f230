"""The LTI 1.3 launch: OIDC login, id_token acceptance, and the launch record a session is
built from. Plain functions over a database session; the views in `blueprint.py` are thin."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

from sqlalchemy import Select, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from course.completion import SETTING_KEYS, Rule, RuleError, rule_from_settings, save_rule
from course.database import utcnow
from course.models import Context, Placement, Platform, User
from plugin.claims import LaunchMessage
from plugin.errors import LaunchError
from plugin.id_token import validate_id_token
from plugin.models import Launch, LoginState
from plugin.platform_keys import KeySource
from plugin.registrations import origin_of, platform_for_login, registration_of
from plugin.roles import explain_roles
from plugin.stores import DatabaseNonceStore

LOGIN_TTL = timedelta(minutes=10)
LAUNCH_TTL = timedelta(minutes=10)
PURGE_ONE_LOGIN_IN = 20
MAX_FRAME_ORIGINS = 20
# How stale the platform's "last launch" may get: every launch of a tenant wrote its one
# platform row, so launches queued on that row's lock (bench/launch_bench.py); the health
# page needs it to the minute, not to the request.
PLATFORM_HEALTH_EVERY = timedelta(minutes=1)
SKEW_CHANGE_SECONDS = 5  # a skew that moved this much is news; a second of jitter is not
# A custom parameter that points a placement at part of the course: "lesson:<id>", "case:<id>".
TARGET_PARAMETER = "rebound_target"
TARGET_KINDS = ("course", "module", "lesson", "case")
# A custom parameter with a placement's completion options, as Deep Linking writes it: a
# JSON object with course.completion's settings keys (counted_cases, pass_marks, due_at...).
RULE_PARAMETER = "rebound_rule"

logger = logging.getLogger("rebound.lti")
Row = TypeVar("Row")


def state_cookie_name(state: str) -> str:
    """One cookie per login, so two launches in two frames never overwrite each other."""
    return "rebound_lti_" + hashlib.sha256(state.encode()).hexdigest()[:16]


def token_hash(token: str) -> str:
    """Launch tokens are stored only as hashes."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class LoginRequest:
    """The parameters of a third-party-initiated login (LTI 1.3 Core §5.1.1)."""

    issuer: str
    login_hint: str
    target_link_uri: str
    lti_message_hint: str | None = None
    client_id: str | None = None
    deployment_id: str | None = None
    storage_target: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> LoginRequest:
        """Read the login parameters; a missing one is a LaunchError naming it."""
        missing = [name for name in ("iss", "login_hint", "target_link_uri") if not params.get(name)]
        if missing:
            raise LaunchError(
                "login-parameter-missing",
                "The LMS started the launch without information Rebound needs.",
                f"The OIDC login request lacks {', '.join(missing)}. Check that the LMS sends "
                "the standard LTI 1.3 login parameters to /lti/login.",
                details={"missing": missing},
            )
        return cls(
            issuer=params["iss"],
            login_hint=params["login_hint"],
            target_link_uri=params["target_link_uri"],
            lti_message_hint=params.get("lti_message_hint") or None,
            client_id=params.get("client_id") or None,
            deployment_id=params.get("lti_deployment_id") or None,
            storage_target=(params.get("lti_storage_target") or None),
        )


@dataclass(frozen=True)
class LoginStart:
    """Where to send the browser next, and what to remember in it."""

    platform: Platform
    state: str
    nonce: str
    auth_url: str
    storage_target: str | None


def _check_target_host(target_link_uri: str, tool_hosts: Collection[str]) -> None:
    parts = urlsplit(target_link_uri)
    host = parts.netloc.lower()
    if parts.scheme not in ("http", "https") or host not in {h.lower() for h in tool_hosts}:
        raise LaunchError(
            "target-link-uri-foreign",
            "The LMS asked Rebound to open a page that isn't Rebound's.",
            f"target_link_uri {target_link_uri!r} is not on this tool's host "
            f"({', '.join(sorted(tool_hosts))}). Check the tool URL configured in the LMS "
            "and REBOUND_BASE_URL.",
            details={"target_link_uri": target_link_uri},
        )


def begin_login(
    session: Session,
    request: LoginRequest,
    *,
    redirect_uri: str,
    tool_hosts: Collection[str],
    now: datetime,
) -> LoginStart:
    """Remember a new state and nonce and build the platform's authentication request URL."""
    platform = platform_for_login(session, request.issuer, request.client_id)
    if request.deployment_id and request.deployment_id not in registration_of(platform).deployment_ids:
        raise LaunchError(
            "deployment-unknown",
            "This placement of Rebound in the LMS is not registered.",
            f"Deployment {request.deployment_id!r} is not registered for {platform.issuer}. Add "
            f"it with `rebound platforms add-deployment {platform.id} {request.deployment_id}`.",
            details={"issuer": platform.issuer, "deployment_id": request.deployment_id},
        )
    _check_target_host(request.target_link_uri, tool_hosts)
    if secrets.randbelow(PURGE_ONE_LOGIN_IN) == 0:
        # Expired states are harmless (a launch checks the expiry), so sweeping them on a
        # share of logins saves every other login a round trip (bench/launch_bench.py).
        session.execute(delete(LoginState).where(LoginState.expires_at < now))
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    session.add(
        LoginState(
            state=state,
            nonce=nonce,
            platform_id=platform.id,
            target_link_uri=request.target_link_uri,
            storage_target=request.storage_target,
            created_at=now,
            expires_at=now + LOGIN_TTL,
        )
    )
    params = {
        "scope": "openid",
        "response_type": "id_token",
        "response_mode": "form_post",
        "prompt": "none",
        "client_id": platform.client_id,
        "redirect_uri": redirect_uri,
        "login_hint": request.login_hint,
        "state": state,
        "nonce": nonce,
    }
    if request.lti_message_hint:
        params["lti_message_hint"] = request.lti_message_hint
    separator = "&" if urlsplit(platform.auth_login_url).query else "?"
    return LoginStart(
        platform=platform,
        state=state,
        nonce=nonce,
        auth_url=platform.auth_login_url + separator + urlencode(params),
        storage_target=request.storage_target,
    )


@dataclass(frozen=True)
class AcceptedLaunch:
    """A launch whose token passed every check, recorded and ready to become a session."""

    launch: Launch
    token: str
    message: LaunchMessage
    platform: Platform
    user: User
    placement: Placement | None
    roles: frozenset[str]


def _claim_state(session: Session, state: str, now: datetime) -> LoginState:
    login = session.get(LoginState, state) if state else None
    if login is None:
        raise LaunchError(
            "state-unknown",
            "This launch could not be matched to one Rebound started. Please start the "
            "activity again from the LMS.",
            "The state parameter is unknown: the login step did not go through this Rebound "
            "installation, or it was cleaned up long ago.",
        )
    if login.expires_at < now:
        raise LaunchError(
            "state-expired",
            "This launch took too long to complete. Please start the activity again from the LMS.",
            f"The login started more than {int(LOGIN_TTL.total_seconds() // 60)} minutes before "
            "the launch arrived.",
            details={"platform_id": login.platform_id},
        )
    if login.used_at is not None:
        raise LaunchError(
            "state-replayed",
            "This launch was already used. Please start the activity again from the LMS.",
            "The same state arrived twice: a reload or back button re-posted the launch form, "
            "or it was replayed.",
            details={"platform_id": login.platform_id},
        )
    return login


def accept_launch(
    session: Session,
    *,
    id_token: str,
    state: str,
    browser_state: str | None,
    cookies_work: bool,
    key_source_for: Callable[[Platform], KeySource],
    tool_hosts: Collection[str],
    now: datetime,
) -> AcceptedLaunch:
    """Validate the id_token against the state it answers and record who launched where.

    `browser_state` is the state the browser's cookie remembered (None when the cookie
    did not come back). A browser that keeps our cookies but not this state's is not the
    one that started the login, and is refused.
    """
    if not id_token:
        raise LaunchError(
            "id-token-missing",
            "The LMS sent an empty launch. Please start the activity again from the LMS.",
            "The POST to /lti/launch carried no id_token; the platform must use form_post.",
        )
    login = _claim_state(session, state, now)
    # With its deployments in the same query: validation and the placement both need them.
    platform = session.get(Platform, login.platform_id, options=[joinedload(Platform.deployments)])
    assert platform is not None  # the foreign key guarantees it
    if browser_state is not None and not hmac.compare_digest(browser_state, state):
        raise LaunchError(
            "state-mismatch",
            "This launch was started in another browser. Please start the activity again from the LMS.",
            "The state cookie does not match the state the platform returned.",
            details={"platform_id": platform.id},
        )
    if browser_state is None and cookies_work:
        raise LaunchError(
            "state-mismatch",
            "This launch was not started in this browser. Please start the activity again from the LMS.",
            "The browser keeps Rebound's cookies but has none for this login: the launch form "
            "was probably submitted from somewhere else (login CSRF).",
            details={"platform_id": platform.id},
        )
    message = validate_id_token(
        id_token,
        registration=registration_of(platform),
        key_source=key_source_for(platform),
        nonce_store=DatabaseNonceStore(session),
        now=now,
        tool_hosts=tool_hosts,
        expected_nonce=login.nonce,
    )
    claimed = session.execute(
        update(LoginState)
        .where(LoginState.state == state, LoginState.used_at.is_(None))
        .values(used_at=now)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise LaunchError(
            "state-replayed",
            "This launch was already used. Please start the activity again from the LMS.",
            "Two launches raced for the same state; only the first counts.",
        )
    if message.is_anonymous:
        raise LaunchError(
            "anonymous-launch",
            "Rebound needs to know who you are to keep your progress, but the LMS launched "
            "it anonymously (for example from a public or preview page).",
            "The id_token has no sub claim. Launch Rebound from a course where the learner "
            "is signed in, and let the tool receive the user's identity.",
            status=403,
            details={"platform_id": platform.id},
        )

    mapping = explain_roles(message.roles, platform.role_overrides)
    if mapping.unrecognized:
        logger.info("unrecognised LTI roles", extra={"roles": list(mapping.unrecognized)})
    user = _upsert_user(session, platform, message, now)
    placement = _record_placement(session, platform, message, now)
    _remember_platform_health(platform, message, now)

    token = secrets.token_urlsafe(32)
    launch = Launch(
        token_hash=token_hash(token),
        platform_id=platform.id,
        user_id=user.id,
        placement_id=placement.id if placement else None,
        message_type=message.message_type,
        roles=sorted(mapping.roles),
        context=_session_context(message, platform),
        state=state,
        browser_bound=browser_state is not None,
        created_at=now,
        expires_at=now + LAUNCH_TTL,
    )
    session.add(launch)
    session.flush()
    return AcceptedLaunch(launch, token, message, platform, user, placement, mapping.roles)


def _upsert_user(session: Session, platform: Platform, message: LaunchMessage, now: datetime) -> User:
    assert message.subject is not None
    # The LMS is the source of truth for names and emails: refresh them on every launch.
    fresh = {
        "name": message.name or " ".join(filter(None, (message.given_name, message.family_name))) or None,
        "given_name": message.given_name,
        "family_name": message.family_name,
        "email": message.email,
        "lis_person_sourcedid": message.lis_person_sourcedid,
        "last_launch_at": now,
        "updated_at": utcnow(),
    }
    # One round trip where a SELECT and an UPDATE took two; a course's first learners arriving
    # together meet in ON CONFLICT rather than in a unique-key error.
    statement = (
        _insert_for(session)(User)
        .values(platform_id=platform.id, sub=message.subject, created_at=fresh["updated_at"], **fresh)
        .on_conflict_do_update(index_elements=[User.platform_id, User.sub], set_=fresh)
        .returning(User)
    )
    return session.scalars(statement, execution_options={"populate_existing": True}).one()


def _insert_for(session: Session):  # type: ignore[no-untyped-def]
    return (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert


def _found_or_added(session: Session, query: Select[tuple[Row]], make: Callable[[], Row]) -> Row:
    """The row a query finds, or a new one added; when a concurrent launch added it a moment
    ago (a course's first learners arriving together), the unique key refuses the second
    insert and that row is used instead of a 500 (found by bench/load_test.py)."""
    found = session.scalar(query)
    if found is not None:
        return found
    added = make()
    try:
        with session.begin_nested():
            session.add(added)
    except IntegrityError:
        found = session.scalar(query)
        if found is None:
            raise
        return found
    return added


def parse_target(value: str | None) -> tuple[str, str | None] | None:
    """Read a `rebound_target` custom parameter: "course", "module:own", "lesson:<id>"."""
    if not value:
        return None
    kind, _, ref = value.strip().partition(":")
    if kind not in TARGET_KINDS or (kind != "course" and not ref):
        return None
    return kind, (ref or None)


def parse_rule(value: str | None) -> Rule | None:
    """Read a `rebound_rule` custom parameter; anything malformed is ignored (and logged)."""
    if not value:
        return None
    try:
        raw: Any = json.loads(value)
        if not isinstance(raw, dict) or not raw.keys() & set(SETTING_KEYS):
            raise RuleError({RULE_PARAMETER: "must be a JSON object of completion settings"})
        return rule_from_settings(raw)
    except (ValueError, RuleError) as error:
        logger.warning("ignored a malformed rebound_rule custom parameter",
                       extra={"value": value[:200], "problem": str(error)[:300]})
        return None


def _record_placement(
    session: Session, platform: Platform, message: LaunchMessage, now: datetime
) -> Placement | None:
    if message.context is None or message.resource_link is None:
        return None
    # The platform's deployments were loaded for validation; no need to ask the database again.
    deployment = next(d for d in platform.deployments if d.deployment_id == message.deployment_id)
    # Usually both exist already: one query finds them together.
    known = session.execute(
        select(Context, Placement)
        .join(Placement, Placement.context_id == Context.id)
        .where(Context.deployment_id == deployment.id, Context.lms_context_id == message.context.id,
               Placement.resource_link_id == message.resource_link.id)
    ).first()
    context = known[0] if known is not None else _found_or_added(
        session,
        select(Context).where(Context.deployment_id == deployment.id, Context.lms_context_id == message.context.id),
        lambda: Context(platform_id=platform.id, deployment_id=deployment.id, lms_context_id=message.context.id),
    )
    context.title = message.context.title
    context.label = message.context.label
    if message.nrps is not None:
        context.memberships_url = message.nrps.context_memberships_url
    session.flush()

    placement = known[1] if known is not None else _found_or_added(
        session,
        select(Placement).where(
            Placement.context_id == context.id, Placement.resource_link_id == message.resource_link.id
        ),
        lambda: Placement(platform_id=platform.id, context_id=context.id, resource_link_id=message.resource_link.id),
    )
    placement.title = message.resource_link.title
    target = parse_target(message.custom.get(TARGET_PARAMETER))
    if target is not None:
        placement.target_kind, placement.target_ref = target
    elif placement.target_kind is None:
        placement.target_kind = "course"
    rule = parse_rule(message.custom.get(RULE_PARAMETER))
    # Only the first launch sets the options: later changes made in Rebound must not be
    # overwritten by the LMS re-sending what Deep Linking once put in the link.
    if rule is not None and not (placement.settings or {}).keys() & set(SETTING_KEYS):
        save_rule(session, placement, rule)
    if message.ags is not None:
        placement.lineitem_url = message.ags.lineitem_url or placement.lineitem_url
        placement.lineitems_url = message.ags.lineitems_url or placement.lineitems_url
    session.flush()
    return placement


def _remember_platform_health(platform: Platform, message: LaunchMessage, now: datetime) -> None:
    """Note the launch, the platform's clock skew and the origins it frames Rebound from.

    A new frame origin or a skew that moved is written at once (the next page's
    Content-Security-Policy needs the origin); otherwise at most once a minute.
    """
    origins = list(platform.frame_origins or [])
    origins += [origin for origin in _message_origins(message) if origin not in origins]
    origins = origins[-MAX_FRAME_ORIGINS:]
    skew = round(message.clock_skew_seconds)
    recent = platform.last_launch_at is not None and now - platform.last_launch_at < PLATFORM_HEALTH_EVERY
    known = platform.clock_skew_seconds
    steady = known is not None and abs(skew - known) < SKEW_CHANGE_SECONDS
    if recent and steady and origins == list(platform.frame_origins or []):
        return
    platform.last_launch_at = now
    platform.clock_skew_seconds = skew
    platform.frame_origins = origins


def _message_origins(message: LaunchMessage) -> list[str]:
    """The https origins of the LMS pages a launch names (where it frames Rebound from)."""
    presentation, tool_platform = message.launch_presentation, message.tool_platform
    urls = (presentation.return_url if presentation else None, tool_platform.url if tool_platform else None)
    return list(dict.fromkeys(origin_of(url) for url in urls if url and url.startswith("https://")))


def _session_context(message: LaunchMessage, platform: Platform) -> dict[str, object]:
    """What later requests of this session need from the launch (never the raw token)."""
    # The origins that frame this launch: its pages name them in frame-ancestors whatever
    # another app process knows yet of the platform (plugin/web.py).
    framing = {origin_of(platform.issuer), origin_of(platform.auth_login_url), *_message_origins(message)}
    context: dict[str, object] = {"frame_origins": sorted(o for o in framing if o.startswith(("https://", "http://")))}
    if message.launch_presentation and message.launch_presentation.return_url:
        context["return_url"] = message.launch_presentation.return_url
    if message.deep_linking is not None:
        settings = message.deep_linking
        context["deep_linking"] = {
            "return_url": settings.deep_link_return_url,
            "accept_types": list(settings.accept_types),
            "accept_multiple": settings.accept_multiple,
            "accept_lineitem": settings.accept_lineitem,
            "accept_presentation_document_targets": list(settings.accept_presentation_document_targets),
            "title": settings.title,
            "data": settings.data,
            "deployment_id": message.deployment_id,
        }
    if message.ags is not None:
        context["ags_scopes"] = list(message.ags.scopes)
    return context


def record_failure(session: Session, platform_id: int | None, error: LaunchError, now: datetime) -> None:
    """Keep the last launch error on the platform, for the admins' health page."""
    if platform_id is None:
        return
    platform = session.get(Platform, platform_id)
    if platform is not None:
        platform.last_error = f"{error.code}: {error.hint}"
        platform.last_error_at = now


def find_launch(session: Session, token: str, now: datetime) -> Launch:
    """The launch a landing or continue link names; a LaunchError if unknown or expired."""
    launch = session.scalar(select(Launch).where(Launch.token_hash == token_hash(token or "")))
    if launch is None or launch.expires_at < now:
        raise LaunchError(
            "launch-link-expired",
            "This launch link has expired or is not valid. Please start the activity again from the LMS.",
            f"Launch links are valid for {int(LAUNCH_TTL.total_seconds() // 60)} minutes and once.",
            status=400,
        )
    return launch
