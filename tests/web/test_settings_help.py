"""The settings on the upload and batch pages: each explained with its range, from the one declaration the
API document uses; installed checkpoints are a choice by name."""
from __future__ import annotations

import html as html_lib
import re
from dataclasses import replace

import pytest

from shared.model.weights_registry import known_weights
from shared.options import CLIENT_OPTIONS, INT_RANGES, OPTION_HELP, installed_checkpoints
from tests.conftest import wait_for
from tests.web.conftest import build_app
from tests.web.test_browser import browser, live_server  # noqa: F401 (fixtures)

PAGES = ("/", "/batches")


def _hint(page: str, name: str) -> str:
    match = re.search(rf'<p class="hint" id="opt-{name}-help">(.*?)</p>', page, re.S)
    assert match, f"no explanation for {name}"
    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", "", match.group(1))).split())


def _weights_select(page: str) -> list[str]:
    select = re.search(r'<select id="opt-weights" name="weights"[^>]*>(.*?)</select>', page, re.S)
    assert select, "weights is not a <select>"
    return re.findall(r'<option value="([^"]*)"', select.group(1))


@pytest.mark.parametrize("path", PAGES)
def test_every_setting_has_its_explanation_and_range_beside_it(client, path):
    page = client.get(path).text
    for name in CLIENT_OPTIONS:
        hint = _hint(page, name)
        assert " ".join(OPTION_HELP[name].split()) in hint, name
        assert f'aria-describedby="opt-{name}-help"' in page
        if name in INT_RANGES:
            low, high = INT_RANGES[name]
            assert f"Range {low}–{high}" in hint, hint
    assert "Range 1–1000, default 5." in _hint(page, "detect_every")
    assert "One of auto, retinaface, opencv, none, default auto." in _hint(page, "face_detector")


def test_the_api_document_describes_each_option_with_the_same_words(client):
    schema = client.get("/api/v1/openapi.json").json["paths"]["/api/v1/jobs"]["post"]["requestBody"]
    fields = schema["content"]["multipart/form-data"]["schema"]["properties"]
    for name in CLIENT_OPTIONS:
        assert fields[name]["description"] == OPTION_HELP[name]
    assert fields["detect_every"]["default"] == 5 and "default" not in fields["sequence_length"]


@pytest.mark.parametrize("path", PAGES)
def test_installed_checkpoints_are_a_choice_by_name_without_the_face_detector_files(client, settings, path):
    for name in ("model_87_acc_20_frames_final_data.pt", "mine.pth", "Resnet50_Final.pth",
                 "retinaface-mobilenet0.25.onnx", "retinaface-resnet50-copy.pth", "notes.txt"):
        (settings.weights_dir / name).write_bytes(b"x")
    (settings.weights_dir / "folder.pt").mkdir()

    page = client.get(path).text
    assert _weights_select(page) == ["", "mine.pth", "model_87_acc_20_frames_final_data.pt"]
    assert str(settings.weights_dir) not in page  # names, never the server's paths
    assert "2 installed." in _hint(page, "weights")


def test_the_detector_files_the_registry_knows_are_never_offered_and_its_models_are(tmp_path):
    for entry in known_weights():
        for name in entry.filenames:
            (tmp_path / name).write_bytes(b"x")
    offered = installed_checkpoints(tmp_path)
    seeds = sorted(name for entry in known_weights() if entry.family == "seed" for name in entry.filenames
                   if name.endswith((".pt", ".pth")))
    assert offered == seeds and seeds


def test_an_empty_weights_folder_says_jobs_will_fail(client):
    page = client.get("/").text
    assert _weights_select(page) == [""]
    assert "No checkpoint is installed on this server" in _hint(page, "weights")


def test_without_a_weights_folder_the_page_falls_back_to_typing_a_name(settings):
    app = build_app(replace(settings, weights_dir=settings.weights_dir / "absent"))
    page = app.test_client().get("/").text
    assert re.search(r'<input id="opt-weights" name="weights" type="text"', page)
    assert "This server has no weights folder to list: type a checkpoint file name." in _hint(page, "weights")
    app.extensions["deepfake.db"]["engine"].dispose()


@pytest.mark.browser
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_settings_read_well_and_the_chosen_checkpoint_is_submitted(live_server, browser, settings,  # noqa: F811
                                                                         video_clip, session_factory):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from shared.db.models import Job

    (settings.weights_dir / "model_87_acc_20_frames_final_data.pt").write_bytes(b"x")
    (settings.weights_dir / "mine.pt").write_bytes(b"x")
    browser.get(live_server + "/")
    browser.find_element(By.ID, "video").send_keys(str(video_clip))
    browser.find_element(By.CSS_SELECTOR, "details summary").click()
    hint = browser.find_element(By.ID, "opt-detect_every-help")
    assert hint.is_displayed() and "Range 1–1000, default 5." in hint.text
    weights = Select(browser.find_element(By.ID, "opt-weights"))
    assert [o.text for o in weights.options][1:] == ["mine.pt", "model_87_acc_20_frames_final_data.pt"]
    weights.select_by_visible_text("mine.pt")
    browser.save_screenshot("/tmp/deepfake-upload-settings.png")
    browser.find_element(By.ID, "submit").click()
    wait_for(lambda: "/jobs/" in browser.current_url, timeout=30, what="the job page")
    with session_factory() as session:
        job = session.get(Job, browser.current_url.rsplit("/", 1)[-1])
        assert job.params["weights"] == "mine.pt"

    browser.get(live_server + "/batches")
    browser.find_element(By.CSS_SELECTOR, "details summary").click()
    assert "OpenCV detector only" in browser.find_element(By.ID, "opt-full_detect_every-help").text
    browser.save_screenshot("/tmp/deepfake-batches-settings.png")
    refused = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    assert refused == []
