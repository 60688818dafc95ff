"""The app factory and the web's layering: no torch, no worker, nothing built at import time."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO_ROOT


def test_importing_web_builds_nothing():
    code = "import web, sys; print(hasattr(web, 'app'), 'web.api' in sys.modules, 'sqlalchemy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)

    assert out.stdout.split() == ["False", "False", "False"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_serving_a_submission_never_imports_the_engine_torch_or_the_worker(settings, video_clip):
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from dataclasses import replace
        from shared.settings import Settings
        from web import create_app
        settings = replace(Settings(), data_dir=Path({str(settings.data_dir)!r}),
                           database_url={settings.database_url!r}, redis_url={settings.redis_url!r},
                           worker_queues={settings.worker_queues!r})
        client = create_app(settings).test_client()
        with open({str(video_clip)!r}, "rb") as video:
            assert client.post("/api/v1/jobs", data={{"video": (video, "clip.mp4")}}).status_code == 202
        for path in ("/", "/jobs", "/api/v1/jobs", "/api/v1/openapi.json"):
            assert client.get(path).status_code == 200, path
        assert client.get("/readyz").status_code == 503  # no worker alive, no checkpoint: still torch-free
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "cv2", "worker", "openvino")
                       or m == "shared.model" or m.startswith("shared.model."))
        print(heavy)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)

    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_test_config_overrides_settings(settings):
    from web import create_app

    app = create_app(settings, test_config={"ANALYSIS_QUEUE": "elsewhere", "TESTING": True})

    assert app.config["ANALYSIS_QUEUE"] == "elsewhere"
    assert app.config["MAX_UPLOAD_BYTES"] == settings.max_upload_mb * 1024 * 1024
    app.extensions["deepfake.db"]["engine"].dispose()
