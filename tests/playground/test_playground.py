"""The playground at `/`, driven in headless Chromium against the live server.

The browser is Debian's `chromium` with its `chromedriver` (no browser is
downloaded); without them these tests fail, saying how to install them. Each
view's screenshot is saved under `$HEARTH_ARTIFACTS/playground` (default
`test-artifacts/playground` in the repository) for CI's output.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

from tests.batches.flow import create as create_batch
from tests.batches.flow import embedding_line
from tests.batches.flow import wait_for as batch_finished
from tests.conftest import LiveServer

INSTALL = "apt-get install -y chromium chromium-driver"
# Generous: the models run on shared CPUs; nothing here asserts how long anything took.
PATIENCE = 300


def _executable(*names: str) -> str | None:
    return next((found for name in names if (found := shutil.which(name))), None)


@pytest.fixture(scope="module")
def artifacts() -> Path:
    root = Path(os.environ.get("HEARTH_ARTIFACTS") or Path(__file__).resolve().parents[2] / "test-artifacts")
    folder = root / "playground"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    chromium = _executable("chromium", "chromium-browser")
    driver = _executable("chromedriver")
    if chromium is None or driver is None:
        missing = [name for name, found in (("chromium", chromium), ("chromedriver", driver)) if found is None]
        pytest.fail(f"The playground tests drive the system's headless Chromium, but {' and '.join(missing)} "
                    f"{'is' if len(missing) == 1 else 'are'} not installed. Install with: {INSTALL}", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1366,900",
                     "--autoplay-policy=no-user-gesture-required", "--mute-audio",
                     "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        chrome = webdriver.Chrome(options=options, service=Service(driver))
    except WebDriverException as exc:
        pytest.fail(f"Chromium ({chromium}) did not start under {driver}: {exc.msg}", pytrace=False)
    yield chrome
    chrome.quit()


def wait_for(browser: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    return WebDriverWait(browser, PATIENCE, poll_frequency=0.2).until(condition, message=f"waiting for {what}")


def js(browser: WebDriver, script: str, *args: Any) -> Any:
    return browser.execute_script(script, *args)


def script_errors(browser: WebDriver) -> list[str]:
    """Uncaught exceptions on the page since the last look (failed requests are the page's business)."""
    return [entry["message"] for entry in browser.get_log("browser") if entry.get("source") == "javascript"]


@pytest.fixture
def page(browser: WebDriver, server: LiveServer) -> Iterator[Callable[[str], WebDriver]]:
    """Open a view, signed in with the project key already in the browser's storage."""
    def open_view(view: str) -> WebDriver:
        browser.get(f"{server.base_url}/#{view}")
        js(browser, "localStorage.setItem('hearth.playground.apiKey', arguments[0])", server.api_key)
        browser.refresh()
        wait_for(browser, lambda b: b.find_element(By.ID, f"view-{view}").is_displayed(), f"the {view} view")
        return browser
    yield open_view
    assert script_errors(browser) == []


def test_page_and_assets_are_served(server: LiveServer) -> None:
    page = httpx.get(f"{server.base_url}/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for asset, media_type in (("app.js", "text/javascript"), ("app.css", "text/css"), ("logo.svg", "image/svg+xml")):
        assert f"/playground/{asset}" in page.text
        response = httpx.get(f"{server.base_url}/playground/{asset}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(media_type)
    missing = httpx.get(f"{server.base_url}/playground/nothing.js")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "invalid_request_error"
    # The page is no part of the API's description.
    assert "/" not in httpx.get(f"{server.base_url}/openapi.json").json()["paths"]


def test_sign_in_keeps_the_key_and_refuses_a_wrong_one(browser: WebDriver, server: LiveServer,
                                                       artifacts: Path) -> None:
    browser.get(f"{server.base_url}/")
    js(browser, "localStorage.clear()")
    browser.refresh()
    key = wait_for(browser, lambda b: b.find_element(By.ID, "signin-key"), "the sign-in form")
    assert not browser.find_element(By.ID, "app").is_displayed()
    browser.save_screenshot(str(artifacts / "0-sign-in.png"))

    key.send_keys("sk-proj-not-a-key")
    browser.find_element(By.ID, "signin-submit").click()
    error = browser.find_element(By.ID, "signin-error")
    wait_for(browser, lambda b: error.is_displayed(), "the refusal")
    assert "does not accept" in error.text

    key.clear()
    key.send_keys(server.api_key)
    browser.find_element(By.ID, "signin-submit").click()
    wait_for(browser, lambda b: b.find_element(By.ID, "view-speech").is_displayed(), "the speech view")
    assert js(browser, "return localStorage.getItem('hearth.playground.apiKey')") == server.api_key

    browser.refresh()   # the stored key signs in again
    wait_for(browser, lambda b: b.find_element(By.ID, "view-speech").is_displayed(), "the speech view again")
    browser.find_element(By.ID, "signout").click()
    wait_for(browser, lambda b: b.find_element(By.ID, "signin").is_displayed(), "the sign-in screen")
    assert js(browser, "return localStorage.getItem('hearth.playground.apiKey')") is None
    assert script_errors(browser) == []


def test_a_phrase_is_spoken_and_plays(page: Callable[[str], WebDriver], artifacts: Path) -> None:
    browser = page("speech")
    wait_for(browser, lambda b: Select(b.find_element(By.ID, "speech-voice")).options, "the voices")
    text = browser.find_element(By.ID, "speech-input")
    text.clear()
    text.send_keys("Hello from the playground. This sentence follows the first one.")
    Select(browser.find_element(By.ID, "speech-voice")).select_by_value("af_bella")
    browser.find_element(By.ID, "speech-go").click()

    wait_for(browser, lambda b: b.find_element(By.ID, "speech-download").is_displayed(), "the whole answer")
    played = wait_for(browser, lambda b: js(b, """
        const audio = document.getElementById('speech-audio');
        return audio.played.length > 0 && audio.currentTime > 0 && audio.duration > 0
          && isFinite(audio.duration) && {mode: audio.dataset.mode, duration: audio.duration,
                                          pieces: Number(audio.dataset.chunks), error: audio.error};
    """), "the audio to play")
    # mp3 (the default) is played from a MediaSource as it arrives, not after it is all there.
    assert played["mode"] == "stream"
    assert played["pieces"] >= 1 and played["error"] is None
    assert played["duration"] > 1
    assert browser.find_element(By.ID, "speech-error").is_displayed() is False
    assert browser.find_element(By.ID, "speech-download").get_attribute("download") == "speech.mp3"
    browser.save_screenshot(str(artifacts / "1-speech.png"))


def test_an_uploaded_file_is_transcribed_with_timed_words(page: Callable[[str], WebDriver], client: OpenAI,
                                                          artifacts: Path, tmp_path: Path) -> None:
    wav = tmp_path / "fox.wav"
    wav.write_bytes(client.audio.speech.create(
        model="tts-1", voice="alloy", input="The quick brown fox jumps over the lazy dog.",
        response_format="wav").content)
    browser = page("transcription")
    browser.find_element(By.ID, "tx-file").send_keys(str(wav))
    go = browser.find_element(By.ID, "tx-go")
    wait_for(browser, lambda b: go.is_enabled(), "the file to be chosen")
    assert "fox.wav" in browser.find_element(By.ID, "tx-source").text
    go.click()

    words = wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#tx-transcript .word"), "the words")
    said = " ".join(word.text for word in words).lower()
    for expected in ("quick", "brown", "fox", "lazy", "dog"):
        assert expected in said
    starts = [float(word.get_attribute("data-start")) for word in words]
    assert starts == sorted(starts) and starts[-1] > 0
    assert browser.find_element(By.ID, "tx-lang").text != "–"

    # Played back, the word under the playhead is highlighted.
    js(browser, "const a = document.getElementById('tx-audio'); a.currentTime = 0; a.play();")
    current = wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#tx-transcript .word.current"),
                       "a highlighted word")
    assert len(current) == 1
    browser.save_screenshot(str(artifacts / "2-transcription.png"))


def test_a_recording_from_the_microphone_is_transcribed(page: Callable[[str], WebDriver]) -> None:
    """Chromium's fake microphone (a beeping tone) is recorded with MediaRecorder and sent as is."""
    browser = page("transcription")
    record = browser.find_element(By.ID, "tx-record")
    record.click()
    wait_for(browser, lambda b: "recording" in (record.get_attribute("class") or ""), "the recording to start")
    wait_for(browser, lambda b: b.find_element(By.ID, "tx-timer").text not in ("0:00", ""), "a second of sound")
    record.click()
    source = wait_for(browser, lambda b: b.find_element(By.ID, "tx-source").text.startswith("Recording")
                      and b.find_element(By.ID, "tx-source").text, "the recording")
    assert "KB" in source or " B" in source
    browser.find_element(By.ID, "tx-go").click()
    wait_for(browser, lambda b: b.find_element(By.ID, "tx-took").text != "–", "the transcription")
    assert not browser.find_element(By.ID, "tx-error").is_displayed()
    assert float(browser.find_element(By.ID, "tx-duration").text.removesuffix(" s")) > 0


def test_a_chat_answer_streams(page: Callable[[str], WebDriver], artifacts: Path) -> None:
    browser = page("chat")
    system = browser.find_element(By.ID, "chat-system")
    system.clear()
    system.send_keys("You are a counting assistant.")
    js(browser, """const t = document.getElementById('chat-temperature'); t.value = '0';
                   t.dispatchEvent(new Event('input'));""")
    tokens = browser.find_element(By.ID, "chat-max-tokens")
    tokens.clear()
    tokens.send_keys("48")
    # Record the answer's text each time the page changes it, to see it grow.
    js(browser, """
        window.seen = [];
        new MutationObserver(() => {
          const bubble = document.querySelector('.msg.assistant .bubble');
          if (bubble) window.seen.push(bubble.textContent.length);
        }).observe(document.getElementById('chat-log'), {subtree: true, childList: true, characterData: true});
    """)
    browser.find_element(By.ID, "chat-input").send_keys("Count from one to ten in words, separated by commas.")
    browser.find_element(By.ID, "chat-send").click()

    answer = wait_for(browser, lambda b: b.find_element(By.CSS_SELECTOR, ".msg.assistant[data-done=true]"),
                      "the answer to end")
    assert "error" not in (answer.get_attribute("class") or "")
    text = answer.find_element(By.CLASS_NAME, "bubble").text
    assert text.strip()
    assert int(answer.get_attribute("data-chunks") or 0) >= 3
    grown = sorted(set(js(browser, "return window.seen")) - {0})
    assert len(grown) >= 2 and grown[-1] == len(js(browser, "return arguments[0].textContent",
                                                    answer.find_element(By.CLASS_NAME, "bubble")))
    assert "tokens" in answer.find_element(By.CLASS_NAME, "meta").text
    browser.save_screenshot(str(artifacts / "3-chat.png"))


def test_the_projects_models_files_and_jobs_are_listed(page: Callable[[str], WebDriver], client: OpenAI,
                                                       http: httpx.Client, artifacts: Path) -> None:
    uploaded = client.files.create(file=("playground-notes.txt", b"kept by the playground test"),
                                   purpose="user_data")
    batch = batch_finished(client, create_batch(client, [embedding_line("a"), embedding_line("b")]).id)
    browser = page("project")
    wait_for(browser, lambda b: js(b, "return document.body.dataset.projectLoaded === 'true'"), "the lists")
    models = browser.find_element(By.ID, "models-body").text
    for name in ("kokoro-82m", "whisper-1", "tts-1"):
        assert name in models
    assert not browser.find_element(By.ID, "project-error").is_displayed()
    browser.save_screenshot(str(artifacts / "4-project-models.png"))

    browser.find_element(By.CSS_SELECTOR, "[data-tab=files]").click()
    files = browser.find_element(By.ID, "files-body")
    assert uploaded.id in files.text and "playground-notes.txt" in files.text and "processed" in files.text
    browser.save_screenshot(str(artifacts / "5-project-files.png"))

    browser.find_element(By.CSS_SELECTOR, "[data-tab=batches]").click()
    row = browser.find_element(By.XPATH, f"//tbody[@id='batches-body']/tr[td[1]='{batch.id}']")
    assert batch.status in row.text and "2/2" in row.text and "/v1/embeddings" in row.text
    browser.save_screenshot(str(artifacts / "6-project-batches.png"))
    # Fine-tuning appears exactly when the server answers for it.
    answered = http.get("/v1/fine_tuning/jobs").status_code != 404
    assert browser.find_element(By.ID, "tab-fine-tuning").is_displayed() is answered
    client.files.delete(uploaded.id)
