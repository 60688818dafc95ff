from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from shared.model.checkpoints import ModelSpec, load_model, save_checkpoint
from shared.errors import DeviceUnavailableError, InvalidOptionsError
from shared.model.networks import resnext_lstm
from shared.model.runtime import build_embedder, cpu_features, native_bf16, native_int8, select_device
from shared.model.runtime.builder import (FAST_TOLERANCE, Measured, fast_cpu_candidates, measure_precisions,
                                          pick_precision)
from shared.model.runtime.calibration import calibration_crops, calibration_windows

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(3)
    spec = ModelSpec(
        name="tiny", kind="resnext-lstm", sequence_length=8, input_size=64, backbone="tiny", hidden_size=16,
        channel_order="BGR", mean=(0.3, 0.4, 0.5), std=(0.2, 0.25, 0.3),
    )
    path = save_checkpoint(resnext_lstm(backbone="tiny", hidden_size=16), spec, tmp_path_factory.mktemp("w") / "tiny.pt")
    return load_model(path)


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    return calibration_crops(size=64, count=24)


def test_select_device() -> None:
    assert select_device("cpu") == CPU
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceUnavailableError, match="unknown device"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailableError, match="--device cpu"):
            select_device("cuda")


def test_cpu_features_read_at_run_time() -> None:
    flags = cpu_features()
    assert f"torch:{torch.backends.cpu.get_cpu_capability()}" in flags
    with open("/proc/cpuinfo") as handle:
        assert ("avx2" in flags) == (" avx2" in handle.read())


def test_native_precision_rules() -> None:
    assert native_bf16({"avx512_bf16"}) and native_bf16({"amx_bf16"}) and not native_bf16({"avx2", "avx512f"})
    assert native_int8({"avx2"}) and native_int8({"avx512_vnni"}) and not native_int8({"sse4_2"})


def test_metadata_drives_preprocessing(tiny, crops) -> None:
    model, spec = tiny
    embedder = build_embedder(model, spec, device=CPU, precision="fp32", backend="torch")
    x = torch.from_numpy(crops[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255  # BGR per the metadata
    x = (x - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model.embed(x)
    torch.testing.assert_close(embedder(crops), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"\(N, 64, 64, 3\)"):
        embedder(np.zeros((2, 112, 112, 3), dtype=np.uint8))
    assert embedder(np.zeros((0, 64, 64, 3), dtype=np.uint8)).shape == (0, model.feature_dim)


def test_batches_give_the_same_features(tiny, crops) -> None:
    model, spec = tiny
    whole = build_embedder(model, spec, device=CPU, precision="fp32", backend="torch", batch_size=64)(crops)
    small = build_embedder(model, spec, device=CPU, precision="fp32", backend="torch", batch_size=5)(crops)
    torch.testing.assert_close(whole, small, rtol=1e-5, atol=1e-5)


def _window_probabilities(embedder, crops) -> torch.Tensor:
    return embedder.fake_probabilities(calibration_windows(embedder(crops), sequence_length=8))


def test_openvino_fp32_matches_pytorch(tiny, crops, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    model, spec = tiny
    reference = build_embedder(model, spec, device=CPU, precision="fp32", backend="torch")
    ov = build_embedder(model, spec, device=CPU, precision="fp32", backend="openvino", cache_dir=tmp_path)
    assert (ov.backend, ov.precision) == ("openvino", "fp32")
    delta = (_window_probabilities(ov, crops) - _window_probabilities(reference, crops)).abs().max().item()
    assert delta <= 1e-5
    assert list(tmp_path.glob("*-fp32.xml"))  # the IR is cached for the next run


def test_two_threads_convert_models_at_once(tiny) -> None:
    """A worker's preload converts the default checkpoint while a job converts another: torch.export's global
    tracing state would fail one of them ("ProxyTorchDispatchMode slot already occupied") unless they take turns."""
    pytest.importorskip("openvino")
    import threading

    from shared.model.runtime.openvino_backend import convert_trunk

    model, spec = tiny
    other = resnext_lstm(backbone="tiny", hidden_size=16).eval()
    start, errors = threading.Barrier(2), []

    def convert(network) -> None:
        start.wait()
        try:
            convert_trunk(network, input_size=spec.input_size)
        except Exception as exc:  # noqa: BLE001 (collected for the assertion)
            errors.append(repr(exc))

    threads = [threading.Thread(target=convert, args=(network,)) for network in (model, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


@pytest.mark.parametrize(("features", "backend", "expected"), [
    ({"sse4_2"}, "auto", []),  # no int8 dot products, no bf16: fp32 only
    ({"avx2"}, "auto", ["int8"]),
    ({"avx2", "avx512_vnni", "avx512_bf16"}, "auto", ["int8", "bf16"]),
    ({"avx2", "amx_bf16"}, "openvino", ["int8", "bf16"]),
    ({"avx512f", "amx_bf16"}, "auto", ["bf16"]),  # AVX-512 without VNNI or AVX2: no native int8
    ({"avx2", "avx512_bf16"}, "torch", []),  # both fast paths need OpenVINO
])
def test_auto_tries_int8_then_bf16_where_the_cpu_runs_them_natively(features, backend, expected) -> None:
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    assert fast_cpu_candidates(features, backend=backend) == expected


def test_auto_picks_the_first_fast_precision_that_agrees_on_this_cpu(tiny, crops, tmp_path: Path) -> None:
    model, spec = tiny
    candidates = fast_cpu_candidates(cpu_features(), backend="auto")  # read as build_embedder reads them
    auto = build_embedder(model, spec, device=CPU, precision="auto", cache_dir=tmp_path)
    # A candidate is passed over only with a precision_fallback warning naming it; the next one is taken.
    passed_over = [w.message.split()[0] for w in auto.warnings if w.code == "precision_fallback"]
    assert passed_over == candidates[: len(passed_over)]
    remaining = candidates[len(passed_over):]
    assert auto.precision == (remaining[0] if remaining else "fp32")

    # ...and |Δp| against plain PyTorch fp32, on the calibration crops auto checks with, says which agree.
    calibration = calibration_crops(size=spec.input_size)
    check = calibration[len(calibration) // 2:]
    reference = _window_probabilities(build_embedder(model, spec, device=CPU, precision="fp32", backend="torch"), check)

    def delta(embedder) -> float:
        return (_window_probabilities(embedder, check) - reference).abs().max().item()

    for precision in passed_over:
        other = build_embedder(model, spec, device=CPU, precision=precision, backend="openvino", cache_dir=tmp_path)
        assert other.precision == precision and delta(other) > FAST_TOLERANCE
    if remaining:
        assert delta(auto) <= FAST_TOLERANCE


def test_bf16_without_native_support_warns(tiny, crops) -> None:
    model, spec = tiny
    embedder = build_embedder(model, spec, device=CPU, precision="bf16", backend="torch")
    assert embedder(crops).dtype == torch.float32
    codes = [w.code for w in embedder.warnings]
    assert ("precision_emulated" in codes) == (not native_bf16(cpu_features()))


def test_int8_on_the_torch_backend_falls_back_with_a_warning(tiny) -> None:
    model, spec = tiny
    embedder = build_embedder(model, spec, device=CPU, precision="int8", backend="torch")
    assert embedder.precision == "fp32" and [w.code for w in embedder.warnings] == ["precision_unsupported"]


@pytest.mark.parametrize("kwargs", [{"precision": "fp8"}, {"backend": "tvm"}, {"batch_size": 0}])
def test_invalid_options(tiny, kwargs) -> None:
    model, spec = tiny
    with pytest.raises(InvalidOptionsError):
        build_embedder(model, spec, device=CPU, **kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_paths_agree_with_cpu(tiny, crops) -> None:
    model, spec = tiny
    reference = _window_probabilities(build_embedder(model, spec, device=CPU, precision="fp32", backend="torch"), crops)
    cuda = torch.device("cuda")
    fp32 = build_embedder(model, spec, device=cuda, precision="fp32")
    assert fp32.trunk.channels_last and fp32.precision == "fp32"
    # GPU kernels sum in another order than the CPU's: same maths, not the same bits
    assert (_window_probabilities(fp32, crops) - reference).abs().max().item() <= 1e-4
    fast = build_embedder(model, spec, device=cuda, precision="auto")
    assert fast.precision in ("fp16", "bf16", "fp32")  # chosen by measurement on this GPU
    assert (_window_probabilities(fast, crops) - reference).abs().max().item() <= FAST_TOLERANCE
    model.to(CPU)


def test_auto_on_a_gpu_takes_the_fastest_precision_within_tolerance() -> None:
    fp32 = Measured("fp32", 1000.0, 0.0)
    assert pick_precision([fp32, Measured("fp16", 3000.0, 0.002), Measured("bf16", 3500.0, 0.004)]) == ("bf16", [])
    chosen, notes = pick_precision([fp32, Measured("fp16", 3000.0, 0.002), Measured("bf16", 3500.0, 0.02)])
    assert chosen == "fp16"
    assert [n.code for n in notes] == ["precision_fallback"] and "bf16" in notes[0].message
    # Not faster (a GPU without fast half-precision units): fp32 stays.
    assert pick_precision([fp32, Measured("fp16", 900.0, 0.001)]) == ("fp32", [])


def test_precisions_are_measured_on_real_crops_against_fp32(tiny) -> None:
    model, spec = tiny
    measured = measure_precisions(model, spec, CPU, ["bf16"], batch_size=4, repeats=1)
    assert [m.precision for m in measured] == ["fp32", "bf16"]
    assert measured[0].delta == 0.0
    assert all(m.crops_per_s > 0 for m in measured)
    # bf16 keeps 8 bits of mantissa: the windows move, a little.
    assert 0.0 < measured[1].delta <= 0.05


def test_a_batch_on_fewer_openvino_streams_gives_the_same_features(tiny, crops, tmp_path: Path) -> None:
    """The consumer runs the trunk on one stream while the producer works beside it, on every stream
    otherwise: the features must not depend on which."""
    pytest.importorskip("openvino")
    model, spec = tiny
    embedder = build_embedder(model, spec, device=CPU, precision="fp32", backend="openvino", cache_dir=tmp_path,
                              threads=2)
    assert len(embedder.trunk.requests) == 2  # one stream per thread
    every = embedder(crops)
    one = embedder(crops, streams=1)
    torch.testing.assert_close(one, every, rtol=0, atol=1e-5)
