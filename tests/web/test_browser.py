"""The pages in headless Chromium with a real Celery worker: upload, watch the job, read the timeline."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import wait_for
from tests.web.conftest import running_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SCREENSHOT = Path("/tmp/deepfake-result-page.png")


@pytest.fixture
def live_server(app) -> Iterator[str]:
    with running_server(app) as url:
        yield url


@pytest.fixture
def browser():
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("chromium and chromedriver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP violations land in the console
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,1600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    yield driver
    driver.quit()


@pytest.fixture
def checkpoint(settings) -> str:
    """Every window scores 0.9 >= threshold 0.5 + band 0.05: the whole-frame track and the video are FAKE."""
    from tests.checkpoints import write_constant_checkpoint

    return write_constant_checkpoint(settings.weights_dir, fake_probability=0.9, sequence_length=8).name


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_upload_watch_progress_and_see_the_timeline(live_server, browser, settings, video_clip, checkpoint,
                                                    start_worker):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(live_server + "/")
    browser.find_element(By.ID, "video").send_keys(str(video_clip))
    browser.find_element(By.CSS_SELECTOR, "details summary").click()
    browser.find_element(By.ID, "opt-sequence_length").send_keys("8")
    Select(browser.find_element(By.ID, "opt-face_detector")).select_by_value("none")
    Select(browser.find_element(By.ID, "opt-precision")).select_by_value("fp32")
    browser.find_element(By.ID, "opt-weights").send_keys(checkpoint)
    browser.find_element(By.ID, "submit").click()

    wait_for(lambda: "/jobs/" in browser.current_url, timeout=30, what="the job page")
    # No worker yet: the job waits, and the page says so with its progress bar and queue position.
    assert browser.find_element(By.ID, "job-status").text == "queued"
    assert browser.find_element(By.ID, "job-progress").is_displayed()
    assert "position 1" in browser.find_element(By.ID, "progress-text").text

    start_worker(settings)
    wait_for(lambda: browser.find_elements(By.ID, "verdict") or browser.find_elements(By.ID, "error-section"),
             timeout=180, interval=1, what="the job to finish and the page to show it")

    if browser.find_elements(By.ID, "error-section"):
        log = (settings.data_dir.parent / "worker-w1.log").read_text(errors="replace")[-3000:]
        pytest.fail(f"{browser.find_element(By.ID, 'error-section').text}\n--- worker log ---\n{log}")
    assert browser.find_element(By.ID, "verdict").text == "FAKE"
    assert browser.find_elements(By.CSS_SELECTOR, "#timeline svg polyline")
    assert browser.find_elements(By.CSS_SELECTOR, "#timeline svg line.threshold")
    assert "fake probability" in browser.find_element(By.ID, "result-section").text.lower()
    browser.save_screenshot(str(SCREENSHOT))

    browser.refresh()  # the result survives a reload: the page needs only the job id
    assert browser.find_elements(By.CSS_SELECTOR, "#timeline svg polyline")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_pages_work_under_the_content_security_policy(live_server, browser, make_job, advance_job):
    """The ended job's page draws its timeline and its delete form (with the CSRF token) works; nothing refused."""
    from selenium.webdriver.common.by import By

    job_id = make_job()
    advance_job(job_id, "succeeded")
    browser.get(live_server + "/")
    browser.get(f"{live_server}/jobs/{job_id}")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#timeline svg polyline"), timeout=10,
             what="the timeline drawn by job.js")
    browser.find_element(By.CSS_SELECTOR, "#delete-section summary").click()
    browser.find_element(By.ID, "delete-button").click()
    wait_for(lambda: browser.current_url.endswith("/jobs"), timeout=10, what="the jobs list after delete")
    refused = [entry["message"] for entry in browser.get_log("browser") if "Content Security Policy" in entry["message"]]
    assert refused == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_batch_of_files_uploads_from_the_page_and_lists_each_file(live_server, browser, video_clip, tmp_path):
    """batch.js creates the batch, uploads each chosen file on its own, then opens the batch page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    junk = tmp_path / "notes.mp4"
    junk.write_bytes(b"this is text, not a video" * 40)
    browser.get(live_server + "/batches")
    browser.find_element(By.ID, "batch-name").send_keys("night shift")
    browser.find_element(By.ID, "batch-files").send_keys(f"{video_clip}\n{junk}")
    browser.find_element(By.CSS_SELECTOR, "details summary").click()
    Select(browser.find_element(By.ID, "opt-face_detector")).select_by_value("none")
    browser.find_element(By.ID, "batch-submit").click()

    wait_for(lambda: "/batches/" in browser.current_url, timeout=30, what="the batch page")
    assert browser.find_element(By.TAG_NAME, "h1").text == "night shift"
    rows = [row.text for row in browser.find_elements(By.CSS_SELECTOR, "table.jobs tbody tr")]
    assert len(rows) == 2
    assert "face.mp4" in rows[0] and "queued" in rows[0]
    assert "notes.mp4" in rows[1] and "failed" in rows[1] and "not_a_video" in rows[1]
    refused = [entry["message"] for entry in browser.get_log("browser") if "Content Security Policy" in entry["message"]]
    assert refused == []


# Holds batch.js's timers: each wait it asks for is recorded, and runs only when the test calls __resume().
_HOLD_TIMERS = """window.__waits = []; window.__resume = null;
window.setTimeout = function (run, ms) { window.__waits.push(ms); window.__resume = run; return 0; };"""


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_batch_file_refused_by_the_rate_limit_is_sent_again_after_retry_after(settings, browser, video_clip,
                                                                                 tmp_path, redis_url, task_queue):
    """batch.js waits the Retry-After of a 429 (the test stands in for the minute passing) and sends the file again."""
    import time
    import uuid
    from dataclasses import replace

    import redis
    from selenium.webdriver.common.by import By

    from tests.web.conftest import build_app

    other = tmp_path / "second.mp4"
    shutil.copy(video_clip, other)
    limiter = redis.Redis.from_url(redis_url)
    for _ in range(3):  # a run whose requests straddle a minute boundary sees no 429: run again, fresh owner
        owner, window = f"busy-{uuid.uuid4().hex[:8]}", int(time.time() // 60)
        # Three writes in a minute: the batch and its first file pass, the second file is refused at first.
        app = build_app(replace(settings, rate_limit_per_minute=2, owner=owner))
        with running_server(app) as url:
            browser.get(url + "/batches")
            browser.execute_script(_HOLD_TIMERS)
            browser.find_element(By.ID, "batch-name").send_keys("busy night")
            browser.find_element(By.ID, "batch-files").send_keys(f"{video_clip}\n{other}")
            browser.find_element(By.ID, "batch-submit").click()
            wait_for(lambda: "/batches/" in browser.current_url
                     or browser.execute_script("return window.__waits.length"), timeout=30,
                     what="the batch page or a wait")
            waits = [] if "/batches/" in browser.current_url else browser.execute_script("return window.__waits")
            if waits:
                busy = browser.find_element(By.ID, "batch-current").text
                limiter.delete(*limiter.keys(f"deepfake:rate:{task_queue}:{owner}:*"))  # the minute passes
                browser.execute_script("window.__resume()")
                wait_for(lambda: "/batches/" in browser.current_url, timeout=30, what="the batch page")
            rows = [row.text for row in browser.find_elements(By.CSS_SELECTOR, "table.jobs tbody tr")]
        app.extensions["deepfake.db"]["engine"].dispose()
        if waits or int(time.time() // 60) == window:
            break

    [waited_ms] = waits
    assert 1000 <= waited_ms <= 60000  # the service's Retry-After, in seconds, to the next window
    assert "second.mp4: the server is busy" in busy and "RATE_LIMIT_PER_MINUTE" in busy
    assert len(rows) == 2 and all("queued" in row for row in rows)  # neither file was recorded as failed


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_job_page_plays_the_preview_with_each_tracks_box_and_the_timeline_seeks_it(
        live_server, browser, make_job, advance_job, video_clip, tmp_path):
    """A real preview.mp4 under the CSP: boxes where the result says (interpolated, scaled), a click on a
    timeline window seeks the video to its start, and the playhead follows the video."""
    from selenium.webdriver.common.by import By

    from shared.model.annotate import probability_colour
    from tests.web.job_media import TRACK0_BOXES, result_with_preview

    job_id = make_job()
    advance_job(job_id, "succeeded", result=result_with_preview(video_clip, tmp_path / "made"))
    browser.get(f"{live_server}/jobs/{job_id}")
    video = browser.find_element(By.ID, "preview")
    js = browser.execute_script
    wait_for(lambda: js("return arguments[0].readyState >= 1", video), timeout=30, what="the preview's metadata")
    assert js("return [arguments[0].videoWidth, arguments[0].videoHeight]", video) == [160, 120]
    box = browser.find_element(By.CSS_SELECTOR, '#overlay .track-box[data-track="0"]')
    assert not box.is_displayed()  # at 0 s no face is on screen yet

    window = browser.find_elements(By.CSS_SELECTOR, '#timeline g.window[data-track="0"]')[3]
    start = float(window.get_attribute("data-start-s"))
    window.click()
    wait_for(lambda: abs(js("return arguments[0].currentTime", video) - start) < 1e-3
             and not js("return arguments[0].seeking", video), timeout=30, what="the video to seek to the window")

    (t0, first), (t1, last) = TRACK0_BOXES
    f = (start - t0) / (t1 - t0)
    expected = [a + (b - a) * f for a, b in zip(first, last)]
    scale = js("return arguments[0].clientWidth", video) / 160
    wait_for(box.is_displayed, timeout=10, what="track 0's box")
    origin, drawn = video.rect, box.rect
    assert drawn["x"] - origin["x"] == pytest.approx(expected[0] * scale, abs=2)
    assert drawn["y"] - origin["y"] == pytest.approx(expected[1] * scale, abs=2)
    assert drawn["width"] == pytest.approx((expected[2] - expected[0]) * scale, abs=2)
    assert box.text == "track 0 91%"
    assert box.value_of_css_property("border-top-color") in (
        "rgb({}, {}, {})".format(*probability_colour(0.91)), "rgba({}, {}, {}, 1)".format(*probability_colour(0.91)))
    playhead = browser.find_element(By.ID, "playhead")
    assert float(playhead.get_attribute("x1")) == pytest.approx(52 + 692 * start / 2.0, abs=0.5)

    js("arguments[0].play()", video)
    wait_for(lambda: float(playhead.get_attribute("x1")) > 52 + 692 * (start + 0.2) / 2.0, timeout=30,
             what="the playhead to move while the video plays")
    browser.save_screenshot("/tmp/deepfake-job-player.png")
    refused = [entry["message"] for entry in browser.get_log("browser") if "Content Security Policy" in entry["message"]]
    assert refused == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_upload_refused_by_the_rate_limit_is_sent_again_after_retry_after(settings, browser, video_clip,
                                                                            redis_url, task_queue):
    """upload.js, like batch.js: a 429 is waited out (the test stands in for the minute passing), not shown as a failure."""
    import time
    import uuid
    from dataclasses import replace

    import redis
    import requests
    from selenium.webdriver.common.by import By

    from tests.web.conftest import build_app

    limiter = redis.Redis.from_url(redis_url)
    for _ in range(3):  # a run straddling a minute boundary sees no 429: run again with a fresh owner
        owner, window = f"busy-{uuid.uuid4().hex[:8]}", int(time.time() // 60)
        app = build_app(replace(settings, rate_limit_per_minute=1, owner=owner))
        with running_server(app) as url:
            requests.post(f"{url}/api/v1/batches", json={"name": "uses this minute's one write"}, timeout=30)
            browser.get(url + "/")
            browser.execute_script(_HOLD_TIMERS)
            browser.find_element(By.ID, "video").send_keys(str(video_clip))
            browser.find_element(By.ID, "submit").click()
            wait_for(lambda: "/jobs/" in browser.current_url
                     or browser.execute_script("return window.__waits.length"), timeout=30,
                     what="the job page or a wait")
            waits = [] if "/jobs/" in browser.current_url else browser.execute_script("return window.__waits")
            if waits:
                busy = browser.find_element(By.ID, "upload-percent").text
                assert browser.find_element(By.ID, "upload-error").is_displayed() is False
                limiter.delete(*limiter.keys(f"deepfake:rate:{task_queue}:{owner}:*"))  # the minute passes
                browser.execute_script("window.__resume()")
                wait_for(lambda: "/jobs/" in browser.current_url, timeout=30, what="the job page")
        app.extensions["deepfake.db"]["engine"].dispose()
        if waits or int(time.time() // 60) == window:
            break

    [waited_ms] = waits
    assert 1000 <= waited_ms <= 60000
    assert "the server is busy" in busy and "RATE_LIMIT_PER_MINUTE" in busy
