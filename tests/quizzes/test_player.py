"""Playing a case as a learner: steps, consequences, back, resume, debrief, and bad input."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import func, select

from course.database import db
from course.models import CaseAttempt, CaseStep
from tests.helpers import csrf_token_from

CASE = "airline-angry-passenger"


def _start(browser: FlaskClient, placement_id: int, slug: str = CASE) -> str:
    intro = browser.get(f"/p/{placement_id}/cases/{slug}").get_data(as_text=True)
    response = browser.post(f"/p/{placement_id}/cases/{slug}/start", data={"csrf_token": csrf_token_from(intro)})
    assert response.status_code == 303
    return str(response.headers["Location"])


def _choices(page: str) -> list[str]:
    return re.findall(r'name="choice" value="([^"]+)"', page)


def _answer(browser: FlaskClient, url: str, page: str, choice: str):  # type: ignore[no-untyped-def]
    node = re.search(r'name="node" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    step = re.search(r'name="step" value="(\d+)"', page).group(1)  # type: ignore[union-attr]
    return browser.post(f"{url}/answer", data={"csrf_token": csrf_token_from(page), "node": node, "step": step, "choice": choice})


def _play_to_end(browser: FlaskClient, url: str, pick: Callable[[list[str]], str]) -> str:
    for _ in range(30):
        page = browser.get(url).get_data(as_text=True)
        if "Debrief:" in page:
            return page
        response = _answer(browser, url, page, pick(_choices(page)))
        assert response.status_code == 303, response.get_data(as_text=True)
        if "/debrief" in response.headers["Location"]:
            return browser.get(response.headers["Location"]).get_data(as_text=True)
    raise AssertionError("the case never ended")


def test_a_learner_plays_to_different_endings_and_gets_a_debrief_each_time(launch_as: Callable[..., Any]) -> None:
    browser, placement = launch_as()
    first = _play_to_end(browser, _start(browser, placement.id), lambda choices: choices[0])
    second = _play_to_end(browser, _start(browser, placement.id), lambda choices: choices[-1])
    for debrief in (first, second):
        assert "Your path" in debrief and "Score" in debrief and "The principle" in debrief
        assert ("Passed" in debrief) or ("Not passed" in debrief)
    endings = {re.search(r"<h1[^>]*>Debrief: ([^<]+)</h1>", d).group(1) for d in (first, second)}  # type: ignore[union-attr]
    assert len(endings) == 2
    assert "Try again" in second
    attempts = db.session.scalars(select(CaseAttempt).order_by(CaseAttempt.number)).all()
    assert [a.number for a in attempts] == [1, 2] and all(a.status == "ended" for a in attempts)


def test_after_a_choice_the_consequence_is_shown_and_announced(launch_as: Callable[..., Any]) -> None:
    browser, placement = launch_as()
    url = _start(browser, placement.id)
    page = browser.get(url).get_data(as_text=True)
    assert "What do you do?" in page and 'type="submit" name="choice"' in page
    _answer(browser, url, page, _choices(page)[0])
    after = browser.get(url).get_data(as_text=True)
    assert 'class="consequence" role="status"' in after and "What happened next" in after
    assert "Step 2" in after


def test_closing_the_tab_and_coming_back_resumes_at_the_same_node(launch_as: Callable[..., Any]) -> None:
    browser, placement = launch_as()
    url = _start(browser, placement.id)
    page = browser.get(url).get_data(as_text=True)
    _answer(browser, url, page, _choices(page)[0])
    where = re.search(r'name="node" value="([^"]+)"', browser.get(url).get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    intro = browser.get(f"/p/{placement.id}/cases/{CASE}").get_data(as_text=True)
    assert "Resume where you left off" in intro
    resumed = browser.get(url).get_data(as_text=True)
    assert f'name="node" value="{where}"' in resumed


def test_double_submit_and_back_button_record_the_step_once(launch_as: Callable[..., Any]) -> None:
    browser, placement = launch_as()
    url = _start(browser, placement.id)
    page = browser.get(url).get_data(as_text=True)
    choice = _choices(page)[0]
    assert _answer(browser, url, page, choice).status_code == 303
    assert _answer(browser, url, page, choice).status_code == 303  # the same form again
    assert db.session.scalar(select(func.count()).select_from(CaseStep)) == 1


def test_answering_a_step_that_is_not_current_is_refused_clearly(launch_as: Callable[..., Any]) -> None:
    browser, placement = launch_as()
    url = _start(browser, placement.id)
    page = browser.get(url).get_data(as_text=True)
    response = browser.post(f"{url}/answer", data={"csrf_token": csrf_token_from(page), "node": "gather-facts", "step": "0", "choice": "x"})
    assert response.status_code == 409
    assert "isn&#39;t the step you&#39;re on" in response.get_data(as_text=True)


def test_a_forged_choice_is_refused_and_nothing_recorded(launch_as: Callable[..., Any]) -> None:
    browser, placement = launch_as()
    url = _start(browser, placement.id)
    page = browser.get(url).get_data(as_text=True)
    response = _answer(browser, url, page, "not-a-real-choice")
    assert response.status_code == 400
    assert "isn&#39;t one of this step&#39;s choices" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(CaseStep)) == 0


def test_stepping_back_withdraws_the_last_choice(launch_as: Callable[..., Any]) -> None:
    browser, placement = launch_as()
    url = _start(browser, placement.id)
    page = browser.get(url).get_data(as_text=True)
    first_node = re.search(r'name="node" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    _answer(browser, url, page, _choices(page)[0])
    after = browser.get(url).get_data(as_text=True)
    response = browser.post(f"{url}/back", data={"csrf_token": csrf_token_from(after)})
    assert response.status_code == 303
    assert f'name="node" value="{first_node}"' in browser.get(url).get_data(as_text=True)
    step = db.session.scalar(select(CaseStep))
    assert step is not None and step.withdrawn


def test_another_learners_attempt_is_not_found(launch_as: Callable[..., Any]) -> None:
    ada, placement = launch_as()
    url = _start(ada, placement.id)
    bob, _ = launch_as(sub="learner-2", name="Bob")
    assert bob.get(url).status_code == 404
    page = ada.get(url).get_data(as_text=True)
    token = csrf_token_from(bob.get(f"/p/{placement.id}/cases/{CASE}").get_data(as_text=True))
    assert bob.post(f"{url}/answer", data={"csrf_token": token, "node": "x", "choice": _choices(page)[0]}).status_code == 404


def test_a_step_replayed_after_the_attempt_ended_is_refused(launch_as: Callable[..., Any]) -> None:
    browser, placement = launch_as()
    url = _start(browser, placement.id)
    page = browser.get(url).get_data(as_text=True)
    _play_to_end(browser, url, lambda choices: choices[0])
    response = _answer(browser, url, page, _choices(page)[1])
    assert response.status_code in (303, 409)
    assert db.session.scalar(select(CaseAttempt)).status == "ended"  # type: ignore[union-attr]


def test_the_course_home_shows_each_cases_status_in_words(launch_as: Callable[..., Any]) -> None:
    browser, placement = launch_as()
    _play_to_end(browser, _start(browser, placement.id), lambda choices: choices[0])
    home = browser.get(f"/p/{placement.id}/").get_data(as_text=True)
    assert "Passed (" in home or "Not passed yet (" in home
    assert home.count("Not started") >= 4


def test_a_case_outside_the_placement_is_not_found(launch_as: Callable[..., Any]) -> None:
    browser, placement = launch_as(resource_link="link-case", custom={"rebound_target": "case:pizza-wrong-crust"})
    assert browser.get(f"/p/{placement.id}/cases/pizza-wrong-crust").status_code == 200
    assert browser.get(f"/p/{placement.id}/cases/{CASE}").status_code == 404
    assert browser.get(f"/p/{placement.id}/cases/no-such-case").status_code == 404


def _paths_to_every_ending(case: Any) -> dict[str, list[tuple[str, str]]]:
    """For each ending of a case, the shortest way there as (node, choice) steps."""
    from collections import deque

    paths: dict[str, list[tuple[str, str]]] = {case.start: []}
    queue = deque([case.start])
    while queue:
        node = case.node(queue.popleft())
        for choice in node.choices:
            if choice.goto not in paths:
                paths[choice.goto] = [*paths[node.id], (node.id, choice.id)]
                queue.append(choice.goto)
    return {node.id: paths[node.id] for node in case.nodes if node.is_ending}


def test_every_shipped_case_plays_to_each_of_its_endings_with_a_debrief_each_time(
    launch_as: Callable[..., Any],
) -> None:
    from pathlib import Path

    from quizzes import engine
    from quizzes.validator import load_case

    browser, placement = launch_as()
    files = sorted((Path(__file__).parents[2] / "quizzes" / "cases").glob("*.yaml"))
    assert len(files) >= 4
    for file in files:
        case = load_case(file.read_text(encoding="utf-8"), file.name)
        endings = _paths_to_every_ending(case)
        assert len(endings) >= 3, case.id
        for ending, path in endings.items():
            url = _start(browser, placement.id, case.id)
            for node_id, choice_id in path:
                page = browser.get(url).get_data(as_text=True)
                assert f'name="node" value="{node_id}"' in page, (case.id, ending, node_id)
                assert _answer(browser, url, page, choice_id).status_code == 303
            debrief = browser.get(f"{url}/debrief").get_data(as_text=True)
            title = re.search(r"<h1[^>]*>Debrief: ([^<]+)</h1>", debrief)
            assert title is not None and html.unescape(title.group(1)) == case.node(ending).title, (case.id, ending)
            assert "Your path" in debrief and "The principle" in debrief and "Try again" in debrief
            best = [(s.node_id, s.choice_id) for s in engine.best_path(case).steps]  # type: ignore[union-attr]
            if path == best:
                assert "You took the best path through this case." in debrief
            else:  # what a better path would have been, and why each of its choices works
                assert "A better path (" in debrief and debrief.count("Why it works") == len(best)
    finished = db.session.scalars(select(CaseAttempt).where(CaseAttempt.status == "ended")).all()
    assert len({(a.case_slug, a.ending_node) for a in finished}) == len(finished) >= 4 * 3
