"""While no live worker reports, /readyz says which face detector `auto` would use and which checkpoints are
installed from the web machine's own WEIGHTS_DIR, by file name, and labels the answer as the web machine's."""
from __future__ import annotations

from shared.model.weights_registry import find_detector_weights, known_weights
from shared.options import installed_detector_files


def test_without_retinaface_weights_it_reports_the_haar_fallback(client, settings):
    (settings.weights_dir / "model_90_acc_20_frames_test.pt").write_bytes(b"not loaded by the web")
    ready = client.get("/readyz").json
    assert ready["detector"]["name"] == "opencv" and ready["detector"]["weights"] == []
    assert "Haar fallback" in ready["detector"]["note"]
    assert ready["checkpoints"] == ["model_90_acc_20_frames_test.pt"] and ready["checks"]["model"] == "ok"


def test_with_retinaface_weights_it_names_them_and_not_as_checkpoints(client, settings):
    for name in ("retinaface-mobilenet0.25.onnx", "Resnet50_Final.pth", "mine.pth"):
        (settings.weights_dir / name).write_bytes(b"x")
    ready = client.get("/readyz").json
    assert ready["detector"] == {"name": "retinaface", "weights": ["Resnet50_Final.pth", "retinaface-mobilenet0.25.onnx"],
                                 "source": "web machine"}
    assert ready["checkpoints"] == ["mine.pth"]


def test_a_detector_file_alone_is_not_a_model_checkpoint(client, settings):
    (settings.weights_dir / "mobilenet0.25_Final.pth").write_bytes(b"x")
    response = client.get("/readyz")
    assert response.status_code == 503 and "model" in response.json["error"]["down"]
    assert response.json["detector"]["name"] == "retinaface" and response.json["checkpoints"] == []


def test_every_file_the_engine_would_load_as_a_detector_is_reported_as_one(tmp_path):
    """The web's name rule (shared.options) agrees with the engine's registry, file by file."""
    for entry in known_weights():
        if entry.family == "seed":
            continue
        for name in entry.filenames:
            folder = tmp_path / name.replace(".", "_")
            folder.mkdir()
            (folder / name).write_bytes(b"x")
            assert find_detector_weights(folder, backbone=entry.backbone) is not None, name
            assert installed_detector_files(folder) == [name], name
