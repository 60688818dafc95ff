"""Artifact files: atomic writes under DATA_DIR/artifacts/<job>/<attempt>/, no path escapes."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from shared.db.artifacts import (
    UnsafeArtifactNameError,
    remove_attempt,
    write_artifacts,
)


@dataclass(frozen=True)
class Produced:
    name: str
    media_type: str
    data: bytes
    track_id: int | None = None
    description: str = ""


def test_written_files_resolve_back(tmp_path):
    stored = write_artifacts(artifacts_dir=tmp_path, job_id="job-1", attempt=2,
                             artifacts=[Produced("thumb-t0.png", "image/png", b"\x89PNG data", 0, "thumb")])
    assert [(s.name, s.size, s.path, s.track_id) for s in stored] == [("thumb-t0.png", 9, "job-1/2/thumb-t0.png", 0)]
    assert (tmp_path / stored[0].path).read_bytes() == b"\x89PNG data"
    assert [path.name for path in (tmp_path / "job-1" / "2").iterdir()] == ["thumb-t0.png"]  # no temporary left
    remove_attempt(artifacts_dir=tmp_path, job_id="job-1", attempt=2)
    assert not (tmp_path / "job-1" / "2").exists()


@pytest.mark.parametrize("name", ["../evil.png", "a/b.png", ".hidden", "", "..", "x" * 300])
def test_unsafe_names_are_refused(tmp_path, name):
    with pytest.raises(UnsafeArtifactNameError):
        write_artifacts(artifacts_dir=tmp_path, job_id="job-1", attempt=1,
                        artifacts=[Produced(name, "image/png", b"x")])
    assert not any(p.is_file() for p in tmp_path.parent.rglob("evil.png"))
