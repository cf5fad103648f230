"""Specification of the LTI role → Rebound role mapping (least privilege)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugin.roles import (
    REBOUND_ROLES,
    TEST_USER_ROLE,
    ParsedRole,
    explain_roles,
    map_roles,
    normalize_overrides,
    parse_role,
)

V2 = "http://purl.imsglobal.org/vocab/lis/v2/"
CONTEXT = V2 + "membership#"
INSTITUTION = V2 + "institution/person#"
SYSTEM = V2 + "system/person#"


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        (CONTEXT + "Learner", {"learner"}),
        (CONTEXT + "Instructor", {"trainer"}),
        (CONTEXT + "ContentDeveloper", {"trainer"}),
        (V2 + "membership/Instructor#TeachingAssistant", {"trainer"}),
        (V2 + "membership/Instructor#Grader", {"trainer"}),
        (V2 + "membership/ContentDeveloper#ContentExpert", {"trainer"}),
        (V2 + "membership/Learner#NonCreditLearner", {"learner"}),
        (INSTITUTION + "Administrator", {"hr", "admin"}),
        (SYSTEM + "Administrator", {"hr", "admin"}),
        (SYSTEM + "SysAdmin", {"hr", "admin"}),
        (SYSTEM + "AccountAdmin", {"hr", "admin"}),
    ],
)
def test_standard_roles_map_to_rebound_roles(role, expected):
    assert map_roles([role]) == expected


def test_context_administrator_gets_trainer_and_hr_but_not_admin():
    assert map_roles([CONTEXT + "Administrator"]) == {"trainer", "hr"}


def test_institution_instructor_role_alone_does_not_make_a_trainer():
    # Canvas sends it for anyone who teaches somewhere, even where they are a learner.
    assert map_roles([INSTITUTION + "Instructor", CONTEXT + "Learner"]) == {"learner"}
    assert map_roles([INSTITUTION + "Faculty"]) == {"learner"}


@pytest.mark.parametrize(
    "roles",
    [
        [],
        [CONTEXT + "Mentor"],
        [CONTEXT + "Member"],
        [INSTITUTION + "Guest"],
        [SYSTEM + "User"],
        ["not a role"],
        [TEST_USER_ROLE],
    ],
)
def test_no_privileged_role_means_learner(roles):
    mapping = explain_roles(roles)

    assert mapping.roles == {"learner"}
    assert mapping.fell_back_to_learner


def test_explicit_learner_is_not_a_fallback():
    assert not explain_roles([CONTEXT + "Learner"]).fell_back_to_learner


def test_roles_add_up():
    assert map_roles([CONTEXT + "Learner", CONTEXT + "Instructor"]) == {"learner", "trainer"}


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("Learner", {"learner"}),
        ("Instructor", {"trainer"}),
        ("ContentDeveloper", {"trainer"}),
        ("TeachingAssistant", {"trainer"}),
        ("urn:lti:role:ims/lis/Instructor", {"trainer"}),
        ("urn:lti:role:ims/lis/TeachingAssistant/TeachingAssistantSection", {"trainer"}),
        ("urn:lti:role:ims/lis/Learner/NonCreditLearner", {"learner"}),
        ("urn:lti:instrole:ims/lis/Administrator", {"hr", "admin"}),
        ("urn:lti:sysrole:ims/lis/SysAdmin", {"hr", "admin"}),
        ("https://purl.imsglobal.org/vocab/lis/v2/membership#Instructor", {"trainer"}),
        (" " + CONTEXT + "Instructor ", {"trainer"}),
    ],
)
def test_short_and_legacy_forms_map_like_canonical_uris(role, expected):
    assert map_roles([role]) == expected


@pytest.mark.parametrize(
    "role",
    [
        CONTEXT,
        V2 + "membership/Instructor",
        CONTEXT + "Instructor#extra",
        CONTEXT + "Instruc tor",
        V2 + "membershipInstructor",
        "http://purl.imsglobal.org/vocab/lis/v2/person#Administrator",
        "urn:lti:role:ims/lis/",
        "Administrator; DROP TABLE",
    ],
)
def test_malformed_roles_are_reported_and_grant_nothing(role):
    mapping = explain_roles([role])

    assert mapping.roles == {"learner"}
    assert mapping.unrecognized == (role,)


def test_test_user_role_is_known_and_not_reported():
    assert explain_roles([TEST_USER_ROLE, CONTEXT + "Learner"]).unrecognized == ()


def test_a_lone_role_string_is_not_read_as_characters():
    assert map_roles(CONTEXT + "Instructor") == {"trainer"}


def test_non_string_roles_are_ignored():
    assert map_roles([None, 42, CONTEXT + "Instructor"]) == {"trainer"}  # type: ignore[list-item]


def test_parse_role_splits_scope_principal_and_sub_role():
    assert parse_role(V2 + "membership/Instructor#TeachingAssistant") == ParsedRole(
        "context", "Instructor", "TeachingAssistant"
    )
    assert parse_role(INSTITUTION + "Administrator") == ParsedRole("institution", "Administrator")
    assert parse_role("nonsense uri") is None


# --- per-platform overrides --------------------------------------------------------------


def test_override_can_narrow_a_role():
    overrides = {CONTEXT + "Administrator": ["trainer"]}

    assert map_roles([CONTEXT + "Administrator"], overrides) == {"trainer"}


def test_override_can_take_a_grant_away():
    overrides = {INSTITUTION + "Administrator": []}

    assert map_roles([INSTITUTION + "Administrator"], overrides) == {"learner"}


def test_override_accepts_a_single_role_as_a_string():
    assert map_roles([CONTEXT + "Mentor"], {CONTEXT + "Mentor": "trainer"}) == {"trainer"}


def test_override_on_the_canonical_uri_also_matches_short_forms():
    overrides = {CONTEXT + "Mentor": ["trainer"]}

    assert map_roles(["Mentor"], overrides) == {"trainer"}
    assert map_roles(["urn:lti:role:ims/lis/Mentor"], overrides) == {"trainer"}


def test_override_can_map_a_platform_specific_role():
    overrides = {"urn:acme:role:people-partner": ["hr"]}

    assert map_roles(["urn:acme:role:people-partner"], overrides) == {"hr"}


def test_override_other_roles_keep_their_defaults():
    overrides = {CONTEXT + "Mentor": ["trainer"]}

    assert map_roles([INSTITUTION + "Administrator"], overrides) == {"hr", "admin"}


@pytest.mark.parametrize(
    "overrides",
    [{CONTEXT + "Mentor": ["superuser"]}, {CONTEXT + "Mentor": "Trainer"}, {"": ["learner"]}],
)
def test_invalid_overrides_are_refused_naming_the_entry(overrides):
    with pytest.raises(ValueError):
        normalize_overrides(overrides)


def test_normalized_overrides_are_frozensets():
    assert normalize_overrides({CONTEXT + "Mentor": "hr"}) == {CONTEXT + "Mentor": frozenset({"hr"})}


# --- properties ------------------------------------------------------------------------------

CONTEXT_ROLES = [
    CONTEXT + name
    for name in (
        "Administrator",
        "ContentDeveloper",
        "Instructor",
        "Learner",
        "Mentor",
        "Manager",
        "Member",
        "Officer",
    )
] + [V2 + "membership/Instructor#TeachingAssistant", V2 + "membership/Learner#Learner"]


@settings(database=None, max_examples=200)
@given(st.lists(st.one_of(st.text(max_size=80), st.sampled_from(CONTEXT_ROLES)), max_size=8))
def test_result_is_never_empty_and_only_rebound_roles(roles):
    result = map_roles(roles)

    assert result and result <= REBOUND_ROLES


@settings(database=None, max_examples=200)
@given(st.lists(st.sampled_from(CONTEXT_ROLES), max_size=6))
def test_course_level_roles_never_grant_admin_and_grant_hr_only_to_administrators(roles):
    granted = map_roles(roles)
    assert "admin" not in granted
    assert ("hr" in granted) == (CONTEXT + "Administrator" in roles)
