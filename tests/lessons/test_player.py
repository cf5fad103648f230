"""The learner's course: home page, lessons, marking complete, time spent, progress JSON."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import Flask
from sqlalchemy import select

from course.database import db
from course.models import LessonProgress
from tests.helpers import csrf_token_from

FIRST = "recognise-why-mistakes-happen"
SECOND = "recognise-spotting-a-mistake-fast"


def _progress(slug: str) -> LessonProgress:
    row = db.session.scalar(select(LessonProgress).where(LessonProgress.lesson_slug == slug))
    assert row is not None
    return row


def test_launch_lands_on_the_course_home_with_every_module(launch_as: Callable[..., Any]) -> None:
    browser, placement = launch_as()
    landing = browser.get("/lti/landing?launch=x")  # an unknown link is refused...
    assert landing.status_code == 400
    home = browser.get(f"/p/{placement.id}/")
    page = home.get_data(as_text=True)
    assert home.status_code == 200
    for module in ("Recognize", "Own", "Learn"):
        assert module in page
    assert "Lessons completed: 0 of 9" in page
    assert "Start the course" in page
    assert "The passenger" in page or "Case" in page  # cases are listed beside lessons


def test_reading_every_lesson_fills_the_progress_bar(launch_as: Callable[..., Any]) -> None:
    browser, placement = launch_as()
    home = browser.get(f"/p/{placement.id}/").get_data(as_text=True)
    slugs = [part.split('"')[0] for part in home.split(f'href="/p/{placement.id}/lessons/')[1:]]
    slugs = list(dict.fromkeys(slugs))
    assert len(slugs) == 9
    for slug in slugs:
        page = browser.get(f"/p/{placement.id}/lessons/{slug}").get_data(as_text=True)
        assert "By the end of this lesson you can" in page
        assert 'class="takeaways"' in page
        response = browser.post(f"/p/{placement.id}/lessons/{slug}/complete", data={"csrf_token": csrf_token_from(page)})
        assert response.status_code == 303
    home = browser.get(f"/p/{placement.id}/").get_data(as_text=True)
    assert "Lessons completed: 9 of 9" in home
    assert '<progress id="course-progress" max="9" value="9">' in home


def test_continue_leads_to_the_lesson_left_unfinished(launch_as: Callable[..., Any]) -> None:
    browser, placement = launch_as()
    browser.get(f"/p/{placement.id}/lessons/{SECOND}")
    home = browser.get(f"/p/{placement.id}/").get_data(as_text=True)
    assert "Continue where you left off" in home
    assert f'href="/p/{placement.id}/lessons/{SECOND}">Continue where you left off' in home


def test_reloads_and_double_clicks_never_double_count(launch_as: Callable[..., Any]) -> None:
    browser, placement = launch_as()
    page = browser.get(f"/p/{placement.id}/lessons/{FIRST}").get_data(as_text=True)
    browser.get(f"/p/{placement.id}/lessons/{FIRST}")
    token = csrf_token_from(page)
    first = browser.post(f"/p/{placement.id}/lessons/{FIRST}/complete", data={"csrf_token": token})
    second = browser.post(f"/p/{placement.id}/lessons/{FIRST}/complete", data={"csrf_token": token})
    assert first.status_code == second.status_code == 303
    rows = db.session.scalars(select(LessonProgress).where(LessonProgress.lesson_slug == FIRST)).all()
    assert len(rows) == 1
    completed_at = rows[0].completed_at
    db.session.expire_all()
    assert _progress(FIRST).completed_at == completed_at


def test_time_spent_is_measured_by_the_server_with_caps(launch_as: Callable[..., Any], app: Flask) -> None:
    from course.database import utcnow
    from course.progress import heartbeat

    browser, placement = launch_as()
    browser.get(f"/p/{placement.id}/lessons/{FIRST}")
    row = _progress(FIRST)
    start = row.last_active_at
    # Heartbeats 30 s apart count; a gap of an hour (tab left open) counts nothing.
    heartbeat(db.session, user_id=row.user_id, placement_id=placement.id, slug=FIRST, now=start + timedelta(seconds=30))
    heartbeat(db.session, user_id=row.user_id, placement_id=placement.id, slug=FIRST, now=start + timedelta(seconds=60))
    heartbeat(db.session, user_id=row.user_id, placement_id=placement.id, slug=FIRST, now=start + timedelta(hours=1))
    db.session.commit()
    assert _progress(FIRST).seconds_spent == 60
    assert utcnow() > start


def test_heartbeat_endpoint_needs_its_csrf_token(launch_as: Callable[..., Any]) -> None:
    browser, placement = launch_as()
    page = browser.get(f"/p/{placement.id}/lessons/{FIRST}").get_data(as_text=True)
    assert browser.post(f"/p/{placement.id}/lessons/{FIRST}/heartbeat").status_code == 400
    token = page.split('name="csrf-token" content="')[1].split('"')[0]
    ok = browser.post(f"/p/{placement.id}/lessons/{FIRST}/heartbeat", headers={"X-CSRFToken": token})
    assert ok.status_code == 200 and "seconds_spent" in ok.get_json()


def test_progress_is_readable_as_json(launch_as: Callable[..., Any]) -> None:
    browser, placement = launch_as()
    page = browser.get(f"/p/{placement.id}/lessons/{FIRST}").get_data(as_text=True)
    browser.post(f"/p/{placement.id}/lessons/{FIRST}/complete", data={"csrf_token": csrf_token_from(page)})
    data = browser.get(f"/p/{placement.id}/progress.json").get_json()
    assert data["lessons_total"] == 9 and data["lessons_completed"] == 1
    first = next(lesson for lesson in data["lessons"] if lesson["id"] == FIRST)
    assert first["status"] == "completed" and first["completed_at"].endswith("+00:00")
    assert first["version"] == 1


def test_lesson_pages_are_sanitised_and_link_to_neighbours(launch_as: Callable[..., Any]) -> None:
    browser, placement = launch_as()
    page = browser.get(f"/p/{placement.id}/lessons/{SECOND}").get_data(as_text=True)
    assert 'rel="prev"' in page and 'rel="next"' in page
    assert "<script>" not in page.split('<div class="lesson-body">')[1].split("</div>")[0]


def test_a_placement_of_one_lesson_shows_only_that_lesson(launch_as: Callable[..., Any]) -> None:
    browser, placement = launch_as(resource_link="link-lesson", custom={"rebound_target": f"lesson:{SECOND}"})
    home = browser.get(f"/p/{placement.id}/").get_data(as_text=True)
    assert "Lessons completed: 0 of 1" in home
    assert browser.get(f"/p/{placement.id}/lessons/{FIRST}").status_code == 404


def test_unknown_lesson_and_other_peoples_placements_are_not_found(
    launch_as: Callable[..., Any], app: Flask
) -> None:
    browser, placement = launch_as()
    assert browser.get(f"/p/{placement.id}/lessons/no-such-lesson").status_code == 404
    assert browser.get(f"/p/{placement.id + 999}/").status_code in (403, 404)
    stranger = app.test_client()
    assert stranger.get(f"/p/{placement.id}/").status_code == 401
