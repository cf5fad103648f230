"""The trainer's case editor: breaking a case and seeing each problem on its line and on the
picture, live validation, publishing versions, the draft preview, conflicts, history, who may
use it, tenants, and analytics."""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from course.content import effective_version
from course.database import db
from course.models import CaseAttempt, CaseStep, ContentDraft, ContentVersion
from tests.conftest import INSTRUCTOR_ROLE
from tests.helpers import csrf_token_from, sign_in

SLUG = "airline-angry-passenger"
EDIT = f"/trainer/cases/{SLUG}/edit"
FIRST_TITLE = "title: A Saturday night mention"


def _trainer(launch_as: Callable[..., Any], sub: str = "trainer-1", name: str = "Theo Trainer") -> FlaskClient:
    browser, _ = launch_as(sub=sub, role=INSTRUCTOR_ROLE, name=name)
    return browser


def _editor(page: str) -> dict[str, str]:
    """The editor form's fields as a browser would submit them (no button yet)."""
    source = re.search(r'<textarea[^>]*name="source"[^>]*>(.*?)</textarea>', page, re.S)
    revision = re.search(r'name="revision" type="hidden" value="(\d*)"', page)
    assert source and revision, "not the case editor"
    return {
        "csrf_token": csrf_token_from(page),
        "revision": revision.group(1),
        "source": html.unescape(source.group(1)).removeprefix("\r\n").removeprefix("\n"),
    }


def _open(browser: FlaskClient) -> dict[str, str]:
    response = browser.get(EDIT)
    assert response.status_code == 200, response.get_data(as_text=True)
    return _editor(response.get_data(as_text=True))


def _line_of(text: str, fragment: str) -> int:
    """The 1-based line of the first line of `text` containing `fragment`."""
    return next(number for number, line in enumerate(text.splitlines(), 1) if fragment in line)


def _node_group(page: str, node_id: str) -> str:
    """The SVG group drawing one node."""
    match = re.search(rf'<g class="[^"]*" data-node-id="{re.escape(node_id)}"[^>]*>.*?</g>', page, re.S)
    assert match, f"node {node_id} is not drawn"
    return match.group(0)


def _assert_marked(page: str, node_id: str) -> None:
    group = _node_group(page, node_id)
    assert "problem" in group.split('"')[1], "the node's group is not classed as a problem"
    assert 'stroke-dasharray="8 4"' in group and "⚠" in group


def _assert_listed(page: str, line: int, words: str) -> None:
    items = [html.unescape(item) for item in re.findall(r"<li>Line (\d+: [^<]*)</li>", page)]
    assert any(item.startswith(f"{line}: ") and words in item for item in items), (line, words, items)


def _ending(node_id: str) -> str:
    return (
        f"  - id: {node_id}\n    title: An ending added in the editor\n    text: It ends here.\n"
        "    ending:\n      outcome: contained\n      passes: false\n      principle: Own it early\n"
        "      debrief: Nothing more to say.\n"
    )


# Each breakage: how the text is changed, the line the problem must name, words of its message,
# and the node the picture must mark (None for a problem of the case as a whole).
def _unknown_target(text: str) -> tuple[str, int, str, str | None]:
    broken = text.replace("goto: gather-facts", "goto: gather-fakts", 1)
    return broken, _line_of(broken, "goto: gather-fakts"), 'leads to unknown node "gather-fakts"', "first-post"


def _unreachable_node(text: str) -> tuple[str, int, str, str | None]:
    broken = text.rstrip("\n") + "\n\n" + _ending("orphan-ending")
    return broken, _line_of(broken, "- id: orphan-ending"), "cannot be reached from the start node", "orphan-ending"


def _dead_end(text: str) -> tuple[str, int, str, str | None]:
    dead = "  - id: dead-end-node\n    title: Nowhere to go\n    text: Nothing can be done here.\n"
    broken = text.replace("goto: gather-facts", "goto: dead-end-node", 1).rstrip("\n") + "\n\n" + dead
    return broken, _line_of(broken, "- id: dead-end-node"), "dead end", "dead-end-node"


def _loop_without_way_out(text: str) -> tuple[str, int, str, str | None]:
    trap = "".join(
        f"  - id: trap-{this}\n    title: Round again\n    text: The same again.\n    choices:\n"
        f"      - id: one\n        text: Try once more.\n        goto: trap-{other}\n        consequence: Nothing changes.\n"
        f"      - id: two\n        text: Try another way.\n        goto: trap-{other}\n        consequence: Nothing changes.\n"
        for this, other in (("a", "b"), ("b", "a"))
    )
    broken = text.replace("goto: gather-facts", "goto: trap-a", 1).rstrip("\n") + "\n\n" + trap
    return broken, _line_of(broken, "- id: trap-a"), "form a loop with no way out", "trap-a"


def _pass_mark_unreachable(text: str) -> tuple[str, int, str, str | None]:
    broken = text.replace("passes: true", "passes: false")
    return broken, _line_of(broken, "pass_mark:"), "the pass mark cannot be reached", None


def _malformed_yaml(text: str) -> tuple[str, int, str, str | None]:
    broken = text.replace(FIRST_TITLE, "title: [A Saturday night mention", 1)
    return broken, _line_of(broken, "title: [A Saturday"), "", None


BREAKAGES = {
    "unknown target": _unknown_target,
    "unreachable node": _unreachable_node,
    "dead end": _dead_end,
    "loop without a way out": _loop_without_way_out,
    "pass mark unreachable": _pass_mark_unreachable,
    "malformed YAML": _malformed_yaml,
}


@pytest.mark.parametrize("breakage", list(BREAKAGES), ids=list(BREAKAGES))
def test_a_broken_case_shows_its_problem_on_its_line_and_on_the_picture_and_cannot_be_published(
    launch_as: Callable[..., Any], breakage: str
) -> None:
    trainer = _trainer(launch_as)
    form = _open(trainer)
    broken, line, words, node = BREAKAGES[breakage](form["source"])

    checked = trainer.post(EDIT, data={**form, "source": broken, "check": "Check"})
    assert checked.status_code == 200
    page = checked.get_data(as_text=True)
    assert "problem(s) to fix before publishing" in page
    if breakage == "malformed YAML":
        # The parser's own line: the broken flow sequence is reported where YAML gave up, at or after it.
        lines = [int(n) for n in re.findall(r"<li>Line (\d+): ", page)]
        assert lines and line <= lines[0] <= line + 2
    else:
        _assert_listed(page, line, words)
    if node is not None:
        _assert_marked(page, node)
    else:
        graph = page.split('id="case-graph"')[1]
        assert "⚠" in graph  # a problem of the whole case is named under the picture

    refused = trainer.post(EDIT, data={**form, "source": broken, "publish": "Publish"})
    assert refused.status_code == 422
    assert broken.split("\n")[line - 1] in html.unescape(refused.get_data(as_text=True))  # the text is kept
    assert db.session.scalar(select(func.count()).select_from(ContentVersion).where(ContentVersion.number > 1)) == 0


def test_live_validation_answers_json_with_every_problem_its_line_and_the_marked_graph(
    launch_as: Callable[..., Any],
) -> None:
    trainer = _trainer(launch_as)
    form = _open(trainer)
    broken, line, words, node = _unknown_target(form["source"])
    response = trainer.post(
        "/trainer/cases/check", data={"source": broken, "filename": f"{SLUG}.yaml"},
        headers={"X-CSRFToken": form["csrf_token"]},
    )
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    assert {"line": line, "node": node} == {k: body["problems"][0][k] for k in ("line", "node")}
    assert words in body["problems"][0]["message"]
    assert body["problems"][0]["text"].startswith(f"{SLUG}.yaml:{line}: ")
    assert body["svg"].startswith("<svg") and node is not None
    _assert_marked(body["svg"], node)

    clean = trainer.post("/trainer/cases/check", data={"source": form["source"]}, headers={"X-CSRFToken": form["csrf_token"]})
    assert clean.get_json()["problems"] == [] and "⚠" not in clean.get_json()["svg"]


def test_live_validation_without_its_csrf_token_is_refused(launch_as: Callable[..., Any]) -> None:
    trainer = _trainer(launch_as)
    _open(trainer)
    assert trainer.post("/trainer/cases/check", data={"source": "id: x"}).status_code == 400


def test_a_five_megabyte_case_is_refused_clearly_and_the_draft_is_kept(launch_as: Callable[..., Any]) -> None:
    trainer = _trainer(launch_as)
    form = _open(trainer)
    saved = trainer.post(EDIT, data={**form, "source": form["source"] + "# my note\n", "save": "Save draft"})
    assert "Draft saved." in saved.get_data(as_text=True)
    form = _editor(saved.get_data(as_text=True))

    huge = form["source"] + "#" * (5 * 1024 * 1024)
    for url, data in ((EDIT, {**form, "source": huge, "save": "Save draft"}), ("/trainer/cases/check", {"source": huge})):
        response = trainer.post(url, data=data, headers={"X-CSRFToken": form["csrf_token"]})
        assert response.status_code == 413
        assert "too large" in response.get_data(as_text=True)
    draft = db.session.scalar(select(ContentDraft))
    assert draft is not None and draft.source.endswith("# my note\n") and len(draft.source) < 100_000
    assert _open(trainer)["source"].endswith("# my note\n")


def test_a_case_over_the_file_limit_but_under_the_request_limit_is_refused_with_the_text_kept(
    launch_as: Callable[..., Any],
) -> None:
    trainer = _trainer(launch_as)
    form = _open(trainer)
    big = form["source"] + "#" * (300 * 1024)
    response = trainer.post(EDIT, data={**form, "source": big, "publish": "Publish"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "the file is" in page and "the limit is 262,144" in page
    assert FIRST_TITLE in page  # the text is still in the editor
    assert db.session.scalar(select(ContentDraft)).source == form["source"]  # type: ignore[union-attr]


def test_a_fixed_case_is_published_as_a_new_version_that_new_attempts_play_while_old_ones_keep_theirs(
    launch_as: Callable[..., Any],
) -> None:
    learner, placement = launch_as()
    intro = learner.get(f"/p/{placement.id}/cases/{SLUG}").get_data(as_text=True)
    old_attempt = learner.post(f"/p/{placement.id}/cases/{SLUG}/start", data={"csrf_token": csrf_token_from(intro)})
    old_url = old_attempt.headers["Location"]
    assert "A Saturday night mention" in learner.get(old_url).get_data(as_text=True)

    trainer = _trainer(launch_as)
    form = _open(trainer)
    broken, _, _, _ = _unknown_target(form["source"])
    saved = trainer.post(EDIT, data={**form, "source": broken, "save": "Save draft"})
    assert "It has problems to fix before it can be published." in saved.get_data(as_text=True)
    form = _editor(saved.get_data(as_text=True))
    fixed = form["source"].replace("gather-fakts", "gather-facts").replace(FIRST_TITLE, "title: A Saturday night post")
    published = trainer.post(EDIT, data={**form, "source": fixed, "publish": "Publish"})
    assert published.status_code == 303, published.get_data(as_text=True)
    assert "Version 2 is published" in trainer.get(published.headers["Location"]).get_data(as_text=True)
    live = effective_version(db.session, placement.platform_id, "case", SLUG)
    assert live is not None and live.number == 2 and "version: 2" in live.source

    assert "A Saturday night mention" in learner.get(old_url).get_data(as_text=True)  # the old attempt keeps v1
    intro = learner.get(f"/p/{placement.id}/cases/{SLUG}").get_data(as_text=True)
    restarted = learner.post(
        f"/p/{placement.id}/cases/{SLUG}/start", data={"csrf_token": csrf_token_from(intro), "restart": "1"}
    )
    assert "A Saturday night post" in learner.get(restarted.headers["Location"]).get_data(as_text=True)
    versions = [
        db.session.get(ContentVersion, a.content_version_id).number  # type: ignore[union-attr]
        for a in db.session.scalars(select(CaseAttempt).order_by(CaseAttempt.number))
    ]
    assert versions == [1, 2]


def test_playing_the_draft_previews_it_and_records_nothing(launch_as: Callable[..., Any]) -> None:
    trainer = _trainer(launch_as)
    form = _open(trainer)
    draft_text = form["source"].replace(FIRST_TITLE, "title: A draft-only heading")
    trainer.post(EDIT, data={**form, "source": draft_text, "save": "Save draft"})

    page = trainer.get(f"/trainer/cases/{SLUG}/preview").get_data(as_text=True)
    assert "nothing you choose here is recorded" in page and "A draft-only heading" in page
    path: list[str] = []
    for _ in range(20):
        links = re.findall(rf'href="/trainer/cases/{SLUG}/preview\?path=([^"]+)"', page)
        if not links:
            break
        path = html.unescape(links[0]).replace("%2C", ",").split(",")
        response = trainer.get(f"/trainer/cases/{SLUG}/preview", query_string={"path": ",".join(path)})
        assert response.status_code == 200
        page = response.get_data(as_text=True)
    assert "Ending:" in page and "What happened next" in page and len(path) >= 2
    bad = trainer.get(f"/trainer/cases/{SLUG}/preview", query_string={"path": "no-such-choice"})
    assert bad.status_code == 400 and "Start again" in bad.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(CaseAttempt)) == 0
    assert db.session.scalar(select(func.count()).select_from(CaseStep)) == 0


def test_playing_a_broken_draft_lists_its_problems_instead(launch_as: Callable[..., Any]) -> None:
    trainer = _trainer(launch_as)
    form = _open(trainer)
    broken, line, words, _ = _unknown_target(form["source"])
    trainer.post(EDIT, data={**form, "source": broken, "save": "Save draft"})
    response = trainer.get(f"/trainer/cases/{SLUG}/preview")
    assert response.status_code == 422
    _assert_listed(response.get_data(as_text=True), line, words)


def test_a_stale_save_is_refused_with_a_conflict_and_the_text_kept(launch_as: Callable[..., Any]) -> None:
    first = _trainer(launch_as)
    second = _trainer(launch_as, sub="trainer-2", name="Tess Trainer")
    form_one, form_two = _open(first), _open(second)
    saved = first.post(EDIT, data={**form_one, "source": form_one["source"] + "# from one\n", "save": "Save draft"})
    assert saved.status_code == 200
    conflict = second.post(EDIT, data={**form_two, "source": form_two["source"] + "# from two\n", "save": "Save draft"})
    assert conflict.status_code == 409
    page = html.unescape(conflict.get_data(as_text=True))
    assert "Someone else saved this draft" in page and "Theo Trainer" in page and "# from two" in page
    stale_publish = second.post(EDIT, data={**form_two, "publish": "Publish"})
    assert stale_publish.status_code == 409
    assert db.session.scalar(select(ContentDraft)).source.endswith("# from one\n")  # type: ignore[union-attr]
    assert db.session.scalar(select(func.count()).select_from(ContentVersion).where(ContentVersion.number > 1)) == 0


def test_history_lists_every_version_and_restores_an_old_one_as_a_new_draft(launch_as: Callable[..., Any]) -> None:
    trainer = _trainer(launch_as)
    form = _open(trainer)
    changed = form["source"].replace(FIRST_TITLE, "title: A Saturday night post")
    assert trainer.post(EDIT, data={**form, "source": changed, "publish": "Publish"}).status_code == 303
    history = trainer.get(f"/trainer/cases/{SLUG}/history").get_data(as_text=True)
    assert "2 (live)" in history and "1 · shipped" in history
    shipped = db.session.scalar(select(ContentVersion).where(ContentVersion.number == 1, ContentVersion.title.like("%million%")))
    assert shipped is not None
    restored = trainer.post(f"/trainer/cases/{SLUG}/restore/{shipped.id}", data={"csrf_token": csrf_token_from(history)})
    assert restored.status_code == 303 and restored.headers["Location"].endswith(EDIT)
    assert FIRST_TITLE in _open(trainer)["source"]
    assert effective_version(db.session, None, "case", SLUG).id == shipped.id  # type: ignore[union-attr]

    assert trainer.post(f"/trainer/cases/{SLUG}/restore/{shipped.id}", data={}).status_code == 400
    other = db.session.scalar(select(ContentVersion).where(ContentVersion.title.like("%gluten%")))
    token = csrf_token_from(history)
    assert trainer.post(f"/trainer/cases/{SLUG}/restore/{other.id}", data={"csrf_token": token}).status_code == 404  # type: ignore[union-attr]
    assert trainer.post(f"/trainer/cases/{SLUG}/restore/999999", data={"csrf_token": token}).status_code == 404


def test_the_case_id_cannot_change_in_the_editor_and_unknown_cases_are_not_found(launch_as: Callable[..., Any]) -> None:
    trainer = _trainer(launch_as)
    form = _open(trainer)
    renamed = form["source"].replace(f"id: {SLUG}", "id: another-case", 1)
    response = trainer.post(EDIT, data={**form, "source": renamed, "save": "Save draft"})
    assert response.status_code == 422 and "The case id can&#39;t change here." in response.get_data(as_text=True)
    for url in ("/trainer/cases/no-such-case/edit", "/trainer/cases/no-such-case/history",
                "/trainer/cases/no-such-case/analytics", "/trainer/cases/no-such-case/analytics.csv"):
        assert trainer.get(url).status_code == 404, url


def test_learners_are_refused_every_route_of_the_case_editor(launch_as: Callable[..., Any], app: Flask) -> None:
    learner, placement = launch_as()
    token = csrf_token_from(learner.get(f"/p/{placement.id}/cases/{SLUG}").get_data(as_text=True))
    rules = [rule for rule in app.url_map.iter_rules() if rule.endpoint.startswith("case_editor.")]
    assert len(rules) >= 8
    for rule in rules:
        url = rule.rule.replace("<slug>", SLUG).replace("<int:version_id>", "1")
        if "POST" in (rule.methods or ()):
            response = learner.post(url, data={"csrf_token": token, "source": "x"})
        else:
            response = learner.get(url)
        assert response.status_code == 403, (url, response.status_code)


def test_a_trainer_of_another_tenant_never_sees_this_tenants_edits(
    launch_as: Callable[..., Any], make_account: Callable[..., Any], app: Flask
) -> None:
    trainer = _trainer(launch_as)
    form = _open(trainer)
    trainer.post(EDIT, data={**form, "source": form["source"].replace(FIRST_TITLE, "title: Acme's night"), "publish": "Publish"})
    form = _open(trainer)
    trainer.post(EDIT, data={**form, "source": form["source"] + "# Acme's draft note\n", "save": "Save draft"})

    account = make_account(username="other.trainer", role="trainer")
    outsider = app.test_client()
    assert sign_in(outsider, "other.trainer", "correct horse battery staple").status_code == 302
    theirs = _editor(outsider.get(EDIT).get_data(as_text=True))["source"]
    assert FIRST_TITLE in theirs and "Acme" not in theirs
    history = outsider.get(f"/trainer/cases/{SLUG}/history").get_data(as_text=True)
    assert "Acme" not in history
    assert re.findall(r'<th scope="row">(\d+)', history) == ["1"] and "1 (live)" in history
    live = effective_version(db.session, account.platform_id, "case", SLUG)
    assert live is not None and live.number == 1


def _play_to_end(browser: FlaskClient, placement_id: int) -> None:
    intro = browser.get(f"/p/{placement_id}/cases/{SLUG}").get_data(as_text=True)
    url = browser.post(f"/p/{placement_id}/cases/{SLUG}/start", data={"csrf_token": csrf_token_from(intro)}).headers["Location"]
    for _ in range(20):
        page = browser.get(url, follow_redirects=True).get_data(as_text=True)
        if "Debrief:" in page:
            return
        node = re.search(r'name="node" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        step = re.search(r'name="step" value="(\d+)"', page).group(1)  # type: ignore[union-attr]
        choice = re.findall(r'name="choice" value="([^"]+)"', page)[0]
        browser.post(f"{url}/answer", data={"csrf_token": csrf_token_from(page), "node": node, "step": step, "choice": choice})
    raise AssertionError("the case never ended")


def test_analytics_and_their_csv_count_only_this_tenants_attempts_and_only_its_trainers_see_them(
    launch_as: Callable[..., Any], make_account: Callable[..., Any], app: Flask
) -> None:
    learner, placement = launch_as()
    _play_to_end(learner, placement.id)
    trainer = _trainer(launch_as)

    page = trainer.get(f"/trainer/cases/{SLUG}/analytics").get_data(as_text=True)
    assert "1 attempt(s), 1 finished" in page
    assert "A Saturday night mention" in page and "reached 1 time(s)" in page and "<svg" in page
    response = trainer.get(f"/trainer/cases/{SLUG}/analytics.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    first_post = [row for row in rows[1:] if row[0] == "first-post"]
    assert len(first_post) == 4 and sum(int(row[4]) for row in first_post) == 1

    make_account(username="other.trainer", role="trainer")
    outsider = app.test_client()
    sign_in(outsider, "other.trainer", "correct horse battery staple")
    assert "0 attempt(s), 0 finished" in outsider.get(f"/trainer/cases/{SLUG}/analytics").get_data(as_text=True)
    theirs = list(csv.reader(io.StringIO(outsider.get(f"/trainer/cases/{SLUG}/analytics.csv").get_data(as_text=True))))
    assert all(row[4] == "0" for row in theirs[1:])

    assert learner.get(f"/trainer/cases/{SLUG}/analytics").status_code == 403
    assert learner.get(f"/trainer/cases/{SLUG}/analytics.csv").status_code == 403
    assert app.test_client().get(f"/trainer/cases/{SLUG}/analytics.csv").status_code == 302  # to sign in


def test_through_the_development_lms_a_case_is_played_broken_fixed_published_and_its_choices_counted(
    app: Flask, course_content: None
) -> None:
    """Issue 5's "done when", end to end from the development LMS's own launch page."""
    from tests.lessons.dev_lms_launch import dev_lms_launcher

    launch = dev_lms_launcher(app)
    lena, home_url = launch("lena")
    case_url = f"{home_url}cases/{SLUG}"
    endings = set()
    for pick in (0, -1):
        intro = lena.get(case_url).get_data(as_text=True)
        url = lena.post(f"{case_url}/start", data={"csrf_token": csrf_token_from(intro), "restart": "1"}).headers["Location"]
        for _ in range(20):
            page = lena.get(url, follow_redirects=True).get_data(as_text=True)
            if "Debrief:" in page:
                break
            node = re.search(r'name="node" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
            step = re.search(r'name="step" value="(\d+)"', page).group(1)  # type: ignore[union-attr]
            choice = re.findall(r'name="choice" value="([^"]+)"', page)[pick]
            lena.post(f"{url}/answer", data={"csrf_token": csrf_token_from(page), "node": node, "step": step, "choice": choice})
        assert "Your path" in page and "Try again" in page
        endings.add(re.search(r"<h1[^>]*>Debrief: ([^<]+)</h1>", page).group(1))  # type: ignore[union-attr]
    assert len(endings) == 2

    theo, _ = launch("theo")
    form = _editor(theo.get(EDIT).get_data(as_text=True))
    broken, line, words, node_id = _unknown_target(form["source"])
    checked = theo.post(EDIT, data={**form, "source": broken, "check": "Check"}).get_data(as_text=True)
    _assert_listed(checked, line, words)
    _assert_marked(checked, node_id or "")
    fixed = broken.replace("gather-fakts", "gather-facts").replace(FIRST_TITLE, "title: A Saturday night post")
    assert theo.post(EDIT, data={**form, "source": fixed, "publish": "Publish"}).status_code == 303

    intro = lena.get(case_url).get_data(as_text=True)
    url = lena.post(f"{case_url}/start", data={"csrf_token": csrf_token_from(intro)}).headers["Location"]
    assert "A Saturday night post" in lena.get(url).get_data(as_text=True)

    analytics = theo.get(f"/trainer/cases/{SLUG}/analytics").get_data(as_text=True)
    # Three attempts reached the first situation (the third is still there); two chose at it.
    assert "3 attempt(s), 2 finished" in analytics and "reached 3 time(s)" in analytics
    rows = list(csv.reader(io.StringIO(theo.get(f"/trainer/cases/{SLUG}/analytics.csv").get_data(as_text=True).removeprefix("\ufeff"))))
    assert sorted(int(row[4]) for row in rows[1:] if row[0] == "first-post") == [0, 0, 1, 1]


def test_simultaneous_saves_of_one_draft_let_one_through_and_refuse_the_rest_with_a_conflict(
    app_factory: Callable[..., Flask], empty_database_url: str
) -> None:
    """The same revision saved from several requests at once, each with its own connection."""
    from tests.quizzes.test_player_bad_input import _all_at_once, _committing_app, _launched_browser

    fresh = _committing_app(app_factory, empty_database_url)
    trainer, _ = _launched_browser(fresh, role=INSTRUCTOR_ROLE)
    form = _open(trainer)
    statuses = _all_at_once(
        fresh, trainer, 8, EDIT, {**form, "source": form["source"] + "# saved once\n", "save": "Save draft"}
    )
    assert sorted(statuses) == [200] + [409] * 7
    with fresh.app_context():
        draft = db.session.scalar(select(ContentDraft))
        assert draft is not None and draft.revision == int(form["revision"]) + 1
        assert draft.source.endswith("# saved once\n")
