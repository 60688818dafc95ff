"""The worker's parent process stays free of torch (and so of CUDA) until a task runs."""
from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_building_the_celery_app_imports_no_torch():
    code = ("import sys; from shared.settings import Settings; from worker.celery_app import make_celery;"
            "app = make_celery(Settings(redis_url='redis://127.0.0.1:6379/0'));"
            "assert 'deepfake.analyze_job' in app.tasks; print('torch' in sys.modules, 'cv2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_celery_app_settings_carry_the_delivery_guarantees():
    from shared.settings import Settings
    from worker.celery_app import make_celery

    app = make_celery(Settings(redis_url="redis://127.0.0.1:6379/0", worker_queues=("gpu", "analysis")))
    conf = app.conf
    assert (conf.task_acks_late, conf.task_reject_on_worker_lost, conf.worker_prefetch_multiplier) == (True, True, 1)
    assert conf.task_routes["deepfake.analyze_job"] == {"queue": "gpu"}
    app.close()
