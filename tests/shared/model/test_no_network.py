"""Nothing phones home: a whole `deepfake analyze` (OpenVINO conversion, NNCF int8 quantization)
opens no network connection, looks up no host name, and writes only where it was told to.

OpenVINO and NNCF send usage telemetry on import and on conversion unless stopped; the engine
stops it in `shared.model.runtime.openvino_loader`, the one place that imports them.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from shared.model.checkpoints import ModelSpec, save_checkpoint
from shared.model.networks import resnext_lstm
from tests.media import make_face_clip

ROOT = Path(__file__).resolve().parents[3]
NETWORK_EVENTS = ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
                  "socket.sendto", "socket.sendmsg")

# Runs `deepfake analyze` in-process after an audit hook that logs every network event (in forked
# children too: OpenVINO's telemetry sends from a forked process).
WRAPPER = f"""
import os, sys
LOG = os.environ["NETWORK_LOG"]
def hook(event, args):
    if event in {NETWORK_EVENTS!r}:
        with open(LOG, "a") as log:
            log.write(f"{{os.getpid()}} {{event}} {{args!r}}\\n")
sys.addaudithook(hook)
from cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small checkpoint: the same conversion and quantization code as the real one, in seconds."""
    torch.manual_seed(5)
    spec = ModelSpec(name="tiny", kind="resnext-lstm", sequence_length=4, input_size=64, backbone="tiny",
                     hidden_size=16)
    folder = tmp_path_factory.mktemp("weights")
    save_checkpoint(resnext_lstm(backbone="tiny", hidden_size=16), spec, folder / "tiny.pt")
    return folder


@pytest.mark.slow
def test_analyze_makes_no_network_connection_and_writes_only_where_told(tmp_path, weights_dir):
    home, cwd, temp, data, art = (tmp_path / name for name in ("home", "cwd", "tmp", "data", "artifacts"))
    for folder in (home, cwd, temp):
        folder.mkdir()
    clip = make_face_clip(tmp_path / "clip.mp4", seconds=1.0, fps=10, width=320, height=240)
    log = tmp_path / "network.log"
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(temp), "NETWORK_LOG": str(log), "PYTHONPATH": str(ROOT),
           "WEIGHTS_DIR": str(weights_dir), "DATA_DIR": str(data)}
    for name in ("CI", "NNCF_CI", "MODEL_CACHE_DIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "MPLCONFIGDIR"):
        env.pop(name, None)  # nothing that would hide a telemetry call or move a write
    # int8 so that NNCF is imported and quantizes on every CPU; opencv: the detector needing no weights
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, "analyze", str(clip), "--json", "--weights", "tiny.pt",
         "--precision", "int8", "--device", "cpu", "--face-detector", "opencv", "--artifacts-dir", str(art)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert '"verdict"' in done.stdout
    assert not log.exists(), f"network activity:\n{log.read_text()}"
    # shared/model/heatmaps.py imports matplotlib, whose import makes an empty ~/.config/matplotlib:
    # the one thing tolerated under HOME until it does not (then this becomes `== []`).
    assert set(files_under(home)) <= {".config", ".config/matplotlib"}, "wrote under HOME (~/intel: OpenVINO)"
    assert not any(p.is_file() for p in home.rglob("*"))
    assert files_under(cwd) == []
    # torch.export makes its (empty) cache folder torchinductor_<user> in the temporary folder
    assert not any(p.is_file() for p in temp.rglob("*")), files_under(temp)
    assert all(name == "cache" or name.startswith("cache/models") for name in files_under(data))
    assert any(re.search(r"-int8\.xml$", name) for name in files_under(data))


def test_only_the_loader_imports_openvino_or_nncf():
    """Every import goes through `openvino_loader`, which turns telemetry off first."""
    pattern = re.compile(r"^\s*(import|from)\s+(openvino|nncf)\b", re.MULTILINE)
    offenders = [str(path.relative_to(ROOT)) for path in sorted((ROOT / "shared").rglob("*.py"))
                 if pattern.search(path.read_text()) and path.name != "openvino_loader.py"]
    assert offenders == []
