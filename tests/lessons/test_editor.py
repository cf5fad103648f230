"""The trainer's lesson editor: drafts, validation shown inline, publishing, history, conflicts,
and the round trip through files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from course.database import db
from course.models import ContentVersion, LessonProgress
from tests.conftest import INSTRUCTOR_ROLE
from tests.helpers import csrf_token_from

SLUG = "own-apologizing-well"


def _form(page: str) -> dict[str, str]:
    """The editor's current field values, as a browser would submit them."""
    import html
    import re

    fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page))
    fields.update({name: html.unescape(value) for name, value in re.findall(r'<textarea[^>]*name="([^"]+)"[^>]*>\n?(.*?)</textarea>', page, re.S)})
    selected = re.search(r'<select[^>]*name="module"[^>]*>.*?<option selected value="([^"]+)"', page, re.S)
    if selected:
        fields["module"] = selected.group(1)
    fields = {k: html.unescape(v) for k, v in fields.items()}
    fields.pop("slug", None)
    for button in ("save", "preview", "publish"):  # a browser sends only the button clicked
        fields.pop(button, None)
    return fields


def _trainer(launch_as: Callable[..., Any]) -> tuple[FlaskClient, Any]:
    return launch_as(sub="trainer-1", role=INSTRUCTOR_ROLE, name="Theo Trainer")


def test_trainer_edits_previews_and_publishes_and_learners_see_the_new_version(
    launch_as: Callable[..., Any], app: Flask
) -> None:
    learner, placement = launch_as()
    learner.get(f"/p/{placement.id}/lessons/{SLUG}")  # progress recorded on version 1
    trainer, _ = _trainer(launch_as)

    page = trainer.get(f"/trainer/lessons/{SLUG}/edit").get_data(as_text=True)
    assert "Apologizing well" in page
    form = _form(page)
    form["body"] = form["body"].replace("## The five parts of a good apology", "## Five parts of an apology people believe")

    preview = trainer.post(f"/trainer/lessons/{SLUG}/edit", data={**form, "preview": "Preview"})
    assert "<h2" in preview.get_data(as_text=True) and "Five parts of an apology people believe" in preview.get_data(as_text=True)

    live = trainer.post("/trainer/lessons/preview", data={"body": "# Hi\n<script>alert(1)</script>"},
                        headers={"X-CSRFToken": form["csrf_token"]})
    assert "<script" not in live.get_json()["html"] and "<h2" in live.get_json()["html"]

    published = trainer.post(f"/trainer/lessons/{SLUG}/edit", data={**form, "publish": "Publish"})
    assert published.status_code == 303, published.get_data(as_text=True)
    history = trainer.get(published.headers["Location"]).get_data(as_text=True)
    assert "Version 2 is published" in history

    lesson = learner.get(f"/p/{placement.id}/lessons/{SLUG}").get_data(as_text=True)
    assert "Five parts of an apology people believe" in lesson and "version 2" in lesson
    progress = db.session.scalar(select(LessonProgress).where(LessonProgress.lesson_slug == SLUG))
    first_version = db.session.get(ContentVersion, progress.content_version_id)  # type: ignore[union-attr]
    assert first_version is not None and first_version.number == 1  # earlier progress keeps naming v1


def test_problems_are_shown_beside_their_fields_and_nothing_is_published(launch_as: Callable[..., Any]) -> None:
    trainer, _ = _trainer(launch_as)
    form = _form(trainer.get(f"/trainer/lessons/{SLUG}/edit").get_data(as_text=True))
    form["body"] = "No takeaways here."
    response = trainer.post(f"/trainer/lessons/{SLUG}/edit", data={**form, "publish": "Publish"})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Key takeaways" in page and 'aria-invalid="true"' in page
    assert db.session.scalar(select(ContentVersion).where(ContentVersion.number == 2)) is None


def test_saving_keeps_a_draft_that_learners_do_not_see(launch_as: Callable[..., Any]) -> None:
    learner, placement = launch_as()
    trainer, _ = _trainer(launch_as)
    form = _form(trainer.get(f"/trainer/lessons/{SLUG}/edit").get_data(as_text=True))
    form["title"] = "Apologising: a draft title"
    saved = trainer.post(f"/trainer/lessons/{SLUG}/edit", data={**form, "save": "Save draft"})
    assert "Draft saved." in saved.get_data(as_text=True)
    assert "Apologising: a draft title" in trainer.get(f"/trainer/lessons/{SLUG}/edit").get_data(as_text=True)
    assert "Apologising: a draft title" not in learner.get(f"/p/{placement.id}/lessons/{SLUG}").get_data(as_text=True)


def test_second_trainer_saving_a_stale_draft_gets_a_conflict_and_nothing_is_overwritten(
    launch_as: Callable[..., Any]
) -> None:
    first, _ = _trainer(launch_as)
    second, _ = launch_as(sub="trainer-2", role=INSTRUCTOR_ROLE, name="Tess Trainer")
    form_one = _form(first.get(f"/trainer/lessons/{SLUG}/edit").get_data(as_text=True))
    form_two = _form(second.get(f"/trainer/lessons/{SLUG}/edit").get_data(as_text=True))
    form_one["title"] = "Title from trainer one"
    form_two["title"] = "Title from trainer two"
    assert first.post(f"/trainer/lessons/{SLUG}/edit", data={**form_one, "save": "Save"}).status_code == 200
    conflict = second.post(f"/trainer/lessons/{SLUG}/edit", data={**form_two, "save": "Save"})
    assert conflict.status_code == 409
    page = conflict.get_data(as_text=True)
    assert "Someone else saved this draft" in page and "Title from trainer two" in page
    assert "Title from trainer one" in first.get(f"/trainer/lessons/{SLUG}/edit").get_data(as_text=True)


def test_history_restores_an_old_version_as_a_new_draft(launch_as: Callable[..., Any]) -> None:
    trainer, _ = _trainer(launch_as)
    form = _form(trainer.get(f"/trainer/lessons/{SLUG}/edit").get_data(as_text=True))
    form["title"] = "A newer title"
    trainer.post(f"/trainer/lessons/{SLUG}/edit", data={**form, "publish": "Publish"})
    history = trainer.get(f"/trainer/lessons/{SLUG}/history").get_data(as_text=True)
    assert "A newer title" in history and "Apologizing well" in history
    shipped = db.session.scalar(select(ContentVersion).where(ContentVersion.title == "Apologizing well"))
    assert shipped is not None
    restored = trainer.post(f"/trainer/lessons/{SLUG}/restore/{shipped.id}", data={"csrf_token": csrf_token_from(history)})
    assert restored.status_code == 303
    assert 'value="Apologizing well"' in trainer.get(f"/trainer/lessons/{SLUG}/edit").get_data(as_text=True)


def test_edits_stay_in_the_trainers_own_tenant(launch_as: Callable[..., Any], app: Flask, make_platform) -> None:  # type: ignore[no-untyped-def]
    from course.content import effective_version

    trainer, placement = _trainer(launch_as)
    form = _form(trainer.get(f"/trainer/lessons/{SLUG}/edit").get_data(as_text=True))
    form["title"] = "Acme's own title"
    trainer.post(f"/trainer/lessons/{SLUG}/edit", data={**form, "publish": "Publish"})
    other = make_platform()
    assert effective_version(db.session, other.id, "lesson", SLUG).title == "Apologizing well"  # type: ignore[union-attr]
    assert effective_version(db.session, placement.platform_id, "lesson", SLUG).title == "Acme's own title"  # type: ignore[union-attr]


def test_learners_cannot_open_the_editor(launch_as: Callable[..., Any]) -> None:
    learner, _ = launch_as()
    assert learner.get(f"/trainer/lessons/{SLUG}/edit").status_code == 403
    assert learner.post("/trainer/lessons/preview", data={"body": "x"}).status_code in (400, 403)


def test_markdown_payloads_are_neutralised_in_what_learners_get(launch_as: Callable[..., Any]) -> None:
    learner, placement = launch_as()
    trainer, _ = _trainer(launch_as)
    form = _form(trainer.get(f"/trainer/lessons/{SLUG}/edit").get_data(as_text=True))
    form["body"] += (
        "\n<script>alert(1)</script>\n<iframe src=https://evil.example></iframe>\n"
        "[click](javascript:alert(1)) <img src=x onerror=alert(1)>\n"
    )
    assert trainer.post(f"/trainer/lessons/{SLUG}/edit", data={**form, "publish": "Publish"}).status_code == 303
    body = learner.get(f"/p/{placement.id}/lessons/{SLUG}").get_data(as_text=True)
    lesson = body.split('<div class="lesson-body">')[1].split('<div class="lesson-complete">')[0]
    for payload in ("<script", "<iframe", "javascript:", "onerror="):
        assert payload not in lesson


def test_oversized_lesson_is_refused_and_nothing_is_lost(launch_as: Callable[..., Any], app: Flask) -> None:
    trainer, _ = _trainer(launch_as)
    form = _form(trainer.get(f"/trainer/lessons/{SLUG}/edit").get_data(as_text=True))
    form["body"] = "x" * (10 * 1024 * 1024)
    response = trainer.post(f"/trainer/lessons/{SLUG}/edit", data={**form, "save": "Save"})
    assert response.status_code == 413
    assert "too large" in response.get_data(as_text=True)


def test_content_export_then_import_into_a_fresh_database_gives_the_same_course(
    app: Flask, course_content: None, tmp_path: Path, app_factory: Callable[..., Flask], empty_database_url: str
) -> None:
    from course import migrate
    from course.database import make_engine

    runner = app.test_cli_runner()
    exported = runner.invoke(args=["content", "export", str(tmp_path / "one")])
    assert exported.exit_code == 0, exported.output
    engine = make_engine(empty_database_url)
    migrate.upgrade(engine)
    engine.dispose()
    fresh = app_factory(DATABASE_URL=empty_database_url)
    with fresh.app_context():  # the CLI would otherwise reuse the test's app context
        imported = fresh.test_cli_runner().invoke(args=["content", "import", str(tmp_path / "one")])
        assert imported.exit_code == 0, imported.output
        assert "lessons: 9 new version(s)" in imported.output and "cases: 5 new version(s)" in imported.output
        assert fresh.test_cli_runner().invoke(args=["content", "export", str(tmp_path / "two")]).exit_code == 0
        again = fresh.test_cli_runner().invoke(args=["content", "import", str(tmp_path / "one")])
        assert "0 new version(s), 9 unchanged" in again.output
    one = {p.relative_to(tmp_path / "one"): p.read_bytes() for p in (tmp_path / "one").rglob("*") if p.is_file()}
    two = {p.relative_to(tmp_path / "two"): p.read_bytes() for p in (tmp_path / "two").rglob("*") if p.is_file()}
    assert one == two and len(one) == 15
    shipped = Path(__file__).parents[2] / "lessons" / "content" / "own" / "02-apologizing-well.md"
    assert one[Path("lessons/own/02-apologizing-well.md")] == shipped.read_bytes()


def test_import_refuses_a_folder_with_any_bad_file_and_stores_nothing(
    app: Flask, course_content: None, tmp_path: Path
) -> None:
    runner = app.test_cli_runner()
    runner.invoke(args=["content", "export", str(tmp_path)])
    broken = tmp_path / "lessons" / "own" / "02-apologizing-well.md"
    broken.write_text(broken.read_text().replace("order: 2", "order: two"))
    duplicate = tmp_path / "cases" / "copy.yaml"
    duplicate.write_text((tmp_path / "cases" / "pizza-wrong-crust.yaml").read_text())
    before = db.session.scalar(select(ContentVersion.id).order_by(ContentVersion.id.desc()).limit(1))
    result = runner.invoke(args=["content", "import", str(tmp_path)])
    assert result.exit_code == 1
    assert "02-apologizing-well.md:5" in result.output and "order" in result.output
    assert "also used by" in result.output
    assert db.session.scalar(select(ContentVersion.id).order_by(ContentVersion.id.desc()).limit(1)) == before


def test_check_and_import_refuse_a_folder_that_holds_no_content_folders(app: Flask, tmp_path: Path) -> None:
    runner = app.test_cli_runner()
    for command in ("check", "import"):
        result = runner.invoke(args=["content", command, str(tmp_path)])
        assert result.exit_code == 1
        assert "has neither a lessons/ nor a cases/ folder" in result.output


def test_check_says_how_much_it_checked(app: Flask, course_content: None, tmp_path: Path) -> None:
    runner = app.test_cli_runner()
    runner.invoke(args=["content", "export", str(tmp_path)])
    result = runner.invoke(args=["content", "check", str(tmp_path)])
    assert result.exit_code == 0
    assert "No problems found in 9 lesson(s), 5 case(s)." in result.output
