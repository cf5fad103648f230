"""A learner's data: exported for them, erased on request with the completion facts kept
anonymised, and erased after the retention period."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from course.config import ConfigError, load_settings
from course.database import db, utcnow
from course.models import (
    CaseAttempt,
    CaseStep,
    CompletionRecord,
    ContentItem,
    ContentVersion,
    Context,
    LessonProgress,
    Placement,
    Platform,
    RosterMember,
    User,
)
from course.privacy import erase_learner, export_learner, find_learner, pseudonym, purge_expired

KEY = "test-secret-key-that-is-long-enough-0123456789"


@pytest.fixture
def make_learner(app: Flask, make_platform: Callable[..., Platform], course_content: None) -> Callable[..., User]:
    """Factory: a learner with a read lesson, a played case, a completion record and a roster entry."""
    platform = make_platform()
    context = Context(platform_id=platform.id, deployment_id=platform.deployments[0].id, lms_context_id="course-1",
                      title="Social media at Acme")
    db.session.add(context)
    db.session.flush()
    placement = Placement(platform_id=platform.id, context_id=context.id, resource_link_id="link-1", title="Rebound",
                          target_kind="course")
    db.session.add(placement)
    db.session.flush()
    lesson = db.session.scalar(select(ContentVersion).join(ContentItem).where(ContentItem.kind == "lesson").limit(1))
    case = db.session.scalar(select(ContentVersion).join(ContentItem).where(ContentItem.kind == "case").limit(1))
    assert lesson is not None and case is not None

    def make(sub: str = "learner-1", name: str = "Ada Lovelace", active_days_ago: int = 0) -> User:
        at = utcnow() - timedelta(days=active_days_ago)
        user = User(platform_id=platform.id, sub=sub, name=name, given_name=name.split()[0],
                    family_name=name.split()[-1], email=f"{sub}@example.com", lis_person_sourcedid=f"sis-{sub}",
                    created_at=at, last_launch_at=at)
        db.session.add(user)
        db.session.flush()
        db.session.add(LessonProgress(user_id=user.id, placement_id=placement.id, lesson_slug=lesson.item.slug,
                                      content_version_id=lesson.id, first_opened_at=at, last_opened_at=at,
                                      last_active_at=at, completed_at=at, completed_version_id=lesson.id,
                                      seconds_spent=240))
        attempt = CaseAttempt(user_id=user.id, placement_id=placement.id, case_slug=case.item.slug,
                              content_version_id=case.id, number=1, status="ended", started_at=at, last_step_at=at,
                              ended_at=at, ending_node="recovered", score=8, percent=80, passed=True)
        attempt.steps = [CaseStep(position=1, node_id="start", choice_id="own-it", score=8, answered_at=at)]
        db.session.add(attempt)
        db.session.add(CompletionRecord(
            public_id=f"rec-{sub}", platform_id=platform.id, user_id=user.id, placement_id=placement.id,
            learner_sub=sub, learner_name=name, learner_email=f"{sub}@example.com", context_lms_id="course-1",
            context_title="Social media at Acme", resource_link_id="link-1", status="passed", score_percent=80,
            case_attempts=1, seconds_spent=300, completed_at=at, content_versions={"lesson": lesson.number},
        ))
        db.session.add(RosterMember(platform_id=platform.id, context_id=context.id, sub=sub, name=name,
                                    email=f"{sub}@example.com", roles=["Learner"]))
        db.session.commit()
        return user

    return make


def _run(app: Flask, *args: str, input: str | None = None) -> Any:
    result = app.test_cli_runner().invoke(args=list(args), input=input)
    db.session.expire_all()
    return result


def test_export_holds_everything_rebound_keeps_about_the_learner(
    app: Flask, make_learner: Callable[..., User], tmp_path: Path
) -> None:
    user = make_learner()
    make_learner(sub="someone-else", name="Grace Hopper")
    target = tmp_path / "ada.json"
    result = _run(app, "learners", "export", "--platform", str(user.platform_id), "--sub", "learner-1",
                  "--output", str(target))
    assert result.exit_code == 0, result.output
    data = json.loads(target.read_text(encoding="utf-8"))
    assert data["user"]["name"] == "Ada Lovelace" and data["user"]["email"] == "learner-1@example.com"
    assert data["user"]["lis_person_sourcedid"] == "sis-learner-1"
    assert data["placements"] == [{"placement_id": data["lesson_progress"][0]["placement_id"], "context_id": "course-1",
                                   "context_title": "Social media at Acme", "resource_link_id": "link-1",
                                   "title": "Rebound"}]
    assert data["lesson_progress"][0]["seconds_spent"] == 240
    (attempt,) = data["case_attempts"]
    assert attempt["percent"] == 80 and attempt["steps"][0]["choice"] == "own-it"
    (record,) = data["completion_records"]
    assert record["id"] == "rec-learner-1" and record["learner_name"] == "Ada Lovelace" and record["status"] == "passed"
    assert data["roster_memberships"][0]["email"] == "learner-1@example.com"
    assert "Grace" not in target.read_text(encoding="utf-8")


def test_export_writes_to_standard_output_by_default(app: Flask, make_learner: Callable[..., User]) -> None:
    user = make_learner()
    result = _run(app, "learners", "export", "--platform", str(user.platform_id), "--sub", "learner-1")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["user"]["sub"] == "learner-1"


def test_erase_removes_identity_and_keeps_the_completion_facts_anonymised(
    app: Flask, make_learner: Callable[..., User]
) -> None:
    user = make_learner()
    other = make_learner(sub="someone-else", name="Grace Hopper")
    result = _run(app, "learners", "erase", "--platform", str(user.platform_id), "--sub", "learner-1", "--yes")
    assert result.exit_code == 0, result.output
    alias = pseudonym(user.platform_id, "learner-1", key=KEY)
    assert f"now {alias}; 1 completion record(s) anonymised, 1 roster entry(ies) removed" in result.output

    erased = db.session.get(User, user.id)
    assert erased is not None and erased.erased_at is not None and erased.sub == alias
    assert (erased.name, erased.given_name, erased.family_name, erased.email, erased.lis_person_sourcedid) == (
        None, None, None, None, None)
    record = db.session.scalar(select(CompletionRecord).where(CompletionRecord.public_id == "rec-learner-1"))
    assert record is not None
    assert (record.learner_sub, record.learner_name, record.learner_email) == (alias, None, None)
    # What an auditor needs stays: what, where, when, how well, on which content.
    assert (record.status, record.score_percent, record.context_lms_id, record.case_attempts) == (
        "passed", 80, "course-1", 1)
    assert record.completed_at is not None and record.content_versions
    assert db.session.scalar(select(CaseAttempt).where(CaseAttempt.user_id == user.id)) is not None
    assert db.session.scalars(select(RosterMember.sub)).all() == ["someone-else"]
    # Nobody else is touched.
    kept = db.session.get(User, other.id)
    assert kept is not None and kept.name == "Grace Hopper" and kept.erased_at is None


def test_erasing_twice_changes_nothing_and_says_so(app: Flask, make_learner: Callable[..., User]) -> None:
    user = make_learner()
    args = ["learners", "erase", "--platform", str(user.platform_id), "--sub", "learner-1", "--yes"]
    assert _run(app, *args).exit_code == 0
    first = db.session.get(User, user.id)
    assert first is not None
    erased_at = first.erased_at
    again = _run(app, *args[:-1])  # no --yes: nothing left to confirm
    assert again.exit_code == 0, again.output
    assert "was already erased" in again.output
    assert db.session.get(User, user.id).erased_at == erased_at  # type: ignore[union-attr]


def test_erase_asks_first_and_keeps_everything_when_refused(app: Flask, make_learner: Callable[..., User]) -> None:
    user = make_learner()
    result = _run(app, "learners", "erase", "--platform", str(user.platform_id), "--sub", "learner-1", input="n\n")
    assert result.exit_code == 1
    assert "Erase learner 'learner-1'" in result.output
    kept = db.session.get(User, user.id)
    assert kept is not None and kept.name == "Ada Lovelace" and kept.erased_at is None


@pytest.mark.parametrize("command", ["export", "erase"])
def test_an_unknown_learner_or_platform_is_a_clear_error(
    app: Flask, make_learner: Callable[..., User], command: str
) -> None:
    user = make_learner()
    extra = ["--yes"] if command == "erase" else []
    result = _run(app, "learners", command, "--platform", str(user.platform_id), "--sub", "nobody", *extra)
    assert result.exit_code == 1
    assert "No learner with sub 'nobody'" in result.output
    nowhere = _run(app, "learners", command, "--platform", "9999", "--sub", "learner-1")
    assert nowhere.exit_code == 1 and "No platform has id 9999" in nowhere.output


def test_an_erased_learner_who_launches_again_starts_afresh(app: Flask, launch_as: Callable[..., Any]) -> None:
    _, placement = launch_as(sub="learner-7", name="Alan Turing")
    user = db.session.scalar(select(User).where(User.sub == "learner-7"))
    assert user is not None
    erase_learner(db.session, user, key=KEY, now=utcnow())
    db.session.commit()
    launch_as(sub="learner-7", name="Alan Turing")
    fresh = db.session.scalar(select(User).where(User.sub == "learner-7"))
    assert fresh is not None and fresh.id != user.id and fresh.erased_at is None
    platform = db.session.get(Platform, placement.platform_id)
    assert platform is not None
    # The sub names the live account now; the erased one stays a pseudonym.
    assert find_learner(db.session, platform, "learner-7", key=KEY).id == fresh.id


def test_export_of_an_erased_learner_holds_no_identity(app: Flask, make_learner: Callable[..., User]) -> None:
    user = make_learner()
    erase_learner(db.session, user, key=KEY, now=utcnow())
    data = export_learner(db.session, user, now=utcnow())
    text = json.dumps(data)
    assert "Ada" not in text and "learner-1@example.com" not in text and "sis-learner-1" not in text
    assert data["completion_records"][0]["status"] == "passed"


def test_purge_erases_only_learners_inactive_past_the_retention_period(
    app: Flask, make_learner: Callable[..., User]
) -> None:
    old = make_learner(sub="old", name="Old Timer", active_days_ago=400)
    recent = make_learner(sub="recent", name="New Comer", active_days_ago=10)
    app.config["REBOUND_SETTINGS"] = dataclasses.replace(app.config["REBOUND_SETTINGS"], retention_days=365)
    dry = _run(app, "learners", "purge-expired", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"Would erase user {old.id}" in dry.output and "Would erase 1 learner(s)" in dry.output
    assert "Old Timer" not in dry.output  # ids only
    assert db.session.get(User, old.id).erased_at is None  # type: ignore[union-attr]

    done = _run(app, "learners", "purge-expired")
    assert done.exit_code == 0 and "Erased 1 learner(s) inactive for more than 365 days." in done.output
    assert db.session.get(User, old.id).erased_at is not None  # type: ignore[union-attr]
    assert db.session.get(User, recent.id).erased_at is None  # type: ignore[union-attr]
    assert "Erased 0 learner(s)" in _run(app, "learners", "purge-expired").output


@pytest.mark.parametrize(
    ("model", "column"),
    [(User, "last_launch_at"), (LessonProgress, "last_active_at"), (CaseAttempt, "last_step_at"),
     (CompletionRecord, "completed_at")],
)
def test_any_recent_activity_keeps_a_learner(
    app: Flask, make_learner: Callable[..., User], model: Any, column: str
) -> None:
    user = make_learner(sub="reader", active_days_ago=400)
    assert [u.id for u, _ in purge_expired(db.session, retention_days=365, key=KEY, now=utcnow(), dry_run=True)] == [
        user.id]
    row = db.session.scalar(select(model).where((model.id if model is User else model.user_id) == user.id))
    setattr(row, column, utcnow() - timedelta(days=3))
    db.session.commit()
    assert purge_expired(db.session, retention_days=365, key=KEY, now=utcnow(), dry_run=True) == []


def test_purge_without_a_retention_period_refuses_and_says_how_to_set_one(app: Flask) -> None:
    result = _run(app, "learners", "purge-expired")
    assert result.exit_code == 1
    assert "REBOUND_RETENTION_DAYS is not set" in result.output


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("", None), ("730", 730)])
def test_the_retention_setting_defaults_to_keeping_data(tmp_path: Path, value: str | None, expected: int | None) -> None:
    environ = {"REBOUND_DATA_DIR": str(tmp_path)} | ({"REBOUND_RETENTION_DAYS": value} if value is not None else {})
    assert load_settings(environ, make_secret=lambda _: KEY).retention_days == expected


@pytest.mark.parametrize("value", ["0", "-5", "two years"])
def test_a_bad_retention_setting_stops_the_start(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="REBOUND_RETENTION_DAYS"):
        load_settings({"REBOUND_DATA_DIR": str(tmp_path), "REBOUND_RETENTION_DAYS": value}, make_secret=lambda _: KEY)


def test_the_hr_export_shows_an_erased_learner_only_by_pseudonym(app: Flask, make_learner: Callable[..., User]) -> None:
    from course.exports.rows import ExportFilters, iter_rows

    user = make_learner()
    make_learner(sub="someone-else", name="Grace Hopper")
    erase_learner(db.session, user, key=KEY, now=utcnow())
    rows = list(iter_rows(db.session, ExportFilters(user.platform_id), now=utcnow()))
    text = json.dumps([row.as_dict() for row in rows])
    assert "Ada" not in text and "learner-1@example.com" not in text and '"learner_id": "learner-1"' not in text
    erased = [row for row in rows if row.learner_id == pseudonym(user.platform_id, "learner-1", key=KEY)]
    assert [(row.name, row.email, row.status, row.score_percent, row.completion_record_id) for row in erased] == [
        (None, None, "passed", 80, "rec-learner-1")]
    assert "Grace Hopper" in text
