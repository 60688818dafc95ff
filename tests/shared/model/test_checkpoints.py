from __future__ import annotations

import ast
import os
import pickle
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from shared.model.checkpoints import (
    ModelSpec,
    find_checkpoint,
    is_project_checkpoint,
    load_model,
    parse_seed_filename,
    save_checkpoint,
    sha256_file,
)
from shared.errors import CheckpointFormatError, CheckpointMismatchError, WeightsNotFoundError
from shared.model.networks import ResNeXtLSTM, resnext_lstm


def _tiny_spec(**changes) -> ModelSpec:
    values = dict(
        name="tiny-test", kind="resnext-lstm", sequence_length=8, input_size=64, backbone="tiny", hidden_size=16,
        channel_order="RGB", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), threshold=0.6,
        reported_accuracy=71.5, training={"epochs": 2, "dataset": "unit-test"},
    )
    values.update(changes)
    return ModelSpec(**values)


def _touch(path: Path, mtime: float | None = None) -> Path:
    path.write_bytes(b"")
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


@pytest.mark.parametrize(
    "name, expected",
    [
        ("model_87_acc_20_frames_final_data.pt", (87.0, 20)),
        ("model_93_acc_100_frames_final_data.pt", (93.0, 100)),
        ("model_90.5_acc_60_frames_x.pt", (90.5, 60)),
        ("model_87_acc_20_frames_final_data.pth", None),
        ("resnet50.pt", None),
        ("model_acc_20_frames_.pt", None),
    ],
)
def test_parse_seed_filename(name: str, expected) -> None:
    assert parse_seed_filename(name) == expected


def test_find_by_sequence_length_picks_highest_accuracy(tmp_path: Path) -> None:
    for name in ("model_84_acc_20_frames_a.pt", "model_88_acc_20_frames_b.pt", "model_93_acc_100_frames_c.pt"):
        _touch(tmp_path / name)
    assert find_checkpoint(tmp_path, sequence_length=20).name == "model_88_acc_20_frames_b.pt"
    assert find_checkpoint(tmp_path, sequence_length=100).name == "model_93_acc_100_frames_c.pt"
    assert find_checkpoint(tmp_path).name == "model_93_acc_100_frames_c.pt"


def test_find_missing_length_names_what_exists(tmp_path: Path) -> None:
    _touch(tmp_path / "model_84_acc_10_frames_a.pt")
    with pytest.raises(WeightsNotFoundError, match=r"sequence length 40.*\[10\]"):
        find_checkpoint(tmp_path, sequence_length=40)


def test_find_prefers_project_default_then_newest_project(tmp_path: Path) -> None:
    _touch(tmp_path / "model_93_acc_100_frames_c.pt")
    old = save_checkpoint(resnext_lstm(backbone="tiny", hidden_size=16), _tiny_spec(), tmp_path / "old.pt")
    new = save_checkpoint(resnext_lstm(backbone="tiny", hidden_size=16), _tiny_spec(), tmp_path / "new.pt")
    os.utime(old, (time.time() - 100, time.time() - 100))
    _touch(tmp_path / "retinaface_not_ours.pt")
    assert is_project_checkpoint(new) and not is_project_checkpoint(tmp_path / "retinaface_not_ours.pt")
    assert find_checkpoint(tmp_path) == new
    default = save_checkpoint(resnext_lstm(backbone="tiny", hidden_size=16), _tiny_spec(), tmp_path / "default.pt")
    os.utime(default, (time.time() - 200, time.time() - 200))
    assert find_checkpoint(tmp_path) == default


def test_find_by_name_or_path(tmp_path: Path) -> None:
    target = _touch(tmp_path / "mine.pt")
    assert find_checkpoint(tmp_path, name="mine") == target
    assert find_checkpoint(tmp_path, name="mine.pt") == target
    assert find_checkpoint(Path("/nonexistent"), name=str(target)) == target
    with pytest.raises(WeightsNotFoundError, match="other"):
        find_checkpoint(tmp_path, name="other")


def test_a_bare_name_resolves_only_inside_the_weights_dir(tmp_path: Path, monkeypatch) -> None:
    weights, elsewhere = tmp_path / "weights", tmp_path / "cwd"
    weights.mkdir(), elsewhere.mkdir()
    _touch(weights / "notes.txt")
    for name in ("serve.log", "model.pt"):
        _touch(elsewhere / name)
    monkeypatch.chdir(elsewhere)
    errors = []
    for name in ("serve.log", "model.pt", "model", "notes.txt", "notes", "nope.pt"):
        with pytest.raises(WeightsNotFoundError) as error:
            find_checkpoint(weights, name=name)
        errors.append(error.value)
    # Present elsewhere, present but not a checkpoint, absent: one code, and no server path in any message.
    assert {e.code for e in errors} == {"weights_not_found"}
    assert not any(str(tmp_path) in e.message for e in errors)
    assert find_checkpoint(weights, name="./model.pt") == Path("./model.pt")  # a path, as only the CLI may send


def test_nothing_found_says_what_to_do_without_server_paths(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match=r"WEIGHTS_DIR.*deepfake weights fetch") as error:
        find_checkpoint(tmp_path)
    assert str(tmp_path) not in error.value.message
    assert "--weights" not in error.value.message  # API users read it too, and the API takes no paths


def test_project_round_trip_keeps_metadata_and_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = resnext_lstm(backbone="tiny", hidden_size=16).eval()
    spec = _tiny_spec()
    path = save_checkpoint(model, spec, tmp_path / "sub" / "tiny.pt")
    assert not [p for p in path.parent.iterdir() if p.name != "tiny.pt"]  # no temp file left

    loaded, got = load_model(path)
    assert isinstance(loaded, ResNeXtLSTM) and not loaded.training
    assert got.sha256 == sha256_file(path) and got.path == str(path)
    for field in ("name", "kind", "sequence_length", "input_size", "channel_order", "mean", "std", "class_names",
                  "fake_index", "threshold", "backbone", "hidden_size", "reported_accuracy", "training"):
        assert getattr(got, field) == getattr(spec, field), field
    x = torch.randn(2, 3, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_refuses_pickle_with_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "model_87_acc_20_frames_evil.pt"
    torch.save({"model.0.weight": torch.zeros(1), "payload": Evil()}, path)
    with pytest.raises(CheckpointFormatError, match="refused"):
        load_model(path)
    assert not marker.exists()


def test_refuses_raw_pickle(tmp_path: Path) -> None:
    path = tmp_path / "raw.pt"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointFormatError):
        load_model(path)


@pytest.mark.parametrize("content", [b"root:x:0:0:root:/root:/bin/bash\n", b"", b"PK\x03\x04junk",
                                     b"\x80\x02junk", b"\x80\x02]q\x00.", bytes(range(256))])
def test_any_other_file_is_a_typed_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "passwd"
    path.write_bytes(content)
    with pytest.raises(CheckpointFormatError) as error:
        load_model(path)
    assert error.value.code == "checkpoint_invalid" and "\n" not in error.value.message


@pytest.mark.parametrize("change", [{"hidden_size": "x"}, {"sequence_length": None}, {"input_size": -1},
                                    {"threshold": "high"}, {"fake_index": 7}, {"channel_order": 3}])
def test_bad_metadata_values_are_a_typed_error(tmp_path: Path, change: dict) -> None:
    path = save_checkpoint(resnext_lstm(backbone="tiny", hidden_size=16), _tiny_spec(**change), tmp_path / "m.pt")
    with pytest.raises(CheckpointFormatError, match="m.pt"):
        load_model(path)


def test_truncated_file(tmp_path: Path) -> None:
    good = save_checkpoint(resnext_lstm(backbone="tiny", hidden_size=16), _tiny_spec(), tmp_path / "good.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointFormatError, match="bad.pt"):
        load_model(bad)


def test_not_a_dict(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(CheckpointFormatError, match="neither"):
        load_model(path)


def test_state_dict_of_another_model_names_keys(tmp_path: Path) -> None:
    path = tmp_path / "model_87_acc_20_frames_other.pt"
    torch.save(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)).state_dict(), path)
    with pytest.raises(CheckpointMismatchError) as info:
        load_model(path)
    message = info.value.message
    assert "322 missing keys" in message and "model.0.weight" in message
    assert "4 unexpected keys" in message and "0.weight" in message


def test_project_file_with_wrong_shapes(tmp_path: Path) -> None:
    path = save_checkpoint(resnext_lstm(backbone="tiny", hidden_size=32), _tiny_spec(), tmp_path / "lie.pt")
    with pytest.raises(CheckpointMismatchError, match="shape mismatch"):
        load_model(path)


# --- one loader for every file this project unpickles ---------------------------------------------
JUNK = [b"root:x:0:0:root:/root:/bin/bash\n", b"PK\x03\x04junk", b"\x80\x02junk", bytes(range(256))]


def _evil_file(path: Path, marker: Path) -> Path:
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"x.weight": torch.zeros(1), "payload": Evil()}, path)
    return path


def _readers():
    """Each reader of tensor files, with the typed error and code it must raise for a bad file."""
    from shared.model.faces.checkpoint import read_state_dict
    from shared.model.training.backbone import load_backbone_weights
    from shared.model.training.errors import RunStateError
    from shared.model.training.runstate import STATE_FILE, load_state

    return [
        ("classifier", lambda path: load_model(path), CheckpointFormatError, "checkpoint_invalid", "{name}"),
        ("face detector", lambda path: read_state_dict(path), CheckpointFormatError, "checkpoint_invalid", "{name}"),
        ("backbone", lambda path: load_backbone_weights(resnext_lstm(backbone="resnext50_32x4d", hidden_size=8), path),
         CheckpointFormatError, "checkpoint_invalid", "{name}"),
        ("training state", lambda path: load_state(path.parent), RunStateError, "invalid_run", STATE_FILE),
    ]


@pytest.mark.parametrize("reader", range(4))
def test_every_reader_refuses_code_and_junk_with_its_own_typed_error(tmp_path: Path, reader: int) -> None:
    what, read, error_type, code, file_name = _readers()[reader]
    marker = tmp_path / "pwned"
    for index, content in enumerate([None, *JUNK]):
        folder = tmp_path / str(index)
        folder.mkdir()
        path = folder / file_name.format(name="weights.pth")
        if content is None:
            _evil_file(path, marker)
        else:
            path.write_bytes(content)
        with pytest.raises(error_type) as error:
            read(path)
        assert error.value.code == code, (what, content)
        assert not marker.exists()


def test_torch_load_is_called_in_one_place_only() -> None:
    root = Path(__file__).resolve().parents[3]
    calls = [f"{path.relative_to(root)}" for folder in ("shared", "web", "worker", "cli", "bench")
             for path in sorted((root / folder).rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
             and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"]
    assert calls == ["shared/model/checkpoints.py"]  # load_tensors
