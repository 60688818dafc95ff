"""The model cache: one process builds while the others wait, files appear whole, bad files are rebuilt."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shared.model.runtime.model_cache import cached_ir, writable_dir, write_text_atomically
from shared.model.runtime.openvino_loader import import_openvino

ROOT = Path(__file__).resolve().parents[3]

# One process of the race: builds a small model slowly (logging each build), then runs it.
RACER = """
import sys, time
from pathlib import Path
import numpy as np
from shared.model.runtime.model_cache import cached_ir
from shared.model.runtime.openvino_loader import import_openvino
from tests.shared.model.test_model_cache import small_model
path, builds, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
while not go.exists():
    time.sleep(0.01)
def make():
    with open(builds, "a") as log:
        log.write("built\\n")
    time.sleep(1.5)  # a long conversion: the other process must wait, not build too
    return small_model()
model = cached_ir(path, make)
out = import_openvino().Core().compile_model(model, "CPU")(np.ones((1, 64), np.float32))[0]
print(float(out.sum()))
"""


def small_model():
    """A 64→256 matrix product with fixed weights (1 MiB .bin), built without torch."""
    ov = import_openvino()
    ops = ov.opset13
    weights = np.random.default_rng(0).standard_normal((64, 4096)).astype(np.float32)
    data = ops.parameter([-1, 64], np.float32, name="data")
    product = ops.matmul(data, ops.constant(weights, name="weights"), False, False, name="product")
    result = ops.result(product, name="result")
    return ov.Model([result], [data], "small")  # every node named: the same files on every build


def run(model) -> np.ndarray:
    return import_openvino().Core().compile_model(model, "CPU")(np.ones((1, 64), np.float32))[0]


class Maker:
    """`make` for cached_ir that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return small_model()


def test_two_processes_build_one_model_and_both_load_it(tmp_path):
    path, builds, go = tmp_path / "cache" / "small.xml", tmp_path / "builds.log", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(path), str(builds), str(go)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    go.touch()  # both start together, after their imports
    results = [racer.communicate(timeout=120) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], [err for _, err in results]
    assert builds.read_text().splitlines() == ["built"]
    expected = float(run(small_model()).sum())
    assert [float(out) for out, _ in results] == pytest.approx([expected, expected])
    assert sorted(p.name for p in path.parent.iterdir()) == ["small.bin", "small.lock", "small.xml"]


@pytest.mark.parametrize("damaged", ["small.bin", "small.xml"])
@pytest.mark.parametrize("keep", [0.5, 0.0])
def test_a_truncated_cache_file_is_rebuilt(tmp_path, damaged, keep):
    path = tmp_path / "small.xml"
    make = Maker()
    expected = run(cached_ir(path, make))
    target = tmp_path / damaged
    intact = target.read_bytes()
    target.write_bytes(intact[: int(len(intact) * keep)])
    again = cached_ir(path, make)
    assert make.calls == 2
    np.testing.assert_array_equal(run(again), expected)
    assert target.read_bytes() == intact  # written again, whole
    np.testing.assert_array_equal(run(cached_ir(path, make)), expected)
    assert make.calls == 2  # and read from now on


def test_a_model_cached_once_is_read_not_rebuilt(tmp_path):
    make = Maker()
    first = run(cached_ir(tmp_path / "small.xml", make))
    np.testing.assert_array_equal(run(cached_ir(tmp_path / "small.xml", make)), first)
    assert make.calls == 1
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]  # no partial files left behind


def test_an_unusable_cache_folder_only_costs_the_conversion(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    make = Maker()
    model = cached_ir(blocker / "cache" / "small.xml", make)
    assert make.calls == 1 and run(model).shape == (1, 4096)
    assert writable_dir(blocker / "cache") is None
    assert write_text_atomically(blocker / "cache" / "record.json", "{}") is False
    assert cached_ir(None, make) is not None and make.calls == 2  # None: no caching at all


def test_model_cache_dir_defaults_under_data_dir_and_can_be_moved():
    from shared.settings import Settings

    assert Settings.from_env({"DATA_DIR": "/srv/data"}).model_cache_dir == Path("/srv/data/cache/models")
    moved = Settings.from_env({"DATA_DIR": "/srv/data", "MODEL_CACHE_DIR": "/cache"})
    assert moved.model_cache_dir == Path("/cache")
    assert Settings(data_dir=Path("/d")).model_cache_dir == Path("/d/cache/models")


def test_the_engine_keeps_converted_models_in_model_cache_dir_not_beside_the_weights(tmp_path):
    import torch

    from shared.model.checkpoints import ModelSpec, save_checkpoint
    from shared.model.networks import resnext_lstm
    from shared.model.pipeline import EngineCache
    from shared.options import AnalysisOptions
    from shared.settings import Settings

    torch.manual_seed(4)
    spec = ModelSpec(name="tiny", kind="resnext-lstm", sequence_length=4, input_size=64, backbone="tiny",
                     hidden_size=16)
    weights = tmp_path / "weights"
    save_checkpoint(resnext_lstm(backbone="tiny", hidden_size=16), spec, weights / "tiny.pt")
    settings = Settings(weights_dir=weights, data_dir=tmp_path / "data")
    options = AnalysisOptions.from_mapping({"weights": "tiny.pt", "device": "cpu", "precision": "fp32",
                                            "face_detector": "none"})
    EngineCache(settings).get(options)
    cache = settings.model_cache_dir
    assert len(list(cache.glob("*-fp32.xml"))) == 1
    assert list((cache / "compiled").glob("*.blob"))  # OpenVINO's compiled model, imported next time
    assert [p.name for p in weights.iterdir()] == ["tiny.pt"]


DAY = 86_400


def _age(path: Path, days: float) -> None:
    when = os.stat(path).st_mtime - days * DAY
    os.utime(path, (when, when))


def test_models_unused_past_the_keep_time_are_pruned_and_a_read_keeps_one(tmp_path):
    """Each checkpoint once tried left its converted forms for good; now what no process read for
    MODEL_CACHE_KEEP_DAYS goes, .xml with its .bin, and what a process reads is marked used."""
    from shared.model.runtime.model_cache import prune_model_cache

    make = Maker()
    used, stale = tmp_path / "used.xml", tmp_path / "stale.xml"
    cached_ir(used, make)
    cached_ir(stale, make)
    record = tmp_path / "stale-openvino-int8.delta.json"
    write_text_atomically(record, "{}")
    compiled = tmp_path / "compiled" / "1234.blob"
    compiled.parent.mkdir()
    compiled.write_bytes(b"blob")
    partial = tmp_path / ".used.123.tmp.xml"  # a process died writing it
    partial.write_bytes(b"<half")
    for path in (used, used.with_suffix(".bin"), stale, stale.with_suffix(".bin"), record, compiled, partial):
        _age(path, 40)
    cached_ir(used, make)  # read today: marked used
    assert make.calls == 2

    removed, freed = prune_model_cache(tmp_path, keep_days=30)

    assert used.exists() and used.with_suffix(".bin").exists()
    assert not any(p.exists() for p in (stale, stale.with_suffix(".bin"), record, compiled, partial))
    assert not partial.with_suffix(".lock").exists()  # a partial file is removed, never locked like a model
    assert removed == 5 and freed > 1_000_000  # the stale .bin holds the 1 MiB of weights
    np.testing.assert_array_equal(run(cached_ir(used, make)), run(small_model()))
    assert make.calls == 2
    assert prune_model_cache(tmp_path, keep_days=0) == (0, 0)  # 0: never pruned


def test_a_model_being_built_is_not_pruned(tmp_path):
    import fcntl

    from shared.model.runtime.model_cache import prune_model_cache

    busy = tmp_path / "busy.xml"
    cached_ir(busy, Maker())
    _age(busy, 40)
    with open(busy.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a building process holds it
        assert prune_model_cache(tmp_path, keep_days=30) == (0, 0)
    assert busy.exists() and busy.with_suffix(".bin").exists()
    assert prune_model_cache(tmp_path, keep_days=30)[0] == 2
