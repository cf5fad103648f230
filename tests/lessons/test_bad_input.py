"""Lessons under bad input, through the editor, the command line and the learner's URLs:
each gets a clear message and nothing already saved is lost."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from course.database import db
from course.models import ContentDraft, ContentItem, ContentVersion
from tests.conftest import INSTRUCTOR_ROLE, LEARNER_ROLE
from tests.helpers import csrf_token_from
from tests.lessons.test_editor import _form

SLUG = "own-apologizing-well"
EDIT = f"/trainer/lessons/{SLUG}/edit"


def _trainer(launch_as: Callable[..., Any], sub: str = "trainer-1") -> FlaskClient:
    browser, _ = launch_as(sub=sub, role=INSTRUCTOR_ROLE, name="Theo Trainer")
    return browser


def _saved_draft(trainer: FlaskClient, marker: str) -> dict[str, str]:
    """Save a draft with a marker in its body; return the form as the editor now shows it."""
    form = _form(trainer.get(EDIT).get_data(as_text=True))
    form["body"] = form["body"].replace("## Key takeaways", f"{marker}\n\n## Key takeaways")
    saved = trainer.post(EDIT, data={**form, "save": "Save draft"})
    assert "Draft saved." in saved.get_data(as_text=True)
    return _form(saved.get_data(as_text=True))


def _draft_source() -> str:
    draft = db.session.scalar(select(ContentDraft))
    assert draft is not None
    return draft.source


def _versions() -> int:
    return db.session.scalar(select(func.count()).select_from(ContentVersion)) or 0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("order", "two", "Not a valid integer value."),
        ("order", "", "This field is required."),
        ("estimated_minutes", "-3", "Number must be between 1 and 60."),
        ("title", "", "This field is required."),
        ("objectives", "", "This field is required."),
        ("module", "marketing", "Not a valid choice."),
    ],
    ids=["order not a number", "order missing", "minutes out of range", "title missing", "objectives missing", "unknown module"],
)
def test_a_front_matter_field_missing_or_of_the_wrong_type_is_shown_beside_it_and_the_draft_is_kept(
    launch_as: Callable[..., Any], field: str, value: str, message: str
) -> None:
    trainer = _trainer(launch_as)
    form = _saved_draft(trainer, "A sentence the trainer saved earlier.")
    before, versions = _draft_source(), _versions()
    for button in ("save", "publish"):
        response = trainer.post(EDIT, data={**form, field: value, button: button.title()})
        assert response.status_code == 400
        page = response.get_data(as_text=True)
        errors = re.search(rf'<ul class="field-errors" id="{field}-errors">(.*?)</ul>', page, re.S)
        assert errors is not None and message in errors.group(1), page
        assert "A sentence the trainer saved earlier." in page  # what was typed is still in the form
    assert _draft_source() == before and _versions() == versions


def test_a_lesson_file_without_front_matter_or_with_a_wrongly_typed_field_is_refused_by_import(
    app: Flask, course_content: None, tmp_path: Path
) -> None:
    runner = app.test_cli_runner()
    assert runner.invoke(args=["content", "export", str(tmp_path)]).exit_code == 0
    lesson = tmp_path / "lessons" / "own" / "02-apologizing-well.md"
    other = tmp_path / "lessons" / "own" / "01-taking-responsibility-in-public.md"
    lesson.write_text(lesson.read_text(encoding="utf-8").split("---\n", 2)[2], encoding="utf-8")
    other.write_text(other.read_text(encoding="utf-8").replace("estimated_minutes: ", "estimated_minutes: many ", 1))
    versions = _versions()
    result = runner.invoke(args=["content", "import", str(tmp_path)])
    assert result.exit_code == 1
    assert "02-apologizing-well.md:1:" in result.output and "front matter" in result.output
    assert re.search(r"01-taking-responsibility-in-public\.md:\d+: .*estimated_minutes", result.output), result.output
    assert _versions() == versions


def test_a_new_lesson_with_an_id_already_in_use_is_refused_and_nothing_is_created(launch_as: Callable[..., Any]) -> None:
    trainer = _trainer(launch_as)
    page = trainer.get("/trainer/lessons/new").get_data(as_text=True)
    data = {
        "csrf_token": csrf_token_from(page), "slug": SLUG, "title": "A second apology lesson", "module": "own",
        "order": "9", "estimated_minutes": "5", "objectives": "Apologise again",
        "body": "Text.\n\n## Key takeaways\n\n- One.\n", "save": "Save",
    }
    response = trainer.post("/trainer/lessons/new", data=data)
    assert response.status_code == 409
    assert "already exists; choose another id" in response.get_data(as_text=True)
    assert "A second apology lesson" in response.get_data(as_text=True)  # the form is kept
    assert db.session.scalar(select(func.count()).select_from(ContentDraft)) == 0


def test_a_new_lesson_pointing_at_an_unknown_module_is_refused(launch_as: Callable[..., Any]) -> None:
    trainer = _trainer(launch_as)
    page = trainer.get("/trainer/lessons/new").get_data(as_text=True)
    data = {
        "csrf_token": csrf_token_from(page), "slug": "marketing-new-lesson", "title": "Off topic", "module": "marketing",
        "order": "1", "estimated_minutes": "5", "objectives": "Anything", "body": "Text.\n\n## Key takeaways\n\n- One.\n",
    }
    response = trainer.post("/trainer/lessons/new", data=data)
    assert response.status_code == 400 and "Not a valid choice." in response.get_data(as_text=True)
    assert db.session.scalar(select(ContentItem).where(ContentItem.slug == "marketing-new-lesson")) is None


def test_payloads_in_the_title_and_objectives_are_shown_as_text(launch_as: Callable[..., Any]) -> None:
    learner, placement = launch_as()
    trainer = _trainer(launch_as)
    form = _form(trainer.get(EDIT).get_data(as_text=True))
    form["title"] = 'Apologies <script>alert(1)</script>'
    form["objectives"] += '\n<img src=x onerror=alert(1)> <a href="javascript:alert(1)">x</a>'
    assert trainer.post(EDIT, data={**form, "publish": "Publish"}).status_code == 303
    page = learner.get(f"/p/{placement.id}/lessons/{SLUG}").get_data(as_text=True)
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    assert "<img src=x" not in page and 'href="javascript:' not in page


def test_a_ten_megabyte_lesson_is_refused_and_the_saved_draft_is_untouched(launch_as: Callable[..., Any]) -> None:
    trainer = _trainer(launch_as)
    form = _saved_draft(trainer, "Kept through the oversized save.")
    before = _draft_source()
    response = trainer.post(EDIT, data={**form, "body": "x" * (10 * 1024 * 1024), "publish": "Publish"})
    assert response.status_code == 413 and "too large" in response.get_data(as_text=True)
    assert _draft_source() == before
    assert "Kept through the oversized save." in trainer.get(EDIT).get_data(as_text=True)


def test_a_stale_publish_by_a_second_trainer_is_a_conflict_and_publishes_nothing(launch_as: Callable[..., Any]) -> None:
    first, second = _trainer(launch_as), _trainer(launch_as, sub="trainer-2")
    form_one = _form(first.get(EDIT).get_data(as_text=True))
    form_two = _form(second.get(EDIT).get_data(as_text=True))
    assert first.post(EDIT, data={**form_one, "title": "First trainer's title", "save": "Save"}).status_code == 200
    versions = _versions()
    conflict = second.post(EDIT, data={**form_two, "title": "Second trainer's title", "publish": "Publish"})
    assert conflict.status_code == 409
    assert "Someone else saved this draft" in conflict.get_data(as_text=True)
    assert _versions() == versions and "First trainer" in _draft_source()


def test_a_learner_opening_a_draft_only_lesson_by_its_url_is_told_it_is_not_published(
    launch_as: Callable[..., Any],
) -> None:
    learner, placement = launch_as()
    trainer = _trainer(launch_as)
    page = trainer.get("/trainer/lessons/new").get_data(as_text=True)
    created = trainer.post("/trainer/lessons/new", data={
        "csrf_token": csrf_token_from(page), "slug": "own-a-draft-lesson", "title": "Not ready yet", "module": "own",
        "order": "9", "estimated_minutes": "5", "objectives": "Wait", "body": "Draft text.\n\n## Key takeaways\n\n- One.\n",
    })
    assert created.status_code == 303
    response = learner.get(f"/p/{placement.id}/lessons/own-a-draft-lesson")
    assert response.status_code == 404
    body = response.get_data(as_text=True)
    assert "isn&#39;t published yet" in body and "Draft text." not in body
    assert learner.get("/trainer/lessons/own-a-draft-lesson/edit").status_code == 403
    assert "own-a-draft-lesson" not in learner.get(f"/p/{placement.id}/").get_data(as_text=True)


def _other_tenants_learner(app: Flask) -> tuple[FlaskClient, int]:
    """A learner launched from a second LMS, a tenant of its own."""
    from course.models import Placement
    from plugin import claims as c
    from tests.plugin.lms_double import LmsDouble, platform_key

    key, kid = platform_key()
    other = LmsDouble(app=app, client=app.test_client(), key=key, kid=kid,
                      issuer="https://other-lms.example.org", client_id="other-client")
    other.register()
    response = other.launch(sub="outsider", **{c.ROLES: [LEARNER_ROLE], c.RESOURCE_LINK: {"id": "other-link"}})
    assert response.status_code == 303, response.get_data(as_text=True)
    placement = db.session.scalar(select(Placement).where(Placement.resource_link_id == "other-link"))
    assert placement is not None
    return other.client, placement.id


def test_another_tenants_lesson_cannot_be_opened_by_url(launch_as: Callable[..., Any], app: Flask) -> None:
    learner, placement = launch_as()
    trainer = _trainer(launch_as)
    page = trainer.get("/trainer/lessons/new").get_data(as_text=True)
    trainer.post("/trainer/lessons/new", data={
        "csrf_token": csrf_token_from(page), "slug": "own-acme-only", "title": "Acme's own lesson", "module": "own",
        "order": "9", "estimated_minutes": "5", "objectives": "Acme things",
        "body": "Only for Acme.\n\n## Key takeaways\n\n- One.\n",
    })
    form = _form(trainer.get("/trainer/lessons/own-acme-only/edit").get_data(as_text=True))
    assert trainer.post("/trainer/lessons/own-acme-only/edit", data={**form, "publish": "Publish"}).status_code == 303
    assert "Only for Acme." in learner.get(f"/p/{placement.id}/lessons/own-acme-only").get_data(as_text=True)

    outsider, their_placement = _other_tenants_learner(app)
    theirs = outsider.get(f"/p/{their_placement}/lessons/own-acme-only")
    assert theirs.status_code == 404 and "Only for Acme." not in theirs.get_data(as_text=True)
    assert outsider.get(f"/p/{their_placement}/lessons/{SLUG}").status_code == 200  # the shipped course is theirs
    for url in (f"/p/{placement.id}/", f"/p/{placement.id}/lessons/own-acme-only", f"/p/{placement.id}/progress.json"):
        response = outsider.get(url)  # not their placement: refused before anything of it is read
        assert response.status_code in (403, 404) and "Only for Acme." not in response.get_data(as_text=True), url


def test_simultaneous_clicks_on_mark_complete_record_one_completion_and_no_error(
    app_factory: Callable[..., Flask], empty_database_url: str
) -> None:
    """A double (or tenfold) click, each request on its own connection with real commits."""
    from course.models import LessonProgress
    from tests.quizzes.test_player_bad_input import _all_at_once, _committing_app, _launched_browser

    fresh = _committing_app(app_factory, empty_database_url)
    browser, placement_id = _launched_browser(fresh)
    page = browser.get(f"/p/{placement_id}/lessons/{SLUG}").get_data(as_text=True)
    statuses = _all_at_once(
        fresh, browser, 10, f"/p/{placement_id}/lessons/{SLUG}/complete", {"csrf_token": csrf_token_from(page)}
    )
    assert statuses == [303] * 10, sorted(statuses)
    with fresh.app_context():
        rows = db.session.scalars(select(LessonProgress)).all()
        assert len(rows) == 1 and rows[0].completed_at is not None


def test_simultaneous_first_opens_of_a_lesson_make_one_progress_row(
    app_factory: Callable[..., Flask], empty_database_url: str
) -> None:
    from course.models import LessonProgress
    from tests.quizzes.test_player_bad_input import _committing_app, _launched_browser

    fresh = _committing_app(app_factory, empty_database_url)
    browser, placement_id = _launched_browser(fresh)
    import threading

    cookie = browser.get_cookie("rebound_session")
    assert cookie is not None
    ready, statuses = threading.Barrier(10), []

    def open_it() -> None:
        client = fresh.test_client()
        client.set_cookie("rebound_session", cookie.value, domain=cookie.domain)
        ready.wait()
        statuses.append(client.get(f"/p/{placement_id}/lessons/{SLUG}").status_code)

    threads = [threading.Thread(target=open_it) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert statuses == [200] * 10, sorted(statuses)
    with fresh.app_context():
        assert len(db.session.scalars(select(LessonProgress)).all()) == 1


def test_simultaneous_saves_of_one_lesson_draft_let_one_through_and_refuse_the_rest_with_a_conflict(
    app_factory: Callable[..., Flask], empty_database_url: str
) -> None:
    from tests.quizzes.test_player_bad_input import _all_at_once, _committing_app, _launched_browser

    fresh = _committing_app(app_factory, empty_database_url)
    trainer, _ = _launched_browser(fresh, role=INSTRUCTOR_ROLE)
    form = _form(trainer.get(EDIT).get_data(as_text=True))
    statuses = _all_at_once(fresh, trainer, 8, EDIT, {**form, "title": "Saved once", "save": "Save draft"})
    assert sorted(statuses) == [200] + [409] * 7
    with fresh.app_context():
        draft = db.session.scalar(select(ContentDraft))
        assert draft is not None and draft.revision == int(form["revision"]) + 1 and "Saved once" in draft.source
