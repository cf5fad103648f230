"""The case player under bad input: answers meant for another case, stale pages, a case
withdrawn mid-attempt, and fifty simultaneous submissions of one step."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from course import migrate
from course.database import DatabaseState, db, make_engine, session_factory
from course.models import CaseAttempt, CaseStep
from tests.conftest import LEARNER_ROLE
from tests.helpers import csrf_token_from

CASE = "airline-angry-passenger"
LOOPING_CASE = "scheduled-post-flood"  # draft-the-note -> manager-review -> draft-the-note


def _start(browser: FlaskClient, placement_id: int, slug: str = CASE) -> str:
    intro = browser.get(f"/p/{placement_id}/cases/{slug}").get_data(as_text=True)
    response = browser.post(f"/p/{placement_id}/cases/{slug}/start", data={"csrf_token": csrf_token_from(intro)})
    assert response.status_code == 303, response.get_data(as_text=True)
    return str(response.headers["Location"])


def _form(page: str, choice: str) -> dict[str, str]:
    """The answer a browser sends when the learner presses `choice` on this page."""
    node = re.search(r'name="node" value="([^"]+)"', page)
    step = re.search(r'name="step" value="(\d+)"', page)
    assert node and step, "not a step page"
    return {"csrf_token": csrf_token_from(page), "node": node.group(1), "step": step.group(1), "choice": choice}


def _steps() -> int:
    return db.session.scalar(select(func.count()).select_from(CaseStep)) or 0


def test_a_node_of_another_case_is_refused_clearly_and_nothing_is_recorded(launch_as: Callable[..., Any]) -> None:
    browser, placement = launch_as()
    url = _start(browser, placement.id)
    page = browser.get(url).get_data(as_text=True)
    forged = {**_form(page, "call-and-reply"), "node": "the-post"}  # the pizza case's first node and choice
    response = browser.post(f"{url}/answer", data=forged)
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert "isn&#39;t part of this case" in body and "Go to where you are in the case" in body
    # The attempt under the other case's address is not found at all.
    other_case = url.replace(f"/cases/{CASE}/", "/cases/pizza-wrong-crust/")
    assert browser.post(f"{other_case}/answer", data=_form(page, "reply-now")).status_code == 404
    assert _steps() == 0
    assert 'name="node" value="first-post"' in browser.get(url).get_data(as_text=True)  # nothing moved


def test_a_stale_step_number_on_a_loop_makes_a_back_button_repost_record_nothing(
    launch_as: Callable[..., Any],
) -> None:
    browser, placement = launch_as()
    url = _start(browser, placement.id, LOOPING_CASE)
    assert browser.post(f"{url}/answer", data=_form(browser.get(url).get_data(as_text=True), "pause-everything")).status_code == 303
    first_visit = browser.get(url).get_data(as_text=True)  # draft-the-note, step 1
    assert 'name="step" value="1"' in first_visit
    browser.post(f"{url}/answer", data=_form(first_visit, "ask-kim"))
    browser.post(f"{url}/answer", data=_form(browser.get(url).get_data(as_text=True), "back-to-drafting"))
    second_visit = browser.get(url).get_data(as_text=True)  # draft-the-note again, step 3
    assert 'name="node" value="draft-the-note"' in second_visit and 'name="step" value="3"' in second_visit

    # The back button shows the first visit's page; pressing a choice there re-posts step 1.
    repost = browser.post(f"{url}/answer", data=_form(first_visit, "plain-note"))
    assert repost.status_code == 303 and repost.headers["Location"].endswith(url)
    assert _steps() == 3
    assert 'name="step" value="3"' in browser.get(url).get_data(as_text=True)

    future = browser.post(f"{url}/answer", data={**_form(second_visit, "plain-note"), "step": "7"})
    assert future.status_code == 409 and "isn&#39;t the step you&#39;re on" in future.get_data(as_text=True)
    assert _steps() == 3
    # The current page's own form still works: the step number matches.
    assert browser.post(f"{url}/answer", data=_form(second_visit, "plain-note")).status_code == 303
    assert _steps() == 4


def test_a_step_replayed_after_the_attempt_ended_changes_nothing(launch_as: Callable[..., Any]) -> None:
    browser, placement = launch_as()
    url = _start(browser, placement.id)
    pages = []
    for _ in range(20):
        response = browser.get(url)
        if response.status_code == 302:
            break
        pages.append(response.get_data(as_text=True))
        browser.post(f"{url}/answer", data=_form(pages[-1], re.findall(r'name="choice" value="([^"]+)"', pages[-1])[0]))
    attempt = db.session.scalar(select(CaseAttempt))
    assert attempt is not None and attempt.status == "ended"
    recorded, ending = _steps(), attempt.ending_node
    last = pages[-1]
    other = re.findall(r'name="choice" value="([^"]+)"', last)[1]
    replay = browser.post(f"{url}/answer", data=_form(last, other))
    assert replay.status_code == 303 and replay.headers["Location"].endswith("/debrief")
    visited = set(db.session.scalars(select(CaseStep.node_id)))
    elsewhere = next(node for node in ("policy-backlash", "silence-grows", "media-storm") if node not in visited)
    late = browser.post(f"{url}/answer", data={**_form(last, "any"), "node": elsewhere, "step": str(len(pages))})
    assert late.status_code == 409 and "This attempt has ended" in late.get_data(as_text=True)
    db.session.expire_all()
    assert _steps() == recorded and db.session.get(CaseAttempt, attempt.id).ending_node == ending  # type: ignore[union-attr]


def test_a_case_withdrawn_from_the_placement_mid_attempt_ends_the_attempt_gracefully_and_records_it(
    launch_as: Callable[..., Any],
) -> None:
    target = {"rebound_target": f"case:{CASE}"}
    browser, placement = launch_as(resource_link="link-case", custom=target)
    url = _start(browser, placement.id)
    page = browser.get(url).get_data(as_text=True)
    assert browser.post(f"{url}/answer", data=_form(page, "reply-now")).status_code == 303
    next_page = browser.get(url).get_data(as_text=True)

    # The LMS's administrator points the link at another case; a launch brings the change.
    launch_as(sub="learner-2", resource_link="link-case", custom={"rebound_target": "case:pizza-wrong-crust"})

    answered = browser.post(f"{url}/answer", data=_form(next_page, re.findall(r'name="choice" value="([^"]+)"', next_page)[0]))
    assert answered.status_code == 410
    body = answered.get_data(as_text=True)
    assert "no longer part of this course" in body and "kept" in body
    attempt = db.session.scalar(select(CaseAttempt))
    assert attempt is not None and attempt.status == "abandoned" and attempt.ended_at is not None
    assert _steps() == 1  # the answer given before the case was withdrawn is kept; the new one was not taken
    reopened = browser.get(url)
    assert reopened.status_code == 410 and "no longer part of this course" in reopened.get_data(as_text=True)
    assert browser.get(f"/p/{placement.id}/cases/{CASE}").status_code == 404


def _launched_browser(fresh: Flask, role: str = LEARNER_ROLE) -> tuple[FlaskClient, int]:
    """Someone launched into a fresh app through the real LTI path, with content imported."""
    from course.content import content_kinds, import_shipped
    from course.database import utcnow
    from course.models import Placement
    from plugin import claims as c
    from tests.plugin.lms_double import JWKS_URL, LmsDouble, platform_jwks, platform_key

    with fresh.app_context():
        import_shipped(db.session, list(content_kinds(fresh).values()), utcnow())
        db.session.commit()
        key, kid = platform_key()
        double = LmsDouble(app=fresh, client=fresh.test_client(), key=key, kid=kid)
        double.jwks_documents[JWKS_URL] = platform_jwks()
        fresh.extensions["rebound.http_fetch"] = double.fetch
        double.register()
        response = double.launch(sub="learner-1", **{c.ROLES: [role], c.RESOURCE_LINK: {"id": "link-1"}})
        assert response.status_code == 303, response.get_data(as_text=True)
        placement_id = db.session.scalar(select(Placement.id))
        assert placement_id is not None
    return double.client, placement_id


def _committing_app(app_factory: Callable[..., Flask], url: str) -> Flask:
    """An app on a new database of its own whose requests really commit, as in production."""
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    fresh = app_factory(DATABASE_URL=url)
    # Enough connections for many requests to be in the database at once.
    db.state(fresh).engine.dispose()
    wide = make_engine(url, pool_size=25, max_overflow=0, pool_timeout=60)
    fresh.extensions["rebound.db"] = DatabaseState(engine=wide, sessions=session_factory(wide))
    return fresh


def _all_at_once(fresh: Flask, browser: FlaskClient, count: int, url: str, form: dict[str, str]) -> list[int]:
    """Post the same form from `count` threads released together, as one learner's browser; the statuses."""
    cookie = browser.get_cookie("rebound_session")
    assert cookie is not None
    ready = threading.Barrier(count)
    statuses: list[int] = []
    failures: list[BaseException] = []

    def submit() -> None:
        client = fresh.test_client()
        client.set_cookie("rebound_session", cookie.value, domain=cookie.domain)
        try:
            ready.wait()
            statuses.append(client.post(url, data=form).status_code)
        except BaseException as error:  # reported below, with the others
            failures.append(error)

    threads = [threading.Thread(target=submit) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    return statuses


def test_fifty_simultaneous_submissions_of_one_step_record_it_exactly_once(
    app_factory: Callable[..., Flask], empty_database_url: str, backend: str
) -> None:
    """Real threads, each request with its own session and connection, on committed data.

    On PostgreSQL the answers wait for each other on the attempt's row lock. SQLite has one
    writer at a time: each answer takes the database's write lock before it reads, so they
    run one after another (waiting up to the busy timeout) and never act on a stale read.
    """
    fresh = _committing_app(app_factory, empty_database_url)
    browser, placement_id = _launched_browser(fresh)
    url = _start(browser, placement_id)
    form = _form(browser.get(url).get_data(as_text=True), "reply-now")

    statuses = _all_at_once(fresh, browser, 50, f"{url}/answer", form)
    assert statuses == [303] * 50, sorted(statuses)
    with fresh.app_context():
        steps = db.session.scalars(select(CaseStep)).all()
        assert [(s.position, s.node_id, s.choice_id) for s in steps] == [(1, "first-post", "reply-now")]
        attempt = db.session.scalar(select(CaseAttempt))
        assert attempt is not None and attempt.current_node == "gather-facts" and attempt.status == "active"


def test_a_case_without_back_restart_or_more_attempts_refuses_them_clearly_and_records_nothing(
    launch_as: Callable[..., Any],
) -> None:
    from tests.conftest import INSTRUCTOR_ROLE
    from tests.quizzes.test_case_editor import EDIT, _editor

    trainer, _ = launch_as(sub="trainer-1", role=INSTRUCTOR_ROLE)
    form = _editor(trainer.get(EDIT).get_data(as_text=True))
    strict = (form["source"].replace("allow_back: true", "allow_back: false")
              .replace("allow_restart: true", "allow_restart: false").replace("max_attempts: null", "max_attempts: 1"))
    assert trainer.post(EDIT, data={**form, "source": strict, "publish": "Publish"}).status_code == 303

    browser, placement = launch_as()
    url = _start(browser, placement.id)
    page = browser.get(url).get_data(as_text=True)
    browser.post(f"{url}/answer", data=_form(page, "reply-now"))
    after = browser.get(url).get_data(as_text=True)
    assert "Take back my last choice" not in after
    back = browser.post(f"{url}/back", data={"csrf_token": csrf_token_from(after)})
    assert back.status_code == 409 and "This case does not allow going back." in back.get_data(as_text=True)
    restart = browser.post(f"/p/{placement.id}/cases/{CASE}/start", data={"csrf_token": csrf_token_from(after), "restart": "1"})
    assert restart.status_code == 409 and "can&#39;t be restarted" in restart.get_data(as_text=True)
    for _ in range(20):
        response = browser.get(url)
        if response.status_code == 302:
            break
        page = response.get_data(as_text=True)
        browser.post(f"{url}/answer", data=_form(page, re.findall(r'name="choice" value="([^"]+)"', page)[0]))
    again = browser.post(f"/p/{placement.id}/cases/{CASE}/start", data={"csrf_token": csrf_token_from(page)})
    assert again.status_code == 409 and "You have used all 1 attempts at this case." in again.get_data(as_text=True)
    attempts = db.session.scalars(select(CaseAttempt)).all()
    assert [a.status for a in attempts] == ["ended"]
    assert not db.session.scalars(select(CaseStep).where(CaseStep.withdrawn)).all()


def test_simultaneous_starts_of_a_case_make_one_attempt(
    app_factory: Callable[..., Flask], empty_database_url: str
) -> None:
    """A double (or triple) click on "Start" from one browser: one attempt, and no error page."""
    fresh = _committing_app(app_factory, empty_database_url)
    browser, placement_id = _launched_browser(fresh)
    intro = browser.get(f"/p/{placement_id}/cases/{CASE}").get_data(as_text=True)
    statuses = _all_at_once(fresh, browser, 10, f"/p/{placement_id}/cases/{CASE}/start", {"csrf_token": csrf_token_from(intro)})
    assert statuses == [303] * 10, sorted(statuses)
    with fresh.app_context():
        assert [a.number for a in db.session.scalars(select(CaseAttempt))] == [1]
