"""`deepfake analyze VIDEO --annotate OUT.mp4` in a real process: the overlay video and the preview artifact."""
from __future__ import annotations

import json

import av
import numpy as np

from shared.model.annotate import probability_colour
from tests.cli.test_analyze import deepfake, weights_dir  # noqa: F401  (a module fixture)
from tests.media import make_face_clip


def _frames(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_annotate_writes_every_frame_with_the_tracks_box_drawn(tmp_path, weights_dir):  # noqa: F811
    clip = make_face_clip(tmp_path / "clip.mp4", seconds=1.5, fps=10, width=320, height=240)
    done = deepfake("analyze", str(clip), "--json", "--face-detector", "opencv", "--precision", "fp32",
                    "--device", "cpu", "--sequence-length", "4", "--detect-every", "2",
                    "--annotate", str(tmp_path / "out.mp4"), "--artifacts-dir", str(tmp_path / "art"),
                    weights_dir=weights_dir)

    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    [track] = data["tracks"]
    annotated, source = _frames(tmp_path / "out.mp4"), _frames(clip)
    assert len(annotated) == len(source) == 15 and annotated[0].shape == (240, 320, 3)
    first = track["boxes"][0]
    x1, y1, x2, y2 = (round(v) for v in first["box"])
    frame = first["frame"]
    edge = annotated[frame][y1 + 4:y2 - 4, x1].astype(int)  # the box's left edge, below its label
    colour = np.array(probability_colour(track["fake_probability"]))
    assert np.abs(edge - colour).mean() < 40 < np.abs(source[frame][y1 + 4:y2 - 4, x1].astype(int) - colour).mean()
    assert sorted(p.name for p in (tmp_path / "art").iterdir() if p.suffix == ".mp4") == ["preview.mp4"]


def test_no_preview_leaves_the_artifacts_folder_without_a_video(tmp_path, weights_dir):  # noqa: F811
    clip = make_face_clip(tmp_path / "clip.mp4", seconds=0.6, fps=10, width=160, height=120)
    done = deepfake("analyze", str(clip), "--json", "--face-detector", "none", "--precision", "fp32", "--device",
                    "cpu", "--sequence-length", "4", "--artifacts-dir", str(tmp_path / "art"), "--no-preview",
                    weights_dir=weights_dir)

    assert done.returncode == 0, done.stderr
    assert [p.name for p in (tmp_path / "art").iterdir() if p.suffix == ".mp4"] == []
