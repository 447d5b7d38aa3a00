"""End to end in a real browser: Playwright drives Debian's chromium (headless) through the survey."""

from __future__ import annotations

import os

import httpx
import pytest

from conftest import skip_or_fail
from songfeel.triplets import read_human_answers
from tests.annotate_support import ADMIN, CHROMIUM

QUESTIONS = 5


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - playwright is in requirements.txt
        skip_or_fail("playwright is not installed (pip install playwright==1.65.2)")
    if not CHROMIUM.is_file():
        skip_or_fail(f"{CHROMIUM} not found (apt-get install chromium)")
    with sync_playwright() as playwright:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        yield browser
        browser.close()


def test_a_listener_completes_the_survey_in_chromium(browser, start_survey, database_url, tmp_path):
    from playwright.sync_api import expect

    running = start_survey(database_url, questions_per_session=QUESTIONS, repeat_fraction=0.0)
    library = running.survey.library
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("response", lambda response: errors.append(f"{response.status} {response.url}")
            if response.status >= 400 else None)
    clip_statuses = []
    page.on("response", lambda response: clip_statuses.append(response.status) if "/api/clips/" in response.url
            else None)

    page.goto(running.url + "/")
    start = page.locator("#start")
    assert start.is_disabled()  # no consent, no start
    page.locator("#agree").check()
    start.click()
    page.wait_for_url("**/listen")

    # Answers: click A, key "b", click "can't decide", key "d"... the keyboard path and the buttons.
    plan = [("click", "A"), ("key", "b"), ("click", "none"), ("key", "c"), ("click", "B")]
    shown = []
    for number, (how, choice) in enumerate(plan, start=1):
        expect(page.locator("#position")).to_have_text(str(number))
        expect(page.locator("#choice-A")).to_be_enabled()
        assert page.locator("#progress-text").inner_text() == f"Question {number} of {QUESTIONS}"
        assert page.locator("#progress").get_attribute("value") == str(number - 1)
        sources = [page.locator(f"#audio-{label}").get_attribute("src") for label in "ABC"]
        clip_ids = [source.rsplit("/", 1)[1] for source in sources]
        shown.append([library.get(c).track_id for c in clip_ids])
        if number == 1:
            # The browser loads a snippet through the app (HTTP Range) and decodes it: 15 s of audio.
            duration = page.evaluate("""() => new Promise((resolve, reject) => {
                const audio = document.getElementById('audio-A');
                if (audio.readyState >= 1) { resolve(audio.duration); return; }
                audio.addEventListener('loadedmetadata', () => resolve(audio.duration), {once: true});
                audio.addEventListener('error', () => reject(new Error('audio error ' + audio.error.code)), {once: true});
                audio.load();
            })""")
            assert duration == pytest.approx(15.0, abs=0.05)
            page.keyboard.press("2")  # the keyboard plays snippet B...
            expect(page.locator("#audio-B")).to_have_js_property("paused", False)
            page.keyboard.press("2")  # ...and pauses it again
            expect(page.locator("#audio-B")).to_have_js_property("paused", True)
        if how == "click":
            page.locator(f"#choice-{choice}").click()
        else:
            page.keyboard.press(choice)

    page.wait_for_url("**/thanks?annotator_id=*")
    assert page.locator("h2").inner_text() == "Thank you!"
    heard = page.locator("#heard .track").all_inner_texts()
    assert set(heard) == {song for songs in shown for song in songs}
    assert not errors, errors
    assert 206 in clip_statuses  # the media element fetched the snippets with HTTP Range requests

    export = httpx.get(f"{running.url}/api/export", params={"format": "csv"}, headers=ADMIN)
    assert export.status_code == 200
    path = tmp_path / "answers.csv"
    path.write_text(export.text)
    answers = read_human_answers(path)
    assert len(answers) == QUESTIONS and answers["annotator"].nunique() == 1
    expected = []
    for songs, (_, choice) in zip(shown, plan):
        position = "ABC".find(choice.upper()) if choice != "none" else -1
        expected.append(songs[position] if position >= 0 else "")
    assert [[r.song1, r.song2, r.song3] for r in answers.itertuples()] == shown
    assert answers["odd_one_out"].tolist() == expected
    assert (answers["odd_one_out"] == "").sum() == 1  # the one "can't decide"
    page.close()
