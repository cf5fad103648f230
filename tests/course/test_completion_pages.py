"""Completion in the browser: settings for trainers, status, attestation, record, certificate, verification."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from course.database import db
from course.models import CompletionRecord, GradeOutbox, Placement
from quizzes import engine
from quizzes.attempts import published_case
from tests.conftest import INSTRUCTOR_ROLE
from tests.helpers import csrf_token_from

LESSON = "own-apologizing-well"
CASE = "pizza-wrong-crust"
LINEITEM = "https://lms.example.edu/api/lineitems/9"
CASES = ("airline-angry-passenger", "ceo-spill-remark", "pizza-wrong-crust", "scheduled-post-flood",
         "support-chat-screenshot")


def _with(placement: Placement, **settings: Any) -> None:
    placement.settings = settings
    placement.lineitem_url = LINEITEM
    db.session.commit()


def _complete_lesson(browser: FlaskClient, placement: Placement, slug: str = LESSON) -> Any:
    page = browser.get(f"/p/{placement.id}/lessons/{slug}").get_data(as_text=True)
    return browser.post(f"/p/{placement.id}/lessons/{slug}/complete", data={"csrf_token": csrf_token_from(page)})


def _records() -> list[CompletionRecord]:
    return list(db.session.scalars(select(CompletionRecord).order_by(CompletionRecord.id)))


def _grades() -> list[GradeOutbox]:
    return list(db.session.scalars(select(GradeOutbox).order_by(GradeOutbox.id)))


def _settings_form(browser: FlaskClient, placement: Placement, **fields: Any) -> dict[str, Any]:
    page = browser.get(f"/p/{placement.id}/settings").get_data(as_text=True)
    data: dict[str, Any] = {"csrf_token": csrf_token_from(page), "counted_cases": [c for c in CASES if c in page], "pass_mark": "",
                            "due_at": "", "recertify_after_days": "", "attestation": ""}
    data.update(fields)
    return data


def test_a_trainer_sets_the_rule_and_learners_see_the_due_date(launch_as: Callable[..., Any]) -> None:
    trainer, placement = launch_as(sub="trainer-1", role=INSTRUCTOR_ROLE, name="Tess Trainer")
    page = trainer.get(f"/p/{placement.id}/settings")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert all(f'value="{slug}"' in html for slug in CASES) and "Due date" in html
    saved = trainer.post(f"/p/{placement.id}/settings", data=_settings_form(
        trainer, placement, counted_cases=[CASE], pass_mark="70", due_at="2031-03-31T17:00+01:00",
        recertify_after_days="365", attestation="I have read the policy.", **{f"pass_mark__{CASE}": "80"}))
    assert saved.status_code == 303
    assert "Saved." in trainer.get(saved.headers["Location"]).get_data(as_text=True)
    db.session.refresh(placement)
    assert placement.settings == {"counted_cases": [CASE], "pass_mark": 70, "pass_marks": {CASE: 80},
                                  "due_at": "2031-03-31T16:00:00+00:00", "recertify_after_days": 365,
                                  "attestation": "I have read the policy."}
    learner, _ = launch_as(sub="learner-1")
    home = learner.get(f"/p/{placement.id}/").get_data(as_text=True)
    assert "Your status: Not started" in home
    assert 'Due by <time datetime="2031-03-31T16:00:00+00:00">31 March 2031, 16:00 UTC (+00:00)</time>' in home
    assert "Completion settings for this placement" not in home
    assert "The gluten-free pizza that wasn&#39;t: 80%" in home


@pytest.mark.parametrize(("fields", "message"), [
    ({"due_at": "next friday"}, "is not a date and time Rebound can read"),
    ({"due_at": "2031-02-30"}, "is not a date and time Rebound can read"),
    ({"counted_cases": ["no-such-case"]}, "Unknown case id &#39;no-such-case&#39;"),
    ({"pass_mark": "150"}, "The pass mark must be a whole number from 0 to 100; &#39;150&#39; isn&#39;t."),
    ({f"pass_mark__{CASE}": "-5"}, "The pass mark must be a whole number from 0 to 100"),
    ({"recertify_after_days": "0"}, "The recertification period must be a whole number from 1 to 3650"),
    ({"attestation": "x" * 2001}, "Field cannot be longer than 2000 characters."),
])
def test_bad_settings_are_refused_beside_their_field_and_nothing_is_saved(
    launch_as: Callable[..., Any], fields: dict[str, Any], message: str
) -> None:
    trainer, placement = launch_as(sub="trainer-1", role=INSTRUCTOR_ROLE)
    response = trainer.post(f"/p/{placement.id}/settings", data=_settings_form(trainer, placement, **fields))
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Nothing was saved" in html and message in html and 'class="field-error"' in html
    db.session.refresh(placement)
    assert placement.settings == {}


def test_a_forged_settings_form_without_its_token_saves_nothing(launch_as: Callable[..., Any]) -> None:
    trainer, placement = launch_as(sub="trainer-1", role=INSTRUCTOR_ROLE)
    data = _settings_form(trainer, placement, due_at="2031-01-01")
    del data["csrf_token"]
    response = trainer.post(f"/p/{placement.id}/settings", data=data)
    assert response.status_code == 400 and "security token" in response.get_data(as_text=True)
    db.session.refresh(placement)
    assert placement.settings == {}


def test_only_trainers_of_that_placement_open_its_settings(launch_as: Callable[..., Any]) -> None:
    learner, placement = launch_as(sub="learner-1")
    assert learner.get(f"/p/{placement.id}/settings").status_code == 403
    elsewhere, _ = launch_as(sub="trainer-2", role=INSTRUCTOR_ROLE, resource_link="link-2")
    assert elsewhere.get(f"/p/{placement.id}/settings").status_code == 403


def test_finishing_a_placement_writes_a_record_and_queues_the_final_grade(
    launch_as: Callable[..., Any], app: Flask
) -> None:
    learner, placement = launch_as(custom={"rebound_target": f"lesson:{LESSON}"})
    _with(placement)
    home = learner.get(f"/p/{placement.id}/").get_data(as_text=True)
    assert "Your status: Not started" in home and "0 of 1 lessons completed" in home
    assert _complete_lesson(learner, placement).status_code == 303
    [record] = _records()
    assert record.status == "completed" and record.content_versions == {f"lesson:{LESSON}": 1}
    [grade] = _grades()
    assert (grade.activity_progress, grade.grading_progress, grade.score_given) == ("Completed", "FullyGraded", 100.0)
    home = learner.get(f"/p/{placement.id}/").get_data(as_text=True)
    assert "Your status: Completed" in home and f'href="/p/{placement.id}/record"' in home

    certificate = learner.get(f"/p/{placement.id}/record").get_data(as_text=True)
    verify_url = f"https://rebound.test/verify/{record.public_id}"
    assert "Certificate of completion" in certificate and "Ada Lovelace" in certificate
    assert f'href="{verify_url}"' in certificate and f"<code>lesson:{LESSON}</code> version 1" in certificate
    assert "UTC (+00:00)" in certificate

    download = learner.get(f"/p/{placement.id}/record.json")
    assert download.status_code == 200 and "attachment" in download.headers["Content-Disposition"]
    body = json.loads(download.get_data(as_text=True))
    assert body["public_id"] == record.public_id and body["verification_url"] == verify_url
    assert body["completed_at"].endswith("+00:00") and body["learner"]["name"] == "Ada Lovelace"

    anyone = app.test_client()
    proof = anyone.get(f"/verify/{record.public_id}")
    text = proof.get_data(as_text=True)
    assert proof.status_code == 200 and "authentic record" in text and "Ada Lovelace" in text
    assert "Social media at Acme" in text and "Completed" in text and f"<code>lesson:{LESSON}</code>" in text
    assert record.learner_email == "ada@example.com" and "ada@example.com" not in text  # no contact details


def test_completing_twice_from_two_tabs_gives_one_record_and_one_grade(launch_as: Callable[..., Any]) -> None:
    learner, placement = launch_as(custom={"rebound_target": f"lesson:{LESSON}"})
    _with(placement)
    page = learner.get(f"/p/{placement.id}/lessons/{LESSON}").get_data(as_text=True)
    token = csrf_token_from(page)
    for _ in range(2):
        response = learner.post(f"/p/{placement.id}/lessons/{LESSON}/complete", data={"csrf_token": token})
        assert response.status_code == 303
    assert len(_records()) == 1
    assert [g.grading_progress for g in _grades()] == ["FullyGraded"]


def test_progress_is_sent_as_pending_before_completion(launch_as: Callable[..., Any]) -> None:
    learner, placement = launch_as(custom={"rebound_target": "module:own"})
    _with(placement, counted_cases=[])
    _complete_lesson(learner, placement)
    [grade] = _grades()
    assert (grade.activity_progress, grade.grading_progress, grade.score_given) == ("InProgress", "Pending", 33.0)
    assert _records() == []


def test_the_attestation_must_be_ticked_and_is_kept_in_the_record(launch_as: Callable[..., Any]) -> None:
    statement = "I have read and understood the Acme social media policy."
    learner, placement = launch_as(custom={"rebound_target": f"lesson:{LESSON}"})
    _with(placement, attestation=statement)
    _complete_lesson(learner, placement)
    assert _records() == []
    home = learner.get(f"/p/{placement.id}/").get_data(as_text=True)
    assert statement in home and "I have read and understood</label>" in home
    token = csrf_token_from(home)
    unticked = learner.post(f"/p/{placement.id}/completion", data={"csrf_token": token})
    assert unticked.status_code == 400 and "nothing was recorded" in unticked.get_data(as_text=True)
    assert _records() == []
    ticked = learner.post(f"/p/{placement.id}/completion", data={"csrf_token": token, "attest": "y"})
    assert ticked.status_code == 303 and ticked.headers["Location"].endswith(f"/p/{placement.id}/record")
    [record] = _records()
    assert record.attestation_text == statement and record.attested_at is not None
    assert record.content_versions == {f"lesson:{LESSON}": 1}
    assert statement in learner.get(f"/p/{placement.id}/record").get_data(as_text=True)


def test_asking_to_record_completion_before_finishing_says_what_is_left(launch_as: Callable[..., Any]) -> None:
    learner, placement = launch_as(custom={"rebound_target": f"lesson:{LESSON}"})
    token = csrf_token_from(learner.get(f"/p/{placement.id}/lessons/{LESSON}").get_data(as_text=True))
    response = learner.post(f"/p/{placement.id}/completion", data={"csrf_token": token, "attest": "y"})
    assert response.status_code == 409 and "Still to do: Apologizing well." in response.get_data(as_text=True)
    assert _records() == []


def test_a_forged_completion_form_without_its_token_records_nothing(launch_as: Callable[..., Any]) -> None:
    learner, placement = launch_as(custom={"rebound_target": f"lesson:{LESSON}"})
    _with(placement, attestation="I agree.")
    _complete_lesson(learner, placement)
    response = learner.post(f"/p/{placement.id}/completion", data={"attest": "y"})
    assert response.status_code == 400 and _records() == []


def test_past_the_due_date_the_home_says_overdue(launch_as: Callable[..., Any]) -> None:
    learner, placement = launch_as()
    _with(placement, due_at="2020-06-30")
    learner.get(f"/p/{placement.id}/lessons/{LESSON}")
    home = learner.get(f"/p/{placement.id}/").get_data(as_text=True)
    assert "Your status: Overdue" in home and "Was due by" in home and "30 June 2020, 23:59 UTC (+00:00)" in home


def _play_best(browser: FlaskClient, placement: Placement) -> str:
    intro = browser.get(f"/p/{placement.id}/cases/{CASE}").get_data(as_text=True)
    url = browser.post(f"/p/{placement.id}/cases/{CASE}/start",
                       data={"csrf_token": csrf_token_from(intro)}).headers["Location"]
    _, case = published_case(db.session, placement.platform_id, CASE)  # type: ignore[misc]
    best = {step.node_id: step.choice_id for step in engine.best_path(case).steps}  # type: ignore[union-attr]
    for _ in range(20):
        page = browser.get(url).get_data(as_text=True)
        node = re.search(r'name="node" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        step = re.search(r'name="step" value="(\d+)"', page).group(1)  # type: ignore[union-attr]
        response = browser.post(f"{url}/answer", data={"csrf_token": csrf_token_from(page), "node": node,
                                                       "step": step, "choice": best[node]})
        if "/debrief" in response.headers["Location"]:
            return str(response.headers["Location"])
    raise AssertionError("the case never ended")


def test_ending_a_case_attempt_checks_completion(launch_as: Callable[..., Any]) -> None:
    learner, placement = launch_as(custom={"rebound_target": f"case:{CASE}"})
    _with(placement)
    _play_best(learner, placement)
    [record] = _records()
    assert record.status == "passed" and record.content_versions == {f"case:{CASE}": 1} and record.case_attempts == 1
    assert "Your status: Passed" in learner.get(f"/p/{placement.id}/").get_data(as_text=True)


def test_an_unknown_verification_code_is_a_clear_404(app: Flask) -> None:
    for code in ("not-a-real-code", "x" * 300):
        response = app.test_client().get(f"/verify/{code}")
        assert response.status_code == 404
        assert "No completion record has this verification code" in response.get_data(as_text=True)


def test_another_learners_record_is_not_reachable(launch_as: Callable[..., Any]) -> None:
    first, placement = launch_as(custom={"rebound_target": f"lesson:{LESSON}"})
    _complete_lesson(first, placement)
    assert len(_records()) == 1
    second, _ = launch_as(sub="learner-2", name="Grace Hopper", custom={"rebound_target": f"lesson:{LESSON}"})
    for path in ("record", "record.json", "record?sequence=1"):
        response = second.get(f"/p/{placement.id}/{path}")
        assert response.status_code == 404
        assert "Ada Lovelace" not in response.get_data(as_text=True)
    assert "no completion record in this course yet" in second.get(f"/p/{placement.id}/record").get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(CompletionRecord)) == 1


def test_a_bad_record_number_is_a_clear_404(launch_as: Callable[..., Any]) -> None:
    learner, placement = launch_as(custom={"rebound_target": f"lesson:{LESSON}"})
    _complete_lesson(learner, placement)
    for wanted, words in (("abc", "record numbers are whole numbers"), ("7", "no record number 7")):
        response = learner.get(f"/p/{placement.id}/record?sequence={wanted}")
        assert response.status_code == 404 and words in response.get_data(as_text=True)


def test_a_learner_who_meets_a_relaxed_rule_records_completion_from_the_home(launch_as: Callable[..., Any]) -> None:
    learner, placement = launch_as(custom={"rebound_target": "module:own"})
    for slug in ("own-taking-responsibility-in-public", LESSON, "own-owning-it-not-hiding"):
        _complete_lesson(learner, placement, slug)
    assert _records() == []  # the module's two cases still count
    trainer, _ = launch_as(sub="trainer-1", role=INSTRUCTOR_ROLE)
    assert "Completion settings for this placement" in trainer.get(f"/p/{placement.id}/").get_data(as_text=True)
    saved = trainer.post(f"/p/{placement.id}/settings", data=_settings_form(trainer, placement, counted_cases=[]))
    assert saved.status_code == 303
    db.session.refresh(placement)
    assert placement.settings == {"counted_cases": []}
    home = learner.get(f"/p/{placement.id}/").get_data(as_text=True)
    assert "Record my completion" in home
    response = learner.post(f"/p/{placement.id}/completion", data={"csrf_token": csrf_token_from(home)})
    assert response.status_code == 303
    [record] = _records()
    assert record.status == "completed" and record.score_percent is None
