"""Journeys as people meet Rebound: in a real Chromium, launched from the development LMS.

The LMS page is on `localhost`, Rebound in its frame on `127.0.0.1`: another site, so
Rebound's cookies there are third-party, as in a company LMS. Every page a journey visits
is checked with axe-core; screenshots go to tests/artifacts/screenshots/.
"""

from __future__ import annotations

import csv
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from playwright.sync_api import Frame, Page, expect

from tests.browser.conftest import (
    BLOCK_THIRD_PARTY_COOKIES,
    CHROMIUM,
    CHROMIUM_ARGS,
    OpenBrowser,
    Rebound,
    cookies_blocked_in_frames_of,
)

pytestmark = pytest.mark.browser

Check = Callable[[Any, str], None]
Shot = Callable[..., Any]  # (page, name, at=None, *, with_lms=False)
View = Page | Frame  # the tool's pages: in the LMS frame, or in a window of their own
FRAME = "rebound-frame"
CASE = "airline-angry-passenger"
CASE_TITLE = "The passenger with a million followers"
MAX_CASE_STEPS = 20
GRADE_WAIT_SECONDS = 30  # the grade worker looks at its outbox every few seconds
ACME = "Social media at Acme (Rebound: social media mistakes)"
ONBOARDING = "New starter onboarding (Rebound (onboarding))"


# --- the development LMS --------------------------------------------------------------------


@pytest.fixture(scope="package")
def lms(chromium: Any, rebound: Rebound, tmp_path_factory: pytest.TempPathFactory) -> Rebound:
    """The development LMS with Rebound registered, as an administrator does it: one frame."""
    profile = tmp_path_factory.mktemp("registration-profile")
    context = chromium.launch_persistent_context(
        str(profile), executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS)
    )
    try:
        page = context.new_page()
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(rebound.lms)
        # The registration frame tells the LMS it is done and the LMS page reloads itself,
        # often before a first look could catch the frame.
        expect(page.get_by_role("button", name="Launch Rebound")).to_be_visible()
        assert any(url.startswith(rebound.tool + "/lti/register?openid_configuration=") for url in requested)
    finally:
        context.close()
    return rebound


def launch(page: Page, lms: Rebound, *, person: str, course: str) -> Frame:
    """Open the LMS page and launch Rebound in its frame as `person` (a key) in `course` (a label)."""
    page.goto(lms.lms)
    tall_frame(page)
    page.get_by_label("Launch as").select_option(value=person)
    page.get_by_label("In course").select_option(label=course)
    page.get_by_role("button", name="Launch Rebound").click()
    frame = page.frame(name=FRAME)
    assert frame is not None
    return frame


def tall_frame(page: Page) -> None:
    """Give the tool a frame as tall as the window, as LMSes do, so a screenshot shows a screen.

    Set before the frame loads: resizing a cross-site frame later can leave Chromium
    hit-testing the next click against the old layout.
    """
    page.locator(f"iframe[name={FRAME}]").evaluate("e => { e.style.height = '960px'; }")


def tool_frame_is_third_party(page: Page, frame: Frame) -> None:
    assert page.url.startswith("http://localhost:")
    assert frame.url.startswith("http://127.0.0.1:"), frame.url


# --- the learner's journey, shared by the cookie and window variants ------------------------


def read_two_lessons(view: View, check: Check, shot: Shot, page: Page, name: str) -> None:
    """From the course home: start the course, mark two lessons complete, see the progress."""
    expect(view.get_by_text("Lessons completed: 0 of 9")).to_be_visible()
    check(view, "course home")
    shot(page, f"{name}-course-home", with_lms=True)
    view.get_by_role("link", name="Start the course").click()
    expect(view.get_by_role("heading", level=1, name="Why mistakes will happen")).to_be_visible()
    check(view, "lesson")
    shot(page, f"{name}-lesson")
    view.get_by_role("button", name="Mark as complete and continue").click()
    expect(view.get_by_role("heading", level=1, name="Spotting a mistake fast")).to_be_visible()
    view.get_by_role("button", name="Mark as complete and continue").click()
    expect(view.get_by_role("navigation", name="Breadcrumb")).to_contain_text("Lesson 3 of 9")
    view.get_by_role("link", name="Course home").click()
    expect(view.get_by_text("Lessons completed: 2 of 9")).to_be_visible()
    expect(view.get_by_text("✓ Completed")).to_have_count(2)
    expect(view.get_by_role("link", name="Continue where you left off")).to_be_visible()


def play_to_an_ending(view: View, choose: Callable[[int], Any], after_step: Callable[[int], None] | None = None) -> None:
    """Answer with `choose(step)` (a button) until the debrief; `after_step` looks at each page."""
    for step in range(MAX_CASE_STEPS):
        with view.expect_navigation():
            choose(step).click()
        expect(view.get_by_role("heading", name="What happened next")).to_be_visible()
        if view.get_by_role("heading", level=1, name=re.compile("^Debrief")).count():
            return
        if after_step:
            after_step(step)
    raise AssertionError(f"no ending after {MAX_CASE_STEPS} choices")


def play_case_to_its_debrief(view: View, check: Check, shot: Shot, page: Page, name: str) -> None:
    """From the course home: open a case, answer until an ending, read the debrief."""
    view.get_by_role("link", name=CASE_TITLE).click()
    expect(view.get_by_role("heading", level=1, name=CASE_TITLE)).to_be_visible()
    check(view, "case introduction")
    view.get_by_role("button", name="Start the case").click()
    expect(view.get_by_role("group", name="What do you do?")).to_be_visible()
    check(view, "case step")
    shot(page, f"{name}-case-step")
    first_step_only = lambda step: check(view, "case step after a choice") if step == 0 else None  # noqa: E731
    play_to_an_ending(view, lambda _: view.locator("button.choice").first, first_step_only)
    expect(view.get_by_role("heading", name="Your path")).to_be_visible()
    expect(view.get_by_text(re.compile(r"Score \d+% \(pass mark 60%\)"))).to_be_visible()
    check(view, "debrief")
    shot(page, f"{name}-debrief", view.locator(".breadcrumb"))
    view.get_by_role("link", name="Back to the course").click()
    case_row = view.get_by_role("listitem").filter(has=view.get_by_role("link", name=CASE_TITLE))
    expect(case_row).not_to_contain_text("Not started")


BETTER_PATH = """() => {
    const heading = document.getElementById("better-title");
    if (!heading) return [];
    return [...heading.closest("section").querySelectorAll("ol.path > li")].slice(0, -1).map(li => {
        const choice = li.cloneNode(true);
        choice.querySelector("strong").remove();
        choice.querySelector("details")?.remove();
        return choice.textContent.replace(/^\\s*—\\s*/, "").replace(/\\s+/g, " ").trim();
    });
}"""


def pass_every_case(view: View) -> None:
    """Play each case of the course home; where the debrief shows a better path, replay it."""
    titles = [link.inner_text() for link in view.locator("a[href*='/cases/']").all()]
    assert len(titles) == 5, titles
    for title in titles:
        view.get_by_role("link", name=title, exact=True).click()
        start = view.get_by_role("button", name=re.compile("^(Start the case|Try again)$"))
        start.click()
        play_to_an_ending(view, lambda _: view.locator("button.choice").first)
        better = view.evaluate(BETTER_PATH)
        if better:
            view.get_by_role("button", name="Try again").click()
            play_to_an_ending(view, lambda step: view.locator("button.choice", has_text=better[step]))  # noqa: B023
        expect(view.locator(".outcome")).to_contain_text("Passed")
        view.get_by_role("link", name="Back to the course").click()


def finish_every_lesson(view: View) -> None:
    """Read on from where the learner left off until every lesson is marked complete."""
    view.get_by_role("link", name="Continue where you left off").click()
    expect(view.get_by_role("navigation", name="Breadcrumb")).to_contain_text("Lesson 3 of 9")
    mark = view.get_by_role("button", name=re.compile("^Mark as complete"))
    for _ in range(9):
        if not mark.count():
            break
        with view.expect_navigation():
            mark.click()
    # The last lesson's button leads back to the course home.
    expect(view.get_by_text("Lessons completed: 9 of 9")).to_be_visible()


def gradebook_score(page: Page, lms: Rebound, *, course: str, person: str) -> str:
    """The development LMS gradebook's cell for `person` in `course`, once the worker sent it."""
    page.goto(lms.lms + "gradebook")
    cell = (
        page.get_by_role("region", name=course)
        .get_by_role("row", name=re.compile(person))
        .get_by_role("cell")
        .first
    )
    for _ in range(GRADE_WAIT_SECONDS):
        if "Completed" in cell.inner_text():
            return cell.inner_text()
        page.wait_for_timeout(1000)
        page.reload()
    raise AssertionError(f"no completed score for {person} in {course}: {cell.inner_text()}")


# --- journeys --------------------------------------------------------------------------------


def test_learner_launches_in_the_lms_frame_completes_the_course_and_the_lms_gradebook_shows_the_score(
    lms: Rebound, open_browser: OpenBrowser, check_accessibility: Check, screenshot: Shot
) -> None:
    page = open_browser().new_page()
    frame = launch(page, lms, person="lena", course=ACME)
    expect(frame.get_by_role("heading", level=1, name="Rebound: social media mistakes")).to_be_visible()
    tool_frame_is_third_party(page, frame)
    check_accessibility(page, "development LMS")
    read_two_lessons(frame, check_accessibility, screenshot, page, "learner")
    play_case_to_its_debrief(frame, check_accessibility, screenshot, page, "learner")

    finish_every_lesson(frame)
    pass_every_case(frame)
    # The last case passed meets the completion rule: the record is made then, without a click.
    status = frame.get_by_role("heading", name=re.compile("^Your status"))
    expect(status).to_have_text("Your status: Passed")
    completed = frame.get_by_text(re.compile(r"^Completed on .* with (\d+)%"))
    expect(completed).to_be_visible()
    percent = re.search(r"with (\d+)%", completed.inner_text()).group(1)  # type: ignore[union-attr]
    check_accessibility(frame, "course home, completed")
    screenshot(page, "learner-completed")

    frame.get_by_role("link", name="Your completion record and certificate").click()
    expect(frame.get_by_role("heading", level=1)).to_contain_text("ompletion")
    check_accessibility(frame, "completion record")

    cell = gradebook_score(page, lms, course="Social media at Acme", person="Lena Learner")
    assert cell.startswith(f"{percent} / 100"), cell
    assert "Completed, FullyGraded" in cell
    check_accessibility(page, "development LMS gradebook")
    screenshot(page, "lms-gradebook")


def test_learner_completes_the_journey_while_chromium_blocks_third_party_cookies(
    lms: Rebound, open_browser: OpenBrowser, check_accessibility: Check, screenshot: Shot
) -> None:
    page = open_browser(extra_args=[BLOCK_THIRD_PARTY_COOKIES]).new_page()
    frame = launch(page, lms, person="leo", course=ACME)
    expect(frame.get_by_role("heading", level=1, name="Rebound: social media mistakes")).to_be_visible()
    tool_frame_is_third_party(page, frame)
    # The blocking is real: an ordinary cross-site cookie does not stick in the frame...
    stuck = frame.evaluate(
        """() => { document.cookie = "probe=1; SameSite=None; Secure; Path=/";
                   return document.cookie.includes("probe=1"); }"""
    )
    assert stuck is False
    # ...while Rebound's partitioned (CHIPS) cookies, keyed to the LMS's site, do.
    partitions = {c.get("partitionKey") for c in page.context.cookies() if c["name"].startswith("rebound")}
    assert partitions == {"http://localhost"}
    read_two_lessons(frame, check_accessibility, screenshot, page, "blocked-cookies")
    play_case_to_its_debrief(frame, check_accessibility, screenshot, page, "blocked-cookies")


def test_learner_whose_browser_keeps_no_cookies_in_the_frame_continues_in_a_new_window(
    lms: Rebound, open_browser: OpenBrowser, check_accessibility: Check, screenshot: Shot
) -> None:
    tool_host = lms.tool.removeprefix("http://")
    context = open_browser(
        extra_args=[BLOCK_THIRD_PARTY_COOKIES],
        preferences=cookies_blocked_in_frames_of(f"localhost:{lms.port}", tool_host),
    )
    page = context.new_page()
    frame = launch(page, lms, person="lena", course=ONBOARDING)
    offer = frame.get_by_role("link", name="Open Rebound in a new window")
    expect(offer).to_be_visible()
    expect(frame.get_by_text("You can continue as Lena Learner")).to_be_visible()
    assert context.cookies() == []
    check_accessibility(frame, "new-window offer")
    screenshot(page, "new-window-offer")
    with context.expect_page() as opened:
        offer.click()
    window = opened.value
    expect(window.get_by_role("heading", level=1, name="Rebound (onboarding)")).to_be_visible()
    assert window.url.startswith(lms.tool)
    read_two_lessons(window, check_accessibility, screenshot, window, "new-window")
    play_case_to_its_debrief(window, check_accessibility, screenshot, window, "new-window")
    # The one-time link is spent: the same offer cannot open a second session.
    again = context.new_page()
    again.goto(lms.tool + (offer.get_attribute("href") or ""))
    expect(again.get_by_text("This launch link was already used")).to_be_visible()


# --- keyboard only ----------------------------------------------------------------------------


FOCUSED = """(selector) => {
    if (!document.hasFocus()) return false;
    const el = document.activeElement;
    if (!el || el.tagName === "IFRAME" || !el.matches(selector)) return false;
    const style = getComputedStyle(el);
    return style.outlineStyle !== "none" && style.outlineWidth !== "0px" ? "visible" : "invisible";
}"""


def tab_to(page: Page, view: View, selector: str, *, limit: int = 80) -> None:
    """Press Tab until the element matching `selector` in `view` has a visible focus."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = view.evaluate(FOCUSED, selector)
        if focused:
            assert focused == "visible", f"{selector} has focus but no visible focus indicator"
            return
    raise AssertionError(f"{limit} presses of Tab never reached {selector} in {view.url}")


def activate(page: Page, view: View, selector: str, key: str, *, navigates: Frame | None = None) -> None:
    """Tab to `selector` and press `key` (Enter or Space) there, waiting for the page it opens."""
    tab_to(page, view, selector)
    with (navigates or view).expect_navigation():
        page.keyboard.press(key)


def test_learner_journey_by_keyboard_alone(
    lms: Rebound, open_browser: OpenBrowser, check_accessibility: Check, screenshot: Shot
) -> None:
    page = open_browser().new_page()
    page.goto(lms.lms)
    tall_frame(page)
    tab_to(page, page, "#login_hint")
    page.keyboard.press("ArrowDown")  # the second person: Léo Lambert
    tab_to(page, page, "#lti_message_hint")
    page.keyboard.press("ArrowDown")  # the second course: New starter onboarding
    expect(page.get_by_label("Launch as")).to_have_value("leo")
    frame = page.frame(name=FRAME)
    assert frame is not None
    activate(page, page, "button[type=submit]", "Enter", navigates=frame)
    expect(frame.get_by_role("heading", level=1, name="Rebound (onboarding)")).to_be_visible()

    activate(page, frame, "a.button", "Enter")  # Start the course
    expect(frame.get_by_role("heading", level=1, name="Why mistakes will happen")).to_be_visible()
    activate(page, frame, "form[action$='/complete'] button", " ")
    expect(frame.get_by_role("heading", level=1, name="Spotting a mistake fast")).to_be_visible()
    activate(page, frame, "form[action$='/complete'] button", "Enter")
    expect(frame.get_by_role("navigation", name="Breadcrumb")).to_contain_text("Lesson 3 of 9")
    activate(page, frame, ".breadcrumb a", "Enter")
    expect(frame.get_by_text("Lessons completed: 2 of 9")).to_be_visible()

    activate(page, frame, f"a[href$='/cases/{CASE}']", "Enter")
    expect(frame.get_by_role("heading", level=1, name=CASE_TITLE)).to_be_visible()
    activate(page, frame, "form[action$='/start'] button", " ")
    expect(frame.get_by_role("group", name="What do you do?")).to_be_visible()
    for _ in range(MAX_CASE_STEPS):
        activate(page, frame, "button.choice", "Enter")
        expect(frame.get_by_role("heading", name="What happened next")).to_be_visible()
        # Focus moves to what happened, so a screen reader reads the consequence first.
        focused_heading = frame.evaluate("() => document.activeElement.tagName")
        assert focused_heading in ("H1", "H2")
        if frame.get_by_role("heading", level=1, name=re.compile("^Debrief")).count():
            break
    else:
        raise AssertionError(f"no ending after {MAX_CASE_STEPS} choices")
    check_accessibility(frame, "debrief")
    screenshot(page, "keyboard-debrief")
    activate(page, frame, "a.button.secondary", "Enter")  # Back to the course
    expect(frame.get_by_text("Lessons completed: 2 of 9")).to_be_visible()


# --- trainer ----------------------------------------------------------------------------------


def test_trainer_edits_and_publishes_a_lesson_and_sees_a_case_as_a_graph(
    lms: Rebound, open_browser: OpenBrowser, check_accessibility: Check, screenshot: Shot
) -> None:
    page = open_browser().new_page()
    frame = launch(page, lms, person="theo", course=ACME)
    expect(frame.get_by_role("heading", level=1, name="Rebound: social media mistakes")).to_be_visible()
    course_home = frame.url
    staff = frame.get_by_role("navigation", name="Staff")

    staff.get_by_role("link", name="Lessons").click()
    expect(frame.get_by_role("heading", level=1, name="Lessons")).to_be_visible()
    check_accessibility(frame, "lesson list (trainer)")
    frame.get_by_role("link", name="Edit Spotting a mistake fast").click()
    expect(frame.get_by_role("heading", level=1, name=re.compile("Edit lesson"))).to_be_visible()
    check_accessibility(frame, "lesson editor")
    marker = f"A note from the browser test {uuid.uuid4().hex[:8]}."
    body = frame.get_by_label("Lesson text (Markdown)")
    body.fill(marker + "\n\n" + body.input_value())
    expect(frame.locator("#live-preview")).to_contain_text(marker)  # the live preview
    screenshot(page, "lesson-editor")
    frame.get_by_role("button", name="Publish").click()
    expect(frame.get_by_role("status")).to_contain_text("ublish")
    check_accessibility(frame, "lesson editor after publishing")
    # Learners see the published version from their next page view.
    frame.goto(course_home)
    frame.get_by_role("link", name="Spotting a mistake fast").click()
    expect(frame.locator(".lesson-body")).to_contain_text(marker)

    staff.get_by_role("link", name="Cases").click()
    expect(frame.get_by_role("heading", level=1, name="Cases")).to_be_visible()
    check_accessibility(frame, "case list (trainer)")
    frame.get_by_role("link", name=f"Edit {CASE_TITLE}").click()
    graph = frame.locator("#case-graph svg")
    expect(graph).to_be_visible()
    expect(graph.get_by_text("A Saturday night mention", exact=True)).to_be_visible()
    assert graph.locator("text.node-title").count() >= 5
    expect(frame.get_by_text("No problems found.")).to_be_visible()
    check_accessibility(frame, "case editor")
    screenshot(page, "case-editor", frame.get_by_role("heading", name="The case as a graph"))
    frame.get_by_role("link", name="Analytics").click()
    expect(frame.get_by_role("heading", level=1, name=re.compile("nalytics"))).to_be_visible()
    check_accessibility(frame, "case analytics")
    screenshot(page, "case-analytics")


# --- HR ---------------------------------------------------------------------------------------


def test_hr_downloads_the_completion_export_and_the_files_open(
    lms: Rebound, open_browser: OpenBrowser, check_accessibility: Check, screenshot: Shot, tmp_path: Path
) -> None:
    page = open_browser().new_page()
    frame = launch(page, lms, person="hana", course=ONBOARDING)
    expect(frame.get_by_role("heading", level=1, name="Rebound (onboarding)")).to_be_visible()
    # Hana is also enrolled as a learner: her own progress is what the export must show.
    frame.get_by_role("link", name="Start the course").click()
    frame.get_by_role("button", name="Mark as complete and continue").click()
    expect(frame.get_by_role("heading", level=1, name="Spotting a mistake fast")).to_be_visible()

    frame.get_by_role("navigation", name="Staff").get_by_role("link", name="Exports").click()
    expect(frame.get_by_role("heading", level=1, name="Completion export")).to_be_visible()
    check_accessibility(frame, "HR export")
    frame.get_by_label("Course").select_option(label="New starter onboarding (acme-onboarding)")
    with frame.expect_navigation():
        frame.get_by_role("button", name="Preview").click()
    preview = frame.get_by_role("region", name="Preview")
    expect(preview.get_by_role("row", name=re.compile("Hana Hughes"))).to_contain_text("in progress")
    check_accessibility(frame, "HR export with a preview")
    screenshot(page, "hr-export", frame.get_by_role("heading", level=1))

    with page.expect_download() as csv_download:
        frame.get_by_role("button", name="CSV").click()
    csv_path = tmp_path / csv_download.value.suggested_filename
    csv_download.value.save_as(csv_path)
    assert csv_path.suffix == ".csv"
    with csv_path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    hana = [row for row in rows if "Hana" in " ".join(row.values())]
    assert len(hana) == 1, rows
    assert "in progress" in hana[0].values()

    with page.expect_download() as xlsx_download:
        frame.get_by_role("button", name="XLSX").click()
    xlsx_path = tmp_path / xlsx_download.value.suggested_filename
    xlsx_download.value.save_as(xlsx_path)
    workbook = openpyxl.load_workbook(xlsx_path, read_only=True)
    try:
        sheet = workbook.active
        assert sheet is not None
        cells = [[str(value) for value in row if value is not None] for row in sheet.iter_rows(values_only=True)]
    finally:
        workbook.close()  # read-only workbooks keep their file open until closed
    assert len(cells) == len(rows) + 1  # the header, then the same rows as the CSV
    assert any("Hana Hughes" in row and "in progress" in row for row in cells)

    # Both downloads are logged as finished, with their row counts, once the files were sent.
    frame.get_by_role("navigation", name="Staff").get_by_role("link", name="Exports").click()
    logged = frame.get_by_role("table").filter(has_text="Result").get_by_role("row")
    expect(logged.filter(has_text="xlsx").first).to_contain_text(f"complete{len(rows)}")
    expect(logged.filter(has_text="csv").first).to_contain_text(f"complete{len(rows)}")


# --- the checks check ---------------------------------------------------------------------------


def test_the_accessibility_check_fails_on_a_page_with_serious_violations(
    open_browser: OpenBrowser, check_accessibility: Check
) -> None:
    page = open_browser().new_page()
    page.set_content('<html lang="en"><title>Broken</title><main><img src="data:,"><button></button></main></html>')
    with pytest.raises(AssertionError) as failure:
        check_accessibility(page, "a deliberately broken page")
    assert "image-alt" in str(failure.value)
    assert "button-name" in str(failure.value)
