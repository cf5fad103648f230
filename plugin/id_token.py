"""Validate an LTI 1.3 id_token (1EdTech Security Framework 1.0, §5.1.3).

Checks, in this order, each failure with its own ``LaunchError`` code:

1. shape: a compact JWS of three parts, not oversized (``token-malformed``);
2. header: ``alg`` exactly RS256 (``alg-not-allowed``: rejects ``none``, HS256 signed
   with the platform's public key, and everything else), a ``kid`` (``kid-missing``),
   no ``crit``/``b64`` extensions;
3. signature against the platform key named by ``kid`` (``signature-invalid``; the key
   source raises ``jwks-unreachable``, ``jwks-malformed``, ``kid-unknown``,
   ``key-unsuitable``);
4. ``iss`` (``issuer-mismatch``), ``aud`` (``audience-mismatch``), ``azp``
   (``azp-missing``, ``azp-mismatch``);
5. times, with leeway: ``exp`` (``token-expired``), ``iat`` (``iat-in-future``,
   ``token-too-old``), ``nbf`` (``token-not-yet-valid``);
6. LTI content: ``nonce`` present (``nonce-missing``) and, if the login remembered
   it, the same (``nonce-mismatch``); ``version`` (``version-unsupported``);
   ``message_type`` (``message-type-unsupported``); ``deployment_id`` known
   (``deployment-unknown``); ``target_link_uri`` on one of our hosts
   (``target-link-uri-foreign``); the claims each message type requires
   (``claim-missing``, ``claim-invalid``);
7. last, the nonce is used up (``nonce-replayed`` if it already was).

Nonce semantics: the nonce is consumed only once everything else has passed, so a
forged, expired or otherwise rejected token never burns a nonce. Once consumed it
stays consumed, even if the caller later refuses the launch (state mismatch, a
database error): an id_token is good for one launch attempt, and the person simply
launches again from the LMS. Consumed nonces need keeping only until
``expires_at`` passed to the store: ``min(exp, iat + max_age) + leeway``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import urlsplit

import jwt

from plugin import claims as c
from plugin.claims import LaunchMessage
from plugin.errors import LaunchError
from plugin.platform_keys import KeySource

ALGORITHM = "RS256"
DEFAULT_LEEWAY_SECONDS = 60
DEFAULT_MAX_AGE_SECONDS = 3600
MAX_TOKEN_CHARS = 100_000


class Registration(Protocol):
    """What the tool knows about one platform registration (issuer + client_id)."""

    @property
    def issuer(self) -> str:
        """The platform's issuer identifier, exactly as in ``iss``."""
        ...

    @property
    def client_id(self) -> str:
        """The client_id the platform assigned to Rebound."""
        ...

    @property
    def deployment_ids(self) -> Collection[str]:
        """Deployment ids the administrator registered for this client."""
        ...


class NonceStore(Protocol):
    """Single-use nonces, shared by all app processes."""

    def consume(self, issuer: str, nonce: str, expires_at: datetime) -> bool:
        """Use up the nonce and return True, or return False if it was used before.

        Must be atomic, e.g. ``INSERT`` into a table with a unique (issuer, nonce)
        key, False on conflict; rows past ``expires_at`` may be deleted.
        """
        ...


@dataclass(frozen=True)
class Routing:
    """Unverified hints for finding the registration; never trust them for anything else."""

    issuer: str
    client_ids: tuple[str, ...]
    deployment_id: str | None


def peek_routing(raw: str) -> Routing:
    """Read ``iss``, the candidate client ids and the deployment id WITHOUT verifying.

    Only for choosing which registration to validate against: ``validate_id_token``
    then checks every one of these values. ``client_ids`` lists ``azp`` first when
    present, then the ``aud`` values.
    """
    _check_header(raw)
    try:
        payload = jwt.decode(raw, options={"verify_signature": False})
    except jwt.InvalidTokenError as error:
        raise _malformed(f"its payload cannot be decoded ({error})") from None
    issuer = c.require_str(payload, "iss")
    audience = c.audiences(payload)
    azp = payload.get("azp")
    client_ids = ((azp,) if isinstance(azp, str) and azp else ()) + tuple(
        aud for aud in audience if aud != azp
    )
    deployment_id = payload.get(c.DEPLOYMENT_ID)
    return Routing(
        issuer=issuer,
        client_ids=client_ids,
        deployment_id=deployment_id if isinstance(deployment_id, str) else None,
    )


def validate_id_token(
    raw: str,
    *,
    registration: Registration,
    key_source: KeySource,
    nonce_store: NonceStore,
    now: datetime,
    leeway_seconds: int = DEFAULT_LEEWAY_SECONDS,
    tool_hosts: Collection[str],
    max_age_seconds: int = DEFAULT_MAX_AGE_SECONDS,
    expected_nonce: str | None = None,
) -> LaunchMessage:
    """Validate a platform's id_token and return the launch it carries.

    ``now`` must be timezone-aware. ``tool_hosts`` are the host names Rebound is
    served on: ``host`` for the scheme's default port, ``host:port`` for another.
    ``expected_nonce`` is the nonce the login step sent, when the caller kept it with
    the state. The observed clock skew is returned as
    ``LaunchMessage.clock_skew_seconds`` (``iat - now``).
    """
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    header = _check_header(raw)
    key = key_source.key_for(header["kid"], now=now)
    payload = _verify_signature(raw, key, registration)

    _check_issuer(payload, registration)
    _check_audience(payload, registration)
    skew, nonce_expires_at = _check_times(payload, now, leeway_seconds, max_age_seconds)

    nonce = _check_nonce(payload, expected_nonce)
    message_type = _check_version_and_type(payload)
    _check_deployment(payload, registration, message_type)
    _check_target_link_uri(payload, tool_hosts)
    message = c.parse_launch(payload, client_id=registration.client_id, clock_skew_seconds=skew)

    if not nonce_store.consume(registration.issuer, nonce, nonce_expires_at):
        raise LaunchError(
            "nonce-replayed",
            "This launch was already used. Please start the activity again from the LMS.",
            "The id_token's nonce was seen before: the launch form was submitted twice "
            "(back button, reload) or someone replayed a captured launch.",
            details={"issuer": registration.issuer},
        )
    return message


def _check_header(raw: str) -> dict[str, str]:
    if not isinstance(raw, str) or not raw:
        raise _malformed("no id_token was sent")
    if len(raw) > MAX_TOKEN_CHARS:
        raise _malformed(f"the id_token is longer than {MAX_TOKEN_CHARS} characters")
    parts = raw.split(".")
    # The signature part may be empty here: that is an unsigned ('none') token, which
    # the alg check below refuses by name.
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise _malformed("an id_token has three dot-separated parts (a signed JWT)")
    try:
        header = jwt.get_unverified_header(raw)
    except jwt.InvalidTokenError as error:
        raise _malformed(f"its header cannot be decoded ({error})") from None
    alg = header.get("alg")
    if alg != ALGORITHM:
        raise LaunchError(
            "alg-not-allowed",
            "This launch was not signed the way LTI requires.",
            f"The id_token header says alg={alg!r}; LTI 1.3 platforms must sign with "
            f"{ALGORITHM}. Unsigned ('none') and shared-secret (HS*) tokens are always refused.",
            details={"alg": alg},
        )
    if "crit" in header or "b64" in header:
        raise _malformed("its header uses JWS extensions (crit/b64) LTI does not allow")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise LaunchError(
            "kid-missing",
            "This launch does not say which key signed it.",
            "The id_token header has no 'kid'. LTI 1.3 platforms must name the signing "
            "key from their JWKS; report this to the LMS vendor.",
        )
    return {"alg": alg, "kid": kid}


def _verify_signature(raw: str, key: jwt.PyJWK, registration: Registration) -> dict[str, object]:
    try:
        # Claims are checked below with our own clock and error codes; PyJWT checks
        # the signature only, with the algorithm pinned, never taken from the token.
        payload = jwt.decode(
            raw,
            key,
            algorithms=[ALGORITHM],
            options={
                "verify_signature": True,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
                "verify_sub": False,
                "verify_jti": False,
                "enforce_minimum_key_length": True,
                "require": [],
            },
        )
    except jwt.InvalidSignatureError:
        raise LaunchError(
            "signature-invalid",
            "This launch could not be verified as coming from your LMS.",
            "The id_token's signature does not match the platform key it names. The token "
            "was altered, or it was signed by a different platform than the one "
            f"registered with issuer {registration.issuer}.",
            details={"issuer": registration.issuer},
        ) from None
    except jwt.InvalidKeyError as error:
        raise LaunchError(
            "key-unsuitable",
            "The LMS signed this launch with a key Rebound does not accept.",
            f"The platform's signing key cannot be used: {error}.",
        ) from None
    except jwt.InvalidTokenError as error:
        raise _malformed(f"it cannot be decoded ({error})") from None
    return payload


def _check_issuer(payload: dict[str, object], registration: Registration) -> None:
    issuer = payload.get("iss")
    if issuer != registration.issuer:
        raise LaunchError(
            "issuer-mismatch",
            "This launch came from a different LMS than the one Rebound expected.",
            f"The id_token's iss is {issuer!r}, but the registration is for "
            f"{registration.issuer!r}. The issuer must match exactly, including the "
            "scheme and any trailing slash.",
            details={"iss": issuer, "expected": registration.issuer},
        )


def _check_audience(payload: dict[str, object], registration: Registration) -> None:
    client_id = registration.client_id
    audience = c.audiences(payload)
    if client_id not in audience:
        raise LaunchError(
            "audience-mismatch",
            "This launch was meant for another tool.",
            f"The id_token's aud is {list(audience)!r}, which does not include Rebound's "
            f"client_id {client_id!r} for {registration.issuer}. Check the client_id "
            "registered in Rebound against the one the LMS shows for this tool.",
            details={"aud": list(audience), "client_id": client_id},
        )
    azp = payload.get("azp")
    if len(audience) > 1 and azp is None:
        raise LaunchError(
            "azp-missing",
            "This launch was addressed to several tools at once.",
            "The id_token names several audiences but no authorized party (azp); OpenID "
            "Connect requires azp then. Report this to the LMS vendor.",
            details={"aud": list(audience)},
        )
    if azp is not None and azp != client_id:
        raise LaunchError(
            "azp-mismatch",
            "This launch was meant for another tool.",
            f"The id_token's authorized party (azp) is {azp!r}, not Rebound's client_id {client_id!r}.",
            details={"azp": azp, "client_id": client_id},
        )


def _check_times(
    payload: dict[str, object], now: datetime, leeway: int, max_age: int
) -> tuple[float, datetime]:
    exp = c.require_time(payload, "exp")
    iat = c.require_time(payload, "iat")
    current = now.timestamp()
    skew = iat - current
    details = {"clock_skew_seconds": round(skew, 3), "leeway_seconds": leeway}
    if current > exp + leeway:
        raise LaunchError(
            "token-expired",
            "This launch has expired. Please start the activity again from the LMS.",
            f"The id_token expired {current - exp:.0f} seconds ago (leeway {leeway} s). "
            "If this happens on every launch, the LMS server's clock is wrong.",
            details=details,
        )
    if iat > current + leeway:
        raise LaunchError(
            "iat-in-future",
            "This launch claims to come from the future. Please try again.",
            f"The id_token was issued {skew:.0f} seconds ahead of Rebound's clock (leeway "
            f"{leeway} s). Check the LMS server's clock (NTP).",
            details=details,
        )
    if current - iat > max_age + leeway:
        raise LaunchError(
            "token-too-old",
            "This launch is too old. Please start the activity again from the LMS.",
            f"The id_token was issued {current - iat:.0f} seconds ago; Rebound accepts "
            f"launches up to {max_age} seconds old.",
            details=details,
        )
    nbf = payload.get("nbf")
    if nbf is not None:
        not_before = c.require_time(payload, "nbf")
        if not_before > current + leeway:
            raise LaunchError(
                "token-not-yet-valid",
                "This launch is not valid yet. Please try again.",
                f"The id_token's nbf is {not_before - current:.0f} seconds in the future. "
                "Check the LMS server's clock (NTP).",
                details=details,
            )
    keep_until = min(exp, iat + max_age) + leeway
    return skew, datetime.fromtimestamp(keep_until, tz=UTC)


def _check_nonce(payload: dict[str, object], expected: str | None) -> str:
    nonce = payload.get("nonce")
    if nonce is None or nonce == "":
        raise LaunchError(
            "nonce-missing",
            "This launch cannot be protected against replay.",
            "The id_token has no nonce, which LTI 1.3 requires. Report this to the LMS vendor.",
        )
    if not isinstance(nonce, str):
        raise c.claim_invalid("nonce", "a string")
    if expected is not None and nonce != expected:
        raise LaunchError(
            "nonce-mismatch",
            "This launch does not belong to the sign-in that started it. Please start "
            "the activity again from the LMS.",
            "The id_token's nonce differs from the one Rebound sent in the login "
            "request: the launch was started in another browser or tab.",
        )
    return nonce


def _check_version_and_type(payload: dict[str, object]) -> str:
    version = c.require_str(payload, c.VERSION)
    if version != c.LTI_VERSION:
        raise c.unsupported_version(version)
    message_type = c.require_str(payload, c.MESSAGE_TYPE)
    if message_type not in c.LAUNCH_MESSAGE_TYPES:
        raise c.unsupported_message_type(message_type)
    return message_type


def _check_deployment(payload: dict[str, object], registration: Registration, message_type: str) -> None:
    deployment_id = c.require_str(payload, c.DEPLOYMENT_ID, message_type)
    if deployment_id not in registration.deployment_ids:
        raise LaunchError(
            "deployment-unknown",
            "Rebound has not been set up for this part of your LMS yet.",
            f"Deployment {deployment_id!r} of client {registration.client_id!r} at "
            f"{registration.issuer} is not registered in Rebound. Add it to the platform's "
            "registration (the LMS shows the deployment id on the tool's settings).",
            status=403,
            details={"deployment_id": deployment_id, "issuer": registration.issuer},
        )


def _check_target_link_uri(payload: dict[str, object], tool_hosts: Collection[str]) -> None:
    target = payload.get(c.TARGET_LINK_URI)
    if target is None or target == "":
        return  # parse_launch decides whether the message type requires it
    if not isinstance(target, str):
        raise c.claim_invalid(c.TARGET_LINK_URI, "a URL")
    try:
        parts = urlsplit(target)
        host = (parts.hostname or "").lower().rstrip(".")
        port = parts.port
    except ValueError:
        raise c.claim_invalid(c.TARGET_LINK_URI, "a URL") from None
    allowed = {name.lower().rstrip(".") for name in tool_hosts}
    # A bare host name stands for its default port; "host:port" entries for that port.
    default_port = {"https": 443, "http": 80}.get(parts.scheme)
    candidates = {f"{host}:{port or default_port}"}
    if port is None or port == default_port:
        candidates.add(host)
    if default_port is None or not host or not candidates & allowed:
        raise LaunchError(
            "target-link-uri-foreign",
            "This launch points somewhere other than Rebound.",
            f"The id_token's target_link_uri {target!r} is not on Rebound's host(s) "
            f"{sorted(allowed)}. Check the launch URL configured in the LMS.",
            details={"target_link_uri": target},
        )


def _malformed(problem: str) -> LaunchError:
    return LaunchError(
        "token-malformed",
        "The launch request from the LMS was damaged or incomplete.",
        f"The id_token is not a valid signed JWT: {problem}.",
    )
