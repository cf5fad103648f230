"""Map LTI role URIs to Rebound roles, least privilege first.

Rebound roles: ``learner`` (take the course, see own progress), ``trainer`` (author,
publish and place content, see where learners go wrong), ``hr`` (export completion
records for the whole tenant) and ``admin`` (manage the tenant).

The model, and why:

* Only *context* roles (the person's role in this course) grant ``trainer``:
  ``Instructor``, ``ContentDeveloper`` and ``Administrator`` with all their sub-roles
  (``membership/Instructor#TeachingAssistant``, ``#Grader`` ...). Institution roles such
  as ``institution/person#Instructor`` are ignored, because platforms (Canvas) send
  them on every launch of a person who teaches *somewhere*, including courses where
  they are a learner.
* ``Administrator`` grants HR: in a course (context) it adds ``hr`` to ``trainer``, so a
  course administrator can export that tenant's completions, as the product brief asks;
  LMS-wide (institution or system ``Administrator``, ``SysAdmin``, ``AccountAdmin``) it
  grants ``hr`` and ``admin``. A platform that wants narrower rights overrides the mapping.
* ``Mentor``, ``Member``, ``Manager``, ``Officer``, guests, test users, unknown or
  malformed roles and an empty roles claim grant nothing extra. Whoever launches with
  no privileged role is a ``learner``: it is the floor, the least privilege that still
  lets a person take the course, and refusing them would gain no security (course
  content is not secret within a tenant) while breaking anonymous and sparse launches.
* Roles add up: someone sent both ``Learner`` and ``Instructor`` gets both.

Short forms are accepted as LTI 1.3 allows: simple names (``Instructor``) mean context
roles; LTI 1.1 URNs (``urn:lti:role:ims/lis/Instructor/TeachingAssistant``,
``urn:lti:instrole:ims/lis/Administrator``, ``urn:lti:sysrole:ims/lis/SysAdmin``) and
``https`` spellings of the vocabulary URIs map like their canonical forms.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

LEARNER = "learner"
TRAINER = "trainer"
HR = "hr"
ADMIN = "admin"
REBOUND_ROLES = frozenset({LEARNER, TRAINER, HR, ADMIN})

# Sent for a platform's "student view" / test student; grants nothing, but the lead may
# want to keep such people out of HR exports.
TEST_USER_ROLE = "http://purl.imsglobal.org/vocab/lti/system/person#TestUser"

Scope = Literal["context", "institution", "system"]

_VOCAB = "purl.imsglobal.org/vocab/lis/v2/"
_PREFIXES: tuple[tuple[str, Scope], ...] = (
    (_VOCAB + "membership", "context"),
    (_VOCAB + "institution/person", "institution"),
    (_VOCAB + "system/person", "system"),
)
_URNS: tuple[tuple[str, Scope], ...] = (
    ("urn:lti:role:ims/lis/", "context"),
    ("urn:lti:instrole:ims/lis/", "institution"),
    ("urn:lti:sysrole:ims/lis/", "system"),
)

_DEFAULT_GRANTS: Mapping[tuple[Scope, str], frozenset[str]] = {
    ("context", "Learner"): frozenset({LEARNER}),
    ("context", "Instructor"): frozenset({TRAINER}),
    ("context", "ContentDeveloper"): frozenset({TRAINER}),
    ("context", "Administrator"): frozenset({TRAINER, HR}),
    # LTI 1.1 used TeachingAssistant as a principal role; 1.3 makes it an Instructor sub-role.
    ("context", "TeachingAssistant"): frozenset({TRAINER}),
    ("institution", "Administrator"): frozenset({HR, ADMIN}),
    ("system", "Administrator"): frozenset({HR, ADMIN}),
    ("system", "SysAdmin"): frozenset({HR, ADMIN}),
    ("system", "AccountAdmin"): frozenset({HR, ADMIN}),
}


@dataclass(frozen=True)
class ParsedRole:
    """An LTI role split into scope, principal role and optional sub-role."""

    scope: Scope
    principal: str
    sub_role: str | None = None


@dataclass(frozen=True)
class RoleMapping:
    """The outcome of mapping, with what was not understood (worth a log line)."""

    roles: frozenset[str]
    unrecognized: tuple[str, ...]
    fell_back_to_learner: bool


def parse_role(role: str) -> ParsedRole | None:
    """Split an LTI role (URI, LTI 1.1 URN or simple name) into its parts, or None."""
    role = role.strip()
    for scheme in ("http://", "https://"):
        if role.startswith(scheme + _VOCAB):
            return _parse_vocabulary_uri(role[len(scheme) :])
    for prefix, scope in _URNS:
        if role.startswith(prefix):
            principal, _, sub_role = role[len(prefix) :].partition("/")
            return _parsed(scope, principal, sub_role)
    if role.isalnum():
        # LTI 1.3 lets simple names stand for context roles.
        return ParsedRole("context", role)
    return None


def explain_roles(
    lti_roles: Iterable[str], overrides: Mapping[str, Iterable[str] | str] | None = None
) -> RoleMapping:
    """Map LTI roles to Rebound roles and say which roles were not recognised."""
    if isinstance(lti_roles, str):
        lti_roles = [lti_roles]  # a lone role, not an iterable of characters
    table = normalize_overrides(overrides or {})
    granted: set[str] = set()
    unrecognized: list[str] = []
    for role in lti_roles:
        if not isinstance(role, str):
            continue
        if role in table:
            granted |= table[role]
            continue
        parsed = parse_role(role)
        if parsed is None:
            if role != TEST_USER_ROLE:
                unrecognized.append(role)
            continue
        canonical = canonical_uri(parsed)
        if canonical in table:
            granted |= table[canonical]
            continue
        granted |= _DEFAULT_GRANTS.get((parsed.scope, parsed.principal), frozenset())
    fallback = not granted
    if fallback:
        granted.add(LEARNER)
    return RoleMapping(frozenset(granted), tuple(unrecognized), fallback)


def map_roles(
    lti_roles: Iterable[str], overrides: Mapping[str, Iterable[str] | str] | None = None
) -> frozenset[str]:
    """Return the Rebound roles for a launch's ``roles`` claim (never empty)."""
    return explain_roles(lti_roles, overrides).roles


def normalize_overrides(overrides: Mapping[str, Iterable[str] | str]) -> dict[str, frozenset[str]]:
    """Check a per-platform override table and return it ready for ``map_roles``.

    Keys are role URIs exactly as the platform sends them (canonical URIs also match
    their short spellings); values are a Rebound role, a list of them, or an empty
    list to grant nothing. Raises ``ValueError`` naming the first bad entry, so the
    registration form or CLI can refuse it before it is stored.
    """
    table: dict[str, frozenset[str]] = {}
    for uri, value in overrides.items():
        if not isinstance(uri, str) or not uri.strip():
            raise ValueError(f"role override key must be a role URI, not {uri!r}")
        granted = frozenset({value} if isinstance(value, str) else value)
        unknown = granted - REBOUND_ROLES
        if unknown:
            raise ValueError(
                f"role override for {uri!r} names unknown Rebound role(s) "
                f"{sorted(unknown)}; use {sorted(REBOUND_ROLES)}"
            )
        table[uri.strip()] = granted
    return table


def canonical_uri(role: ParsedRole) -> str:
    """Return the LTI 1.3 vocabulary URI for a parsed role."""
    if role.scope == "context":
        if role.sub_role:
            return f"http://{_VOCAB}membership/{role.principal}#{role.sub_role}"
        return f"http://{_VOCAB}membership#{role.principal}"
    return f"http://{_VOCAB}{role.scope}/person#{role.principal}"


def _parse_vocabulary_uri(rest: str) -> ParsedRole | None:
    for prefix, scope in _PREFIXES:
        if rest.startswith(prefix + "#"):
            return _parsed(scope, rest[len(prefix) + 1 :], "")
        if scope == "context" and rest.startswith(prefix + "/"):
            # Sub-role: membership/<Principal>#<SubRole>
            principal, sep, sub_role = rest[len(prefix) + 1 :].partition("#")
            if not sep:
                return None
            return _parsed(scope, principal, sub_role)
    return None


def _parsed(scope: Scope, principal: str, sub_role: str) -> ParsedRole | None:
    if not principal.isalnum() or (sub_role and not sub_role.isalnum()):
        return None
    return ParsedRole(scope, principal, sub_role or None)
