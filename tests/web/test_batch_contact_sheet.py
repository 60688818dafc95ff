"""The batch page's contact sheet: each analysed file's most suspicious face, most suspicious first, each
linking to its job page, read with one query for the whole batch."""
from __future__ import annotations

import io
import re
from dataclasses import replace

import pytest
from sqlalchemy import event

from shared.db import batches as batch_store
from shared.model.result import Artifact
from tests.conftest import wait_for
from tests.web.conftest import engine_result, move_job
from tests.web.test_browser import browser, live_server  # noqa: F401 (fixtures)


def _face_png(colour: tuple[int, int, int]) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (112, 112), colour).save(out, format="PNG")
    return out.getvalue()


def _faces(track: int, colour: tuple[int, int, int]) -> list[Artifact]:
    """What the engine writes: a heatmap and a face per ranked window, rank 1 the most suspicious."""
    return [Artifact(f"rank{rank}-track{track}-f{8 * rank}-{kind}.png", "image/png", _face_png(colour), track,
                     f"{kind}, track {track}, rank {rank}")
            for rank in (1, 2, 10) for kind in ("heatmap", "face")]


def _batch_with_items(session_factory, settings, items) -> tuple[str, dict[str, str]]:
    """A batch whose items end as given: file name → (status, result)."""
    with session_factory() as session:
        batch = batch_store.create_batch(session=session, owner=settings.owner, name="night", params={})
        ids = {}
        for name in items:
            job = batch_store.add_item(session=session, batch=batch, upload_name=name, stored_name=f"{name}.bin",
                                       upload_size=1, upload_sha256="0" * 64, lane="batch")
            ids[name] = job.id
        session.commit()
        batch_id = batch.id
    for name, (status, result) in items.items():
        if status != "queued":
            move_job(session_factory, settings, ids[name], status, result=result)
    return batch_id, ids


def _items(count: int = 1) -> dict:
    items = {
        "calm.mp4": ("succeeded", replace(engine_result(verdict="REAL", probability=0.3), artifacts=_faces(2, (40, 160, 90)))),
        "worst.mp4": ("succeeded", replace(engine_result(verdict="FAKE", probability=0.95), artifacts=_faces(4, (200, 40, 40)))),
        "unsure.mp4": ("succeeded", replace(engine_result(verdict="INCONCLUSIVE", probability=0.6), artifacts=_faces(0, (220, 150, 30)))),
        "noface.mp4": ("succeeded", replace(engine_result(verdict="INCONCLUSIVE"), fake_probability=None, tracks=[], artifacts=[])),
        "broken.mp4": ("failed", None),
        "waiting.mp4": ("queued", None),
    }
    for extra in range(count - 1):
        items[f"more-{extra}.mp4"] = ("succeeded", replace(engine_result(verdict="REAL", probability=0.1),
                                                           artifacts=_faces(1, (90, 90, 90))))
    return items


def _cards(html: str) -> list[str]:
    return re.findall(r'<li class="sheet-card">(.*?)</li>', html, re.S)


def test_the_sheet_shows_each_analysed_files_most_suspicious_face_most_suspicious_first(
        client, session_factory, settings):
    batch_id, ids = _batch_with_items(session_factory, settings, _items())
    html = client.get(f"/batches/{batch_id}").text

    cards = _cards(html)
    files = [re.search(r'<span class="sheet-file">(.*?)</span>', card).group(1) for card in cards]
    assert files == ["worst.mp4", "unsure.mp4", "calm.mp4", "noface.mp4"]  # failed and queued files have none
    for card, name, track in zip(cards, files, (4, 0, 2)):
        assert f'href="/jobs/{ids[name]}"' in card
        assert f'src="/api/v1/jobs/{ids[name]}/artifacts/rank1-track{track}-f8-face.png"' in card
        assert f"track {track}" in card
    assert "no face scored" in cards[3] and "<img" not in cards[3]
    assert "heatmap.png" not in html and "rank2-" not in html and "rank10-" not in html
    assert 'verdict-fake">FAKE' in cards[0] and "95%" in cards[0]

    face = client.get(f"/api/v1/jobs/{ids['worst.mp4']}/artifacts/rank1-track4-f8-face.png")
    assert face.status_code == 200 and face.mimetype == "image/png"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_page_reads_the_same_number_of_queries_for_a_larger_batch(client, app, session_factory, settings):
    engine = app.extensions["deepfake.db"]["engine"]

    def queries_for(batch_id: str) -> int:
        statements = []
        listener = lambda *args: statements.append(args[2])  # noqa: E731 (before_cursor_execute's statement)
        event.listen(engine, "before_cursor_execute", listener)
        try:
            assert client.get(f"/batches/{batch_id}").status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        return len(statements)

    small, _ = _batch_with_items(session_factory, settings, _items(count=1))
    large, _ = _batch_with_items(session_factory, settings, _items(count=8))
    assert len(_cards(client.get(f"/batches/{large}").text)) == 11
    assert queries_for(large) == queries_for(small)


@pytest.mark.browser
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_sheet_draws_its_faces_under_the_csp_and_links_to_the_job(live_server, browser, session_factory,  # noqa: F811
                                                                     settings):
    from selenium.webdriver.common.by import By

    batch_id, ids = _batch_with_items(session_factory, settings, _items())
    browser.get(f"{live_server}/batches/{batch_id}")
    images = browser.find_elements(By.CSS_SELECTOR, ".contact-sheet img")
    assert len(images) == 3
    wait_for(lambda: all(browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i)
                         for i in images), timeout=10, what="the faces to load")
    assert [i.get_attribute("naturalWidth") for i in images] == ["112"] * 3
    browser.save_screenshot("/tmp/deepfake-batch-contact-sheet.png")
    refused = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    assert refused == []
    browser.find_elements(By.CSS_SELECTOR, ".contact-sheet a")[0].click()
    wait_for(lambda: browser.current_url.endswith(f"/jobs/{ids['worst.mp4']}"), timeout=10, what="the job page")


@pytest.mark.slow
def test_the_engine_names_its_most_suspicious_face_as_the_sheet_reads_it(tmp_path, video_clip):
    """The contract with shared.model: exactly one face thumbnail per analysis matches TOP_FACE_PATTERN, and it
    is the picture of the highest-scoring window."""
    from shared.model.pipeline import EngineCache, analyze_video
    from shared.options import AnalysisOptions
    from shared.settings import Settings
    from tests.checkpoints import write_seed_checkpoint

    write_seed_checkpoint(tmp_path, sequence_length=4)
    options = AnalysisOptions(precision="fp32", device="cpu", sequence_length=4, window_stride=2, batch_size=8,
                              face_detector="none", heatmaps=3, preview=False)
    result = analyze_video(video_clip, options=options, cache=EngineCache(Settings(weights_dir=tmp_path)))
    pattern = re.compile(batch_store.TOP_FACE_PATTERN.replace("%", ".*").replace(".png", r"\.png") + "$")
    top = [a for a in result.artifacts if pattern.match(a.name)]
    assert len(top) == 1 and len([a for a in result.artifacts if a.name.endswith("-face.png")]) == 3
    best = max((w for t in result.tracks for w in t.windows), key=lambda w: w.fake_probability)
    assert top[0].track_id == best.track_id and f"-f{best.start_frame}-" in top[0].name
