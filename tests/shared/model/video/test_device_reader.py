"""The torchcodec reader: held to VideoReader's frames, times, cuts and refusals on the CPU; NVDEC on CUDA.

The CUDA tests run only where torch sees a GPU; everything else runs through torchcodec's CPU decoder.
"""
from __future__ import annotations

import gc
import os
import weakref
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

from shared.errors import (
    DeviceUnavailableError, InvalidOptionsError, NoDecodableFramesError, NotAVideoError, UnsupportedFormatError,
)
from shared.media import probe_video
from shared.model.types import Reason
from shared.model.video import VideoReader, device_reader
from shared.model.video.device_reader import (
    DecoderChoice, DeviceVideoReader, choose_decoder, hardware_decoding, torchcodec_available,
)
from tests.media import animated_frames, make_face_clip, write_video
from tests.shared.model.test_video import (  # noqa: F401 (clip, long_source, source: fixtures)
    FPS, _cut, _ffmpeg, _mdat_offset, clip, long_source, source,
)

if not torchcodec_available():  # the module imports without it; only the decoding needs it
    pytest.skip("torchcodec is not installed (requirements/gpu.txt)", allow_module_level=True)

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device in this process")


def _read(path: Path, **kwargs) -> tuple[DeviceVideoReader, np.ndarray, np.ndarray, np.ndarray]:
    """The reader after a full pass, with indices, times and (N, H, W, 3) frames on the CPU."""
    reader = DeviceVideoReader(path, **{"device": "cpu", **kwargs})
    batches = list(reader)
    frames = torch.cat([b.frames for b in batches]).permute(0, 2, 3, 1).cpu().numpy()
    return (reader, np.concatenate([b.indices for b in batches]), np.concatenate([b.times_s for b in batches]),
            frames)


def _reference(path: Path, **kwargs) -> tuple[VideoReader, np.ndarray, np.ndarray, np.ndarray]:
    reader = VideoReader(path, **kwargs)
    batches = list(reader)
    return (reader, np.concatenate([b.indices for b in batches]), np.concatenate([b.times_s for b in batches]),
            np.concatenate([b.frames for b in batches]))


# Measured: torchcodec's CPU path and PyAV convert with the same libswscale, so frames are identical (max 0).
CPU_TOLERANCE = 0


def _assert_same_as_reference(path: Path, **kwargs) -> DeviceVideoReader:
    reader, indices, times, frames = _read(path, **kwargs)
    reference, ref_indices, ref_times, ref_frames = _reference(path, **kwargs)
    np.testing.assert_array_equal(indices, ref_indices)
    np.testing.assert_allclose(times, ref_times, atol=1e-6)
    assert frames.shape == ref_frames.shape
    assert int(np.abs(frames.astype(np.int16) - ref_frames).max()) <= CPU_TOLERANCE
    assert reader.frames_decoded == reference.frames_decoded
    return reader


# --- batches, stride, times ----------------------------------------------------------------------
def test_batches_match_the_cpu_reader(clip: Path) -> None:
    reader = DeviceVideoReader(clip, batch_size=8, device="cpu")
    batches = list(reader)
    assert [len(b) for b in batches] == [8, 8, 4]
    for batch in batches:
        assert batch.frames.shape[1:] == (3, 240, 320) and batch.frames.dtype == torch.uint8
        assert batch.frames.device.type == "cpu"
        assert batch.indices.dtype == np.int64 and batch.times_s.dtype == np.float64
    assert reader.decoder_name == "torchcodec-cpu" and reader.output_size() == (320, 240)
    assert reader.problems == [] and reader.fallback is None
    _assert_same_as_reference(clip, batch_size=8)


def test_frame_stride_keeps_every_kth_frame(clip: Path) -> None:
    _, _, _, every = _read(clip)
    reader, indices, times, strided = _read(clip, frame_stride=3, batch_size=4)
    np.testing.assert_array_equal(indices, np.arange(0, 20, 3))
    np.testing.assert_allclose(times, indices / FPS, atol=1e-6)
    np.testing.assert_array_equal(strided, every[indices])
    assert reader.frames_decoded == 20
    _assert_same_as_reference(clip, frame_stride=3, batch_size=4)


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_variable_frame_rate_times_come_from_pts(tmp_path: Path, source: np.ndarray, ext: str) -> None:
    vfr = write_video(
        tmp_path / f"vfr.{ext}", source, fps=FPS,
        extra_args=("-vf", "settb=1/1000,setpts='if(lt(N,10),N*100,1000+(N-10)*263)'",
                    "-fps_mode", "passthrough", "-enc_time_base", "1/1000"),
    )
    reader = _assert_same_as_reference(vfr, batch_size=6)
    assert reader.problems == []


def test_iterating_again_starts_over_and_close_releases_the_file(clip: Path) -> None:
    reader = DeviceVideoReader(clip, batch_size=16, device="cpu")
    assert [b.indices.tolist() for b in reader] == [b.indices.tolist() for b in reader]
    process = psutil.Process()
    with DeviceVideoReader(clip, batch_size=4, device="cpu") as reader:
        batches = iter(reader)
        next(batches)
        assert str(clip) in {f.path for f in process.open_files()}
    assert str(clip) not in {f.path for f in process.open_files()}
    assert next(batches, None) is None


def test_only_the_current_batch_is_alive(clip: Path) -> None:
    alive_counts = []
    owners: list[weakref.ref] = []
    for batch in DeviceVideoReader(clip, batch_size=4, device="cpu"):
        owners.append(weakref.ref(batch.frames))
        del batch
        gc.collect()
        alive_counts.append(sum(ref() is not None for ref in owners))
    assert alive_counts == [1] * 5


class _CountingFile:
    """A file object that counts the bytes torchcodec reads through it."""

    def __init__(self, handle) -> None:
        self._handle = handle
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self.bytes_read += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._handle.seek(offset, whence)


def test_batches_decode_on_without_seeking_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One group of pictures (x264's default keyframe interval exceeds 50 frames): re-seeking for each batch
    # would read the file from its start again for every batch. Noise keeps the file far larger than FFmpeg's
    # read buffer (a seek inside that buffer reads nothing, so a small file would hide the re-reading).
    path = make_face_clip(tmp_path / "one_gop.mp4", seconds=2.0, fps=25.0, extra_args=("-vf", "noise=alls=40:allf=t"))
    assert path.stat().st_size > 1_000_000
    opened: list[_CountingFile] = []
    original = device_reader._open_probed

    @contextmanager
    def counting(*args):
        with original(*args) as handle:
            opened.append(_CountingFile(handle))
            yield opened[-1]

    monkeypatch.setattr(device_reader, "_open_probed", counting)
    read = {}
    for batch_size in (2, 50):
        assert sum(len(b) for b in DeviceVideoReader(path, batch_size=batch_size, device="cpu")) == 50
        read[batch_size] = opened[-1].bytes_read
    # Once to index the frames, once to decode them (plus FFmpeg's probing): the same for 25 batches or one.
    assert read[2] == read[50] < 3 * path.stat().st_size


def test_torchcodec_is_given_a_file_object_not_a_name(clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchcodec.decoders

    sources = []
    original = torchcodec.decoders.VideoDecoder

    def spy(source, **kwargs):
        sources.append(source)
        return original(source, **kwargs)

    monkeypatch.setattr(torchcodec.decoders, "VideoDecoder", spy)
    list(DeviceVideoReader(clip, device="cpu"))
    assert len(sources) == 1 and not isinstance(sources[0], (str, bytes, os.PathLike))


# --- rotation and odd sizes ---------------------------------------------------------------------
@pytest.mark.parametrize("tag", [90, 180, 270])
def test_rotated_clip_is_upright_like_the_cpu_reader(tmp_path: Path, clip: Path, tag: int) -> None:
    rotated = tmp_path / "rotated.mp4"
    _ffmpeg("-i", str(clip), "-c", "copy", "-metadata:s:v:0", f"rotate={tag}", str(rotated))
    info = probe_video(rotated)
    assert info.rotation in (90, 180, 270)
    reader, _, _, upright = _read(rotated)
    assert upright.shape == (20, info.height, info.width, 3) and reader.output_size() == (info.width, info.height)
    _, _, _, stored = _read(clip)
    np.testing.assert_array_equal(upright, np.rot90(stored, k=-info.rotation // 90, axes=(1, 2)))
    _assert_same_as_reference(rotated)


def test_odd_frame_size(tmp_path: Path) -> None:
    odd = animated_frames(photos=("astronaut",), width=321, height=239, count=5)
    path = write_video(tmp_path / "odd.mkv", odd, fps=FPS, codec="ffv1", pix_fmt="yuv444p")
    _assert_same_as_reference(path)


# --- cut and undecodable files ------------------------------------------------------------------
@pytest.mark.parametrize(("ext", "extra", "approx"), [
    ("mp4", ("-g", "10", "-movflags", "+faststart"), ""),
    ("mkv", ("-g", "10"), "~"),
])
def test_file_cut_midway_yields_what_decodes_and_says_so(
    tmp_path: Path, long_source: np.ndarray, ext: str, extra: tuple[str, ...], approx: str
) -> None:
    whole = write_video(tmp_path / f"whole.{ext}", long_source, fps=10.0, extra_args=extra)
    cut = _cut(whole, tmp_path / f"cut.{ext}", 0.55)
    reader = _assert_same_as_reference(cut, batch_size=8)
    decoded = reader.frames_decoded
    assert 0 < decoded < 40
    [truncated] = [p for p in reader.problems if p.code == "truncated"]
    assert truncated.message.startswith(f"decoding stopped at frame {decoded} of {approx}40: ")
    assert truncated.message.endswith("the rest was not analysed")
    assert ".cpp:" not in truncated.message  # torchcodec's source location is not for people


def test_complete_files_report_no_problem(tmp_path: Path, long_source: np.ndarray) -> None:
    for ext in ("mp4", "mkv"):
        reader, indices, _, _ = _read(write_video(tmp_path / f"whole.{ext}", long_source, fps=10.0))
        assert reader.problems == [] and len(indices) == 40


def test_nothing_decodable_is_a_typed_error(tmp_path: Path, long_source: np.ndarray) -> None:
    whole = write_video(tmp_path / "whole.mp4", long_source, fps=10.0, extra_args=("-movflags", "+faststart"))
    info = probe_video(whole)
    whole.write_bytes(whole.read_bytes()[:_mdat_offset(whole) + 16])
    with pytest.raises(NoDecodableFramesError, match="no frame of .* could be decoded"):
        list(DeviceVideoReader(whole, info=info, device="cpu"))


# --- refusals -----------------------------------------------------------------------------------
def _hostile(tmp_path: Path, clip: Path, kind: str) -> Path | str:
    if kind == "directory":
        return tmp_path
    if kind == "fifo":
        os.mkfifo(tmp_path / "video.mp4")
        return tmp_path / "video.mp4"
    if kind == "symlink to a fifo":
        os.mkfifo(tmp_path / "pipe")
        (tmp_path / "link.mp4").symlink_to(tmp_path / "pipe")
        return tmp_path / "link.mp4"
    if kind == "url":
        return "http://example.com/video.mp4"
    if kind == "empty":
        (tmp_path / "empty.mp4").touch()
        return tmp_path / "empty.mp4"
    if kind == "hls playlist":
        (tmp_path / "list.mp4").write_text(f"#EXTM3U\n#EXTINF:1,\n{clip}\n")
        return tmp_path / "list.mp4"
    if kind == "concat list":
        (tmp_path / "list.mp4").write_text(f"ffconcat version 1.0\nfile '{clip}'\n")
        return tmp_path / "list.mp4"
    raise AssertionError(kind)


@pytest.mark.parametrize(("kind", "error"), [
    ("directory", UnsupportedFormatError),
    ("fifo", UnsupportedFormatError),
    ("symlink to a fifo", UnsupportedFormatError),
    ("url", UnsupportedFormatError),
    ("empty", NotAVideoError),
    ("hls playlist", UnsupportedFormatError),
    ("concat list", UnsupportedFormatError),
])
def test_hostile_inputs_are_refused_as_the_cpu_reader_refuses_them(
    tmp_path: Path, clip: Path, kind: str, error: type[Exception]
) -> None:
    path = _hostile(tmp_path, clip, kind)
    with pytest.raises(error) as expected:
        VideoReader(path)
    with pytest.raises(error) as refused:
        DeviceVideoReader(path, device="cpu")
    assert str(refused.value) == str(expected.value)


def test_a_file_swapped_after_the_probe_is_refused(tmp_path: Path, clip: Path) -> None:
    path = tmp_path / "video.mp4"
    path.write_bytes(clip.read_bytes())
    reader = DeviceVideoReader(path, device="cpu")
    path.unlink()
    path.write_text(f"#EXTM3U\n#EXTINF:1,\n{clip}\n")
    with pytest.raises(UnsupportedFormatError, match="changed after it was checked"):
        list(reader)


def test_invalid_options(clip: Path) -> None:
    for kwargs in ({"batch_size": 0}, {"frame_stride": 0}, {"batch_size": 2.5}, {"device": "meta"}):
        with pytest.raises(InvalidOptionsError):
            DeviceVideoReader(clip, **{"device": "cpu", **kwargs})


# --- choosing the decoder -------------------------------------------------------------------------
@pytest.fixture
def with_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_reader, "hardware_decoding", lambda device: (True, ""))


@pytest.mark.parametrize(("ext", "codec", "pix_fmt"), [
    ("mp4", "libx264", "yuv420p"),
    ("webm", "libvpx-vp9", "yuv420p"),
    ("avi", "mpeg4", "yuv420p"),
])
def test_nvdec_takes_the_codecs_it_decodes(tmp_path: Path, with_hardware: None, ext: str, codec: str,
                                           pix_fmt: str) -> None:
    path = make_face_clip(tmp_path / f"clip.{ext}", seconds=0.5, codec=codec, pix_fmt=pix_fmt)
    assert choose_decoder(probe_video(path), "cuda") == DecoderChoice("nvdec")


@pytest.mark.parametrize(("ext", "codec", "pix_fmt", "why"), [
    ("mov", "prores_ks", "yuv422p10le", "prores is not decoded by NVDEC"),
    ("mkv", "ffv1", "yuv420p", "ffv1 is not decoded by NVDEC"),
    ("avi", "mjpeg", "yuvj420p", "mjpeg is not decoded by NVDEC"),
    ("mpg.ts", "mpeg2video", "yuv420p", "mpeg2video is not decoded by NVDEC"),
    ("mp4", "libx264", "yuv444p", "h264 in yuv444p (chroma not 4:2:0) is not decoded by every NVDEC"),
    ("mp4", "libx264", "yuv422p", "h264 in yuv422p (chroma not 4:2:0) is not decoded by every NVDEC"),
    ("mp4", "libx264", "yuv420p10le", "10-bit h264 (yuv420p10le) is not decoded by NVDEC"),
])
def test_other_files_are_decoded_on_the_cpu_with_a_reason(
    tmp_path: Path, with_hardware: None, ext: str, codec: str, pix_fmt: str, why: str
) -> None:
    path = make_face_clip(tmp_path / f"clip.{ext}", seconds=0.5, codec=codec, pix_fmt=pix_fmt)
    choice = choose_decoder(probe_video(path), "cuda")
    assert choice == DecoderChoice("cpu", Reason("cpu_decoding", f"{why}; frames were decoded on the CPU"))


def test_without_hardware_decoding_the_cpu_decodes_and_says_why(
    clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    why = "CUDA is not available to this process"
    monkeypatch.setattr(device_reader, "hardware_decoding", lambda device: (False, why))
    choice = choose_decoder(probe_video(clip), torch.device("cuda"))
    assert choice == DecoderChoice("cpu", Reason("cpu_decoding", f"{why}; frames were decoded on the CPU"))
    assert choose_decoder(probe_video(clip), "cpu") == DecoderChoice("cpu")  # a CPU worker: nothing to report


def test_hardware_decoding_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import torchcodec

    assert hardware_decoding("cpu") == (False, "the analysis runs on cpu, not a CUDA device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torchcodec, "__version__", "0.17.0+cpu")
    assert hardware_decoding("cuda") == (False, "torchcodec 0.17.0+cpu was built without CUDA")
    monkeypatch.setattr(torchcodec, "__version__", "0.17.0+cu126")
    assert hardware_decoding("cuda") == (False, "torchcodec was built for CUDA 12.6 but torch for CUDA 13.0")
    monkeypatch.setattr(torchcodec, "__version__", "0.17.0+cu130")
    assert hardware_decoding("cuda") == (True, "")
    monkeypatch.setattr(device_reader, "torchcodec_available", lambda: False)
    assert hardware_decoding("cuda") == (False, "torchcodec is not installed (requirements/gpu.txt)")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_a_cuda_reader_without_cuda_is_refused(clip: Path) -> None:
    with pytest.raises(DeviceUnavailableError, match="CUDA is not available"):
        DeviceVideoReader(clip, device="cuda")


# --- NVDEC (CUDA machines only) -----------------------------------------------------------------
@requires_cuda
def test_nvdec_frames_stay_on_the_gpu_and_match_the_cpu_reader(clip: Path) -> None:
    reader = DeviceVideoReader(clip, batch_size=8, device="cuda")
    batches = list(reader)
    assert reader.decoder_name == "nvdec" and reader.fallback is None and reader.problems == []
    assert all(b.frames.device.type == "cuda" for b in batches)
    frames = torch.cat([b.frames for b in batches]).permute(0, 2, 3, 1).cpu().numpy()
    _, indices, times, reference = _reference(clip, batch_size=8)
    np.testing.assert_array_equal(np.concatenate([b.indices for b in batches]), indices)
    np.testing.assert_allclose(np.concatenate([b.times_s for b in batches]), times, atol=1e-6)
    # NVDEC's colour conversion is not libswscale's: close, not equal (not yet measured on a GPU here).
    assert float(np.abs(frames.astype(np.int16) - reference).mean()) < 3


@requires_cuda
def test_nvdec_rotated_clip_is_upright(tmp_path: Path, clip: Path) -> None:
    rotated = tmp_path / "rotated.mp4"
    _ffmpeg("-i", str(clip), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rotated))
    batches = list(DeviceVideoReader(rotated, device="cuda"))
    assert batches[0].frames.shape[1:] == (3, 320, 240)


@requires_cuda
def test_nvdec_reports_torchcodecs_own_cpu_fallback(tmp_path: Path) -> None:
    path = make_face_clip(tmp_path / "clip.mkv", seconds=0.5, codec="ffv1", pix_fmt="yuv420p")
    reader = DeviceVideoReader(path, device="cuda")
    assert sum(len(b) for b in reader) == 5
    assert reader.decoder_name == "torchcodec-cpu" and reader.fallback.code == "cpu_decoding"
