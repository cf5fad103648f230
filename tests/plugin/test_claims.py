"""Specification of claim parsing: what a validated launch message carries."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from plugin import claims as c
from plugin.claims import parse_launch
from plugin.errors import LaunchError

AGS = {
    "scope": [c.SCOPE_AGS_LINEITEM, c.SCOPE_AGS_SCORE],
    "lineitems": "https://lms.example.edu/api/lti/courses/1/line_items",
    "lineitem": "https://lms.example.edu/api/lti/courses/1/line_items/7",
}
NRPS = {
    "context_memberships_url": "https://lms.example.edu/api/lti/courses/1/names_and_roles",
    "service_versions": ["2.0"],
}


def parse(claims):
    return parse_launch(claims, client_id="rebound-client-1")


def refused(claims, code="claim-missing") -> LaunchError:
    with pytest.raises(LaunchError) as caught:
        parse(claims)
    assert caught.value.code == code, caught.value
    return caught.value


def without(claims, *names):
    return {key: value for key, value in claims.items() if key not in names}


# --- the claim URIs ------------------------------------------------------------------------


def test_claim_uris_are_the_ones_the_specs_define():
    assert c.MESSAGE_TYPE == "https://purl.imsglobal.org/spec/lti/claim/message_type"
    assert c.DEPLOYMENT_ID == "https://purl.imsglobal.org/spec/lti/claim/deployment_id"
    assert c.ROLES == "https://purl.imsglobal.org/spec/lti/claim/roles"
    assert c.AGS_ENDPOINT == "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
    assert c.NRPS == "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
    assert c.DEEP_LINKING_SETTINGS == ("https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings")
    assert c.TOOL_CONFIGURATION == "https://purl.imsglobal.org/spec/lti-tool-configuration"


# --- a full resource link launch -----------------------------------------------------------


def test_resource_link_launch_carries_everything_the_tool_needs(lti):
    claims = lti.claims(
        **{
            c.CONTEXT: {
                "id": "course-1",
                "title": "Social media",
                "label": "SMM",
                "type": ["http://purl.imsglobal.org/vocab/lis/v2/course#CourseOffering"],
            },
            c.LIS: {"person_sourcedid": "hr-0042"},
            c.CUSTOM: {"module": "own", "attempts": 3, "graded": True},
            c.AGS_ENDPOINT: AGS,
            c.NRPS: NRPS,
            c.LAUNCH_PRESENTATION: {
                "document_target": "iframe",
                "locale": "en-GB",
                "return_url": "https://lms.example.edu/return",
                "width": 800,
                "height": "600",
            },
            c.TOOL_PLATFORM: {
                "guid": "lms-1",
                "name": "Example LMS",
                "product_family_code": "moodle",
                "version": "4.5",
            },
            c.ROLE_SCOPE_MENTOR: ["user-7"],
            "locale": "en-GB",
        }
    )

    message = parse(claims)

    assert message.issuer == lti.issuer
    assert message.audience == (lti.client_id,)
    assert message.subject == "user-42"
    assert (message.name, message.given_name, message.family_name, message.email) == (
        "Ada Lovelace",
        "Ada",
        "Lovelace",
        "ada@example.com",
    )
    assert message.lis_person_sourcedid == "hr-0042"
    assert message.context == c.Context(
        "course-1",
        "Social media",
        "SMM",
        ("http://purl.imsglobal.org/vocab/lis/v2/course#CourseOffering",),
    )
    assert message.resource_link == c.ResourceLink("link-1", "Own it")
    assert dict(message.custom) == {"module": "own", "attempts": "3", "graded": "true"}
    assert message.ags == c.AgsEndpoint(tuple(AGS["scope"]), AGS["lineitems"], AGS["lineitem"])
    assert message.ags.can_post_scores
    assert message.nrps == c.NamesRoleService(NRPS["context_memberships_url"], ("2.0",))
    assert message.launch_presentation == c.LaunchPresentation(
        "iframe", "https://lms.example.edu/return", "en-GB", 800, 600
    )
    assert message.tool_platform.product_family_code == "moodle"
    assert message.role_scope_mentor == ("user-7",)
    assert message.roles == ("http://purl.imsglobal.org/vocab/lis/v2/membership#Learner",)
    assert message.issued_at == lti.now
    assert message.expires_at == lti.now + timedelta(seconds=300)
    assert message.locale == "en-GB"
    assert message.deep_linking is None


def test_optional_services_are_absent_when_not_sent(lti):
    message = parse(lti.claims())

    assert message.ags is None and message.nrps is None
    assert message.launch_presentation is None and message.tool_platform is None
    assert dict(message.custom) == {}


def test_ags_without_score_scope_cannot_post_scores(lti):
    message = parse(lti.claims(**{c.AGS_ENDPOINT: {**AGS, "scope": [c.SCOPE_AGS_LINEITEM]}}))

    assert not message.ags.can_post_scores


def test_deep_linking_settings_are_parsed(lti):
    settings = {
        "deep_link_return_url": "https://lms.example.edu/deep_links",
        "accept_types": ["ltiResourceLink", "link"],
        "accept_presentation_document_targets": ["iframe"],
        "accept_multiple": "true",
        "accept_lineitem": False,
        "auto_create": True,
        "title": "Pick an activity",
        "data": {"platform": ["state", 1]},
    }

    message = parse(lti.deep_linking_claims(**{c.DEEP_LINKING_SETTINGS: settings}))

    dl = message.deep_linking
    assert message.is_deep_linking and message.resource_link is None
    assert dl.deep_link_return_url == settings["deep_link_return_url"]
    assert dl.accept_types == ("ltiResourceLink", "link")
    assert dl.accept_presentation_document_targets == ("iframe",)
    assert (dl.accept_multiple, dl.accept_lineitem, dl.auto_create) == (True, False, True)
    assert dl.title == "Pick an activity"
    assert dl.data == {"platform": ["state", 1]}


def test_deep_linking_without_target_link_uri_or_roles_is_fine(lti):
    message = parse(without(lti.deep_linking_claims(), c.TARGET_LINK_URI, c.ROLES))

    assert message.target_link_uri is None
    assert message.roles == ()


# --- anonymous launches --------------------------------------------------------------------


@pytest.mark.parametrize("claims_change", [{"sub": ""}, "drop"])
def test_missing_or_empty_sub_is_an_anonymous_launch(lti, claims_change):
    claims = without(lti.claims(), "sub") if claims_change == "drop" else lti.claims(**claims_change)

    message = parse(claims)

    assert message.subject is None and message.is_anonymous


# --- required claims ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "claim",
    [
        "iss",
        "aud",
        "iat",
        "exp",
        "nonce",
        c.VERSION,
        c.MESSAGE_TYPE,
        c.DEPLOYMENT_ID,
        c.TARGET_LINK_URI,
        c.RESOURCE_LINK,
        c.ROLES,
    ],
)
def test_resource_link_launch_requires_claim(lti, claim):
    error = refused(without(lti.claims(), claim))

    assert error.details["claim"] == claim
    assert claim.rsplit("/", 1)[-1] in error.reason


def test_resource_link_requires_an_id(lti):
    error = refused(lti.claims(**{c.RESOURCE_LINK: {"id": ""}}))

    assert error.details["claim"] == c.RESOURCE_LINK + "#id"
    assert error.details["message_type"] == c.RESOURCE_LINK_REQUEST


@pytest.mark.parametrize(
    ("settings", "missing"),
    [
        (None, c.DEEP_LINKING_SETTINGS),
        ({"accept_types": ["ltiResourceLink"]}, c.DEEP_LINKING_SETTINGS + "#deep_link_return_url"),
        ({"deep_link_return_url": "https://lms.example.edu/dl"}, c.DEEP_LINKING_SETTINGS + "#accept_types"),
        (
            {"deep_link_return_url": "https://lms.example.edu/dl", "accept_types": []},
            c.DEEP_LINKING_SETTINGS + "#accept_types",
        ),
    ],
)
def test_deep_linking_request_requires_settings(lti, settings, missing):
    claims = lti.deep_linking_claims()
    if settings is None:
        del claims[c.DEEP_LINKING_SETTINGS]
    else:
        claims[c.DEEP_LINKING_SETTINGS] = settings

    assert refused(claims).details["claim"] == missing


def test_context_without_id_is_refused(lti):
    assert refused(lti.claims(**{c.CONTEXT: {"title": "x"}})).details["claim"] == c.CONTEXT + "#id"


def test_nrps_without_memberships_url_is_refused(lti):
    error = refused(lti.claims(**{c.NRPS: {"service_versions": ["2.0"]}}))

    assert error.details["claim"] == c.NRPS + "#context_memberships_url"


def test_wrong_version_and_message_type_are_refused(lti):
    refused(lti.claims(**{c.VERSION: "1.1"}), "version-unsupported")
    refused(lti.claims(**{c.MESSAGE_TYPE: "LtiStartProctoring"}), "message-type-unsupported")


# --- claims of the wrong type ----------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"sub": 42},
        {"aud": 7},
        {"aud": ["ok", 3]},
        {"iat": "yesterday"},
        {"exp": True},
        {"nonce": ["n"]},
        {c.DEPLOYMENT_ID: 1},
        {c.RESOURCE_LINK: "link-1"},
        {c.RESOURCE_LINK: {"id": 1}},
        {c.ROLES: "Learner"},
        {c.ROLES: ["Learner", None]},
        {c.CONTEXT: ["course-1"]},
        {c.CUSTOM: ["a"]},
        {c.AGS_ENDPOINT: {**AGS, "lineitem": "/relative/path"}},
        {c.AGS_ENDPOINT: {**AGS, "scope": "score"}},
        {c.NRPS: {"context_memberships_url": "javascript:alert(1)"}},
        {"exp": 1e300},
    ],
)
def test_claims_the_tool_acts_on_must_have_the_right_type(lti, change):
    refused(lti.claims(**change), "claim-invalid")


def test_descriptive_claims_of_the_wrong_type_are_dropped(lti):
    claims = lti.claims(
        name=123,
        email=["a@b"],
        **{
            c.CONTEXT: {"id": "course-1", "title": 5},
            c.RESOURCE_LINK: {"id": "link-1", "title": {"en": "x"}},
            c.LAUNCH_PRESENTATION: {"return_url": "not a url", "width": "wide", "height": True},
        },
    )

    message = parse(claims)

    assert message.name is None and message.email is None
    assert message.context.title is None and message.resource_link.title is None
    assert message.launch_presentation == c.LaunchPresentation()


# --- the message value ----------------------------------------------------------------------


def test_raw_claims_are_a_read_only_copy(lti):
    claims = lti.claims(**{c.CUSTOM: {"a": "1"}})
    message = parse(claims)

    claims[c.CUSTOM]["a"] = "changed"
    claims["iss"] = "changed"

    assert message.claims["iss"] == lti.issuer
    assert message.claims[c.CUSTOM]["a"] == "1"
    with pytest.raises(TypeError):
        message.claims["iss"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        message.custom["a"] = "x"  # type: ignore[index]


def test_message_is_immutable(lti):
    message = parse(lti.claims())

    with pytest.raises(dataclasses.FrozenInstanceError):
        message.subject = "someone-else"  # type: ignore[misc]


def test_repr_leaves_out_personal_data(lti):
    text = repr(parse(lti.claims(**{c.LIS: {"person_sourcedid": "hr-0042"}})))

    for personal in ("Ada", "Lovelace", "ada@example.com", "hr-0042"):
        assert personal not in text


# --- LaunchError --------------------------------------------------------------------------


def test_launch_error_is_a_value_a_person_can_act_on():
    error = LaunchError("nonce-replayed", "already used", "relaunch", details={"issuer": "x"})

    assert error.status == 400
    assert str(error) == "nonce-replayed: already used"
    assert error.to_dict() == {
        "code": "nonce-replayed",
        "reason": "already used",
        "hint": "relaunch",
        "status": 400,
        "details": {"issuer": "x"},
    }
    with pytest.raises(TypeError):
        error.details["issuer"] = "y"  # type: ignore[index]
