"""`deepfake batch`: a folder or a CSV list, analysed in this process (real engine, real tiny videos) or
uploaded to a service. The service here is a small HTTP double of our own batch API (its contract,
in memory); the real web endpoints are tested with the web app."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from cli.batch import BatchFile, analyse_file, collect_files, follow_batch
from cli.client import ApiClient
from cli.errors import CommandError
from cli.main import main
from shared.batch_report import REPORT_COLUMNS, report_json, report_row, write_csv
from tests.checkpoints import write_seed_checkpoint
from tests.media import make_face_clip

ENGINE_ARGS = ("--face-detector", "none", "--precision", "fp32", "--device", "cpu", "--sequence-length", "4")


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("weights")
    write_seed_checkpoint(directory, sequence_length=4)
    return directory


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> tuple[Path, Path]:
    """Two small real videos with different content."""
    folder = tmp_path_factory.mktemp("clips")
    return (make_face_clip(folder / "one.mp4", seconds=0.6, fps=10, width=160, height=120),
            make_face_clip(folder / "two.mp4", seconds=0.5, fps=10, width=160, height=120, photos=("grace_hopper",)))


@pytest.fixture
def engine_env(monkeypatch, tmp_path, weights_dir):
    monkeypatch.setenv("WEIGHTS_DIR", str(weights_dir))
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("DEEPFAKE_SERVER", raising=False)


def read_report(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        assert tuple(reader.fieldnames) == REPORT_COLUMNS
        return list(reader)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# Inputs -------------------------------------------------------------------------------------------

def test_a_folder_yields_its_videos_by_extension_in_sorted_order(tmp_path):
    for name in ("b.mp4", "A.MOV", "c.webm", "notes.txt", ".hidden.mp4", "._b.mp4", "sub/d.mkv", ".git/e.mp4"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")

    flat = collect_files(tmp_path)
    deep = collect_files(tmp_path, recursive=True)

    assert [(f.position, f.label) for f in flat] == [(0, "A.MOV"), (1, "b.mp4"), (2, "c.webm")]
    assert [f.label for f in deep] == ["A.MOV", "b.mp4", "c.webm", "sub/d.mkv"]
    assert deep[3].path == tmp_path / "sub" / "d.mkv"


def test_a_list_takes_the_first_column_from_its_own_folder(tmp_path):
    listing = tmp_path / "lists" / "videos.csv"
    listing.parent.mkdir()
    listing.write_text("\ufeffpath,label\n# a comment\n\nz.mp4,x\n/abs/y.mp4\n  sub/a.mp4 ,\n", encoding="utf-8")

    files = collect_files(listing)

    assert [(f.label, f.path) for f in files] == [
        ("/abs/y.mp4", Path("/abs/y.mp4")), ("sub/a.mp4", listing.parent / "sub/a.mp4"),
        ("z.mp4", listing.parent / "z.mp4")]


@pytest.mark.parametrize("make, message", [
    (lambda root: root / "missing", "no such folder"),
    (lambda root: root, "no videos in"),
    (lambda root: (root / "a.mp4").write_bytes(b"x") and root / "a.mp4", "neither a folder nor"),
    (lambda root: (root / "l.csv").write_bytes(b"\xff\xfe\x00p") and root / "l.csv", "cannot read the list"),
])
def test_inputs_that_name_no_videos_are_usage_errors(tmp_path, make, message):
    with pytest.raises(CommandError, match=message) as caught:
        collect_files(make(tmp_path))
    assert caught.value.exit_code == 2


def test_identical_files_are_analysed_once(tmp_path):
    first, copy, other = tmp_path / "a.mp4", tmp_path / "b.mp4", tmp_path / "c.mp4"
    first.write_bytes(b"same bytes")
    copy.write_bytes(b"same bytes")
    other.write_bytes(b"other bytes")
    analysed = []

    def analyse(path: Path, digest: str) -> dict:
        analysed.append(path)
        return {"verdict": "REAL", "fake_probability": 0.1, "reasons": [], "tracks": [{}]}

    seen: dict = {}
    rows = [analyse_file(BatchFile(position=n, path=p, label=p.name), analyse=analyse, first_of=seen)
            for n, p in enumerate((first, copy, other))]

    assert analysed == [first, other]
    assert rows[1] == {**rows[0], "position": 1, "file": "b.mp4", "reused_from": "a.mp4"}
    assert rows[2]["reused_from"] is None and rows[2]["sha256"] == sha256(other)


# In this process ----------------------------------------------------------------------------------

def test_a_folder_in_process_goes_on_past_a_corrupt_file_and_reuses_copies(tmp_path, clips, engine_env, capsys):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(clips[0], folder / "clip.mp4")
    shutil.copy(clips[0], folder / "sub" / "copy.mp4")
    (folder / "=cmd.mp4").write_text("not a video, and a name a spreadsheet would run")
    (folder / "notes.txt").write_text("not taken")
    out, out_json = tmp_path / "report.csv", tmp_path / "report.json"

    code = main(["batch", str(folder), "--recursive", "--output", str(out), "--json-output", str(out_json),
                 *ENGINE_ARGS])

    assert code == 1  # one file failed
    bad, clip, copy = read_report(out)
    assert (bad["position"], bad["file"], bad["status"], bad["error_code"]) == ("0", "'=cmd.mp4", "failed",
                                                                                "not_a_video")
    assert (clip["file"], clip["status"], clip["sha256"]) == ("clip.mp4", "succeeded", sha256(clips[0]))
    assert clip["verdict"] in ("FAKE", "REAL", "INCONCLUSIVE") and clip["faces"] == "1"
    assert 0.0 <= float(clip["fake_probability"]) <= 1.0
    assert (copy["file"], copy["reused_from"], copy["position"]) == ("sub/copy.mp4", "clip.mp4", "2")
    assert [copy[k] for k in ("verdict", "fake_probability", "sha256")] == \
        [clip[k] for k in ("verdict", "fake_probability", "sha256")]
    report = json.loads(out_json.read_text())
    assert report["summary"]["total"] == 3 and report["summary"]["failed"] == 1
    assert report["rows"][0]["file"] == "=cmd.mp4"  # JSON keeps the name as it is
    printed = capsys.readouterr().out
    assert "3 files: " in printed and "failed 1" in printed
    assert "Most suspicious:" in printed and "clip.mp4" in printed and f"Report: {out}" in printed


def test_a_list_in_process_reports_missing_files_and_exits_0_only_when_all_were_analysed(
        tmp_path, clips, engine_env, monkeypatch, capsys):
    (tmp_path / "videos").mkdir()
    shutil.copy(clips[1], tmp_path / "videos" / "two.mp4")
    listing = tmp_path / "list.csv"
    listing.write_text(f"path\n# tonight\nvideos/two.mp4\n{clips[0]}\ngone.mp4\nvideos\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)

    code = main(["batch", str(listing), *ENGINE_ARGS])

    assert code == 1
    [report] = tmp_path.glob("batch-results-*.csv")  # the default name, in the current folder
    rows = {row["file"]: row for row in read_report(report)}
    assert [row["file"] for row in read_report(report)] == sorted([str(clips[0]), "videos/two.mp4", "gone.mp4",
                                                                    "videos"])
    assert (rows["gone.mp4"]["status"], rows["gone.mp4"]["error_code"]) == ("failed", "file_not_found")
    assert rows["videos"]["error_code"] == "file_not_found"
    assert rows[str(clips[0])]["status"] == rows["videos/two.mp4"]["status"] == "succeeded"
    assert rows["videos/two.mp4"]["sha256"] == sha256(clips[1])
    capsys.readouterr()

    listing.write_text("videos/two.mp4\n", encoding="utf-8")
    assert main(["batch", str(listing), "--output", str(tmp_path / "ok.csv"), *ENGINE_ARGS]) == 0
    assert [row["status"] for row in read_report(tmp_path / "ok.csv")] == ["succeeded"]


def test_missing_weights_stop_the_batch_before_the_first_file(tmp_path, clips, engine_env, monkeypatch, capsys):
    monkeypatch.setenv("WEIGHTS_DIR", str(tmp_path / "empty"))
    shutil.copy(clips[0], tmp_path / "clip.mp4")

    code = main(["batch", str(tmp_path), "--output", str(tmp_path / "report.csv"), *ENGINE_ARGS])

    assert code == 2
    assert "weights_not_found" in capsys.readouterr().err
    assert not (tmp_path / "report.csv").exists()


@pytest.mark.parametrize("args", [["--no-wait"], ["--server", "http://127.0.0.1:1", "--device", "cpu"],
                                  ["--poll-interval", "0"]])
def test_flags_of_the_other_mode_are_usage_errors(tmp_path, engine_env, args, capsys):
    (tmp_path / "a.mp4").write_bytes(b"x")

    assert main(["batch", str(tmp_path), *args]) == 2
    assert "Traceback" not in capsys.readouterr().err


# On a service -------------------------------------------------------------------------------------

class BatchServiceDouble:
    """Our batch API's contract, in memory. Each poll ends one queued item; a body starting with
    b"not a video" is a failed item (refused on probing), one starting with b"too big" is a 413."""

    def __init__(self, *, unavailable_polls: int = 0) -> None:
        self.batches: dict[str, dict] = {}
        self.items: list[dict] = []
        self.polls = 0
        self.unavailable_polls = unavailable_polls

    def __call__(self, environ, start_response):
        request = Request(environ)
        parts = request.path.strip("/").split("/")  # api v1 batches [id [items|results.json]]
        if request.method == "POST" and parts[3:] == []:
            response = self.create(request.get_json())
        elif request.method == "POST" and parts[4:] == ["items"]:
            response = self.add(parts[3], request)
        elif request.method == "GET" and parts[4:] == []:
            response = self.status(parts[3])
        elif request.method == "GET" and parts[4:] == ["results.json"]:
            response = self.json(200, report_json(self.rows()))
        else:
            response = self.json(404, {"error": {"code": "not_found", "message": "no such route"}})
        return response(environ, start_response)

    @staticmethod
    def json(status: int, body: dict) -> Response:
        return Response(json.dumps(body), status=status, mimetype="application/json")

    def create(self, body: dict) -> Response:
        batch = {"id": f"batch-{len(self.batches) + 1}", "name": body["name"], "params": body["options"]}
        self.batches[batch["id"]] = batch
        return self.json(201, batch)

    def add(self, batch_id: str, request: Request) -> Response:
        data = request.files["video"].read()
        if data.startswith(b"too big"):
            return self.json(413, {"error": {"code": "upload_too_large", "message": "larger than the limit"}})
        refused = data.startswith(b"not a video")
        item = {"position": len(self.items), "job_id": f"job-{len(self.items) + 1}",
                "file": request.form["path"], "sha256": hashlib.sha256(data).hexdigest(),
                "status": "failed" if refused else "queued",
                "error": {"code": "not_a_video", "message": "no video stream"} if refused else None}
        self.items.append(item)
        return self.json(201, {"id": item["job_id"], "status": item["status"], "error": item["error"]})

    def status(self, batch_id: str) -> Response:
        self.polls += 1
        if self.polls <= self.unavailable_polls:
            return self.json(503, {"error": {"code": "database_unavailable", "message": "try again"}})
        queued = [item for item in self.items if item["status"] == "queued"]
        if queued:
            queued[0]["status"] = "succeeded"
        counts = {status: sum(item["status"] == status for item in self.items)
                  for status in ("queued", "running", "succeeded", "failed", "cancelled")}
        done = counts["succeeded"] + counts["failed"] + counts["cancelled"]
        return self.json(200, {**self.batches[batch_id], "total": len(self.items), "done": done,
                               "finished": done == len(self.items), "counts": counts, "items": self.items})

    def rows(self) -> list[dict]:
        return [report_row(position=item["position"], file=item["file"], sha256=item["sha256"],
                           status=item["status"], job_id=item["job_id"],
                           result=_result(item["file"]) if item["status"] == "succeeded" else None,
                           error_code=(item["error"] or {}).get("code"),
                           error_message=(item["error"] or {}).get("message"))
                for item in self.items]


def _result(name: str) -> dict:
    fake = "fake" in name
    return {"verdict": "FAKE" if fake else "REAL", "fake_probability": 0.9 if fake else 0.2,
            "reasons": [], "tracks": [{"id": 0}]}


@pytest.fixture
def service() -> Iterator[tuple[BatchServiceDouble, str]]:
    double = BatchServiceDouble(unavailable_polls=1)
    server = make_server("127.0.0.1", 0, double, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield double, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


@pytest.fixture
def videos(tmp_path) -> Path:
    folder = tmp_path / "night"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.mp4").write_bytes(b"video a" * 1000)
    (folder / "sub" / "fake.mp4").write_bytes(b"video fake" * 1000)
    (folder / "bad.mp4").write_bytes(b"not a video")
    (folder / "big.mp4").write_bytes(b"too big")
    return folder


def test_server_mode_uploads_follows_and_writes_the_services_rows(service, videos, tmp_path, capsys, monkeypatch):
    double, url = service
    monkeypatch.delenv("DEEPFAKE_SERVER", raising=False)
    out, out_json = tmp_path / "report.csv", tmp_path / "report.json"

    code = main(["batch", str(videos), "--server", url + "/", "--recursive", "--poll-interval", "0.01",
                 "--output", str(out), "--json-output", str(out_json), "--face-detector", "opencv",
                 "--sequence-length", "8"])

    assert code == 1  # bad.mp4 failed on the service, big.mp4 was refused
    assert double.batches == {"batch-1": {"id": "batch-1", "name": "night",
                                          "params": {"face_detector": "opencv", "sequence_length": 8}}}
    assert [(item["file"], item["sha256"]) for item in double.items] == [
        (label, sha256(videos / label)) for label in ("a.mp4", "bad.mp4", "sub/fake.mp4")]
    assert double.polls > 2  # the 503 was waited out
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == f"batch batch-1: {url}/batches/batch-1"
    server_rows = double.rows()
    stream = io.StringIO(newline="")
    write_csv(server_rows, stream)
    assert out.read_bytes().decode().startswith(stream.getvalue())  # the service's CSV, as it would be
    *_, big = read_report(out)
    assert (big["position"], big["file"], big["status"], big["error_code"]) == ("3", "big.mp4", "failed",
                                                                                "upload_too_large")
    report = json.loads(out_json.read_text())
    assert report["rows"][:3] == server_rows and len(report["rows"]) == 4
    assert report["summary"]["verdicts"] == {"FAKE": 1, "REAL": 1, "INCONCLUSIVE": 0}
    assert "FAKE 1, REAL 1, INCONCLUSIVE 0, failed 2" in printed
    assert printed.index("sub/fake.mp4") < printed.index("a.mp4")  # most suspicious first


def test_no_wait_uploads_and_returns_and_the_server_comes_from_the_environment(service, videos, tmp_path,
                                                                               capsys, monkeypatch):
    double, url = service
    monkeypatch.setenv("DEEPFAKE_SERVER", url)
    monkeypatch.chdir(tmp_path)

    code = main(["batch", str(videos), "--no-wait", "--name", "tonight"])

    printed = capsys.readouterr()
    assert code == 1  # big.mp4 was refused
    assert "big.mp4: [upload_too_large]" in printed.err
    assert double.batches["batch-1"]["name"] == "tonight"
    assert [item["file"] for item in double.items] == ["a.mp4", "bad.mp4"]
    assert double.polls == 0 and not list(tmp_path.glob("*.csv"))
    assert f"{url}/batches/batch-1" in printed.out


def test_an_unreachable_service_is_one_line(tmp_path, videos, capsys):
    code = main(["batch", str(videos), "--server", "http://127.0.0.1:1", "--output", str(tmp_path / "r.csv")])

    err = capsys.readouterr().err.strip()
    assert code == 1
    assert "\n" not in err and "cannot reach the service at http://127.0.0.1:1" in err
    assert not (tmp_path / "r.csv").exists()


def test_following_gives_up_on_a_service_gone_too_long_and_names_the_batch(service):
    double, url = service
    double.unavailable_polls = 10**6

    with pytest.raises(CommandError, match="batch batch-9 goes on there") as caught:
        follow_batch(ApiClient(url), "batch-9", interval_s=0.01, patience_s=0.0)

    assert "database_unavailable" in str(caught.value)


def test_against_the_real_batch_api(settings, tmp_path, clips, capsys, monkeypatch):
    """The web app's own batch endpoints over HTTP (real database and Redis); this test plays the worker."""
    from sqlalchemy import select

    from shared.db.models import Job
    from tests.conftest import wait_for
    from tests.web.conftest import build_app, move_job, running_server

    monkeypatch.delenv("DEEPFAKE_SERVER", raising=False)
    folder = tmp_path / "night"
    folder.mkdir()
    shutil.copy(clips[0], folder / "cam1.mp4")
    (folder / "notes.mp4").write_text("not a video, just text" * 50)
    app = build_app(settings)
    sessions = app.extensions["deepfake.db"]["session_factory"]

    def queued_jobs() -> list[str]:
        with sessions() as session:
            return [str(job_id) for job_id in session.scalars(select(Job.id).where(Job.status == "queued"))]

    def work() -> None:
        [job_id] = wait_for(queued_jobs, timeout=60, what="the queued item")
        move_job(sessions, settings, job_id, "succeeded")

    worker = threading.Thread(target=work)
    worker.start()
    try:
        with running_server(app) as url:
            code = main(["batch", str(folder), "--server", url, "--poll-interval", "0.05", "--face-detector", "none",
                         "--output", str(tmp_path / "report.csv")])
    finally:
        worker.join()
        app.extensions["deepfake.db"]["engine"].dispose()

    assert code == 1  # notes.mp4 was refused on probing
    cam, notes = read_report(tmp_path / "report.csv")
    assert (cam["position"], cam["file"], cam["status"], cam["verdict"]) == ("0", "cam1.mp4", "succeeded", "FAKE")
    assert cam["sha256"] == sha256(clips[0])
    assert (notes["file"], notes["status"], notes["error_code"]) == ("notes.mp4", "failed", "not_a_video")
    printed = capsys.readouterr().out
    assert f"{url}/batches/" in printed.splitlines()[0]


# A busy service (429) ----------------------------------------------------------------------------------

def _batch_items(sessions, owner: str) -> list[tuple[str, str]]:
    """(file, status) of `owner`'s batch items, in batch order."""
    from sqlalchemy import select

    from shared.db.models import Job

    query = select(Job.upload_name, Job.status).where(Job.owner == owner).order_by(Job.batch_position)
    with sessions() as session:
        return [tuple(row) for row in session.execute(query).all()]


def _two_files(tmp_path: Path, clips) -> Path:
    folder = tmp_path / "night"
    folder.mkdir()
    shutil.copy(clips[0], folder / "cam1.mp4")
    shutil.copy(clips[1], folder / "cam2.mp4")
    return folder


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_item_refused_by_the_rate_limit_is_sent_again_after_retry_after(settings, tmp_path, clips, capsys,
                                                                           monkeypatch, redis_url, task_queue):
    import time
    import uuid
    from dataclasses import replace

    import redis

    from cli import busy
    from tests.web.conftest import build_app, running_server

    monkeypatch.delenv("DEEPFAKE_SERVER", raising=False)
    folder, limiter = _two_files(tmp_path, clips), redis.Redis.from_url(redis_url)
    for _ in range(3):  # a run whose requests straddle a minute boundary sees no 429: run again, fresh owner
        owner, waits, window = f"busy-{uuid.uuid4().hex[:8]}", [], int(time.time() // 60)

        def minute_passes(seconds, owner=owner, waits=waits):
            waits.append(seconds)
            limiter.delete(*limiter.keys(f"deepfake:rate:{task_queue}:{owner}:*"))

        monkeypatch.setattr(busy, "pause", minute_passes)
        # Three writes in a minute: the batch and its first item pass, the second item is refused at first.
        app = build_app(replace(settings, rate_limit_per_minute=2, owner=owner))
        with running_server(app) as url:
            code = main(["batch", str(folder), "--server", url, "--no-wait", "--face-detector", "none"])
        sessions = app.extensions["deepfake.db"]["session_factory"]
        app.extensions["deepfake.db"]["engine"].dispose()
        if waits or int(time.time() // 60) == window:
            break

    captured = capsys.readouterr()
    assert code == 0 and "uploaded 2 files" in captured.out
    [waited] = waits
    assert 1 <= waited <= 60  # the service's Retry-After
    assert "cam2.mp4: the service is busy [rate_limited]" in captured.err
    assert _batch_items(sessions, owner) == [("cam1.mp4", "queued"), ("cam2.mp4", "queued")]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_item_refused_for_too_many_active_jobs_is_sent_again_once_one_ends(settings, tmp_path, clips, capsys,
                                                                              monkeypatch):
    from dataclasses import replace

    from cli import busy
    from tests.web.conftest import build_app, move_job, running_server

    monkeypatch.delenv("DEEPFAKE_SERVER", raising=False)
    folder = _two_files(tmp_path, clips)
    app = build_app(replace(settings, max_active_jobs_per_owner=1))
    sessions = app.extensions["deepfake.db"]["session_factory"]
    waits = []

    def first_item_ends(seconds):
        waits.append(seconds)
        from sqlalchemy import select

        from shared.db.models import Job

        with sessions() as session:
            [job_id] = session.scalars(select(Job.id).where(Job.status == "queued")).all()
        move_job(sessions, settings, job_id, "succeeded")

    monkeypatch.setattr(busy, "pause", first_item_ends)
    with running_server(app) as url:
        code = main(["batch", str(folder), "--server", url, "--no-wait", "--face-detector", "none"])
    app.extensions["deepfake.db"]["engine"].dispose()

    captured = capsys.readouterr()
    assert code == 0 and "uploaded 2 files" in captured.out
    assert waits == [busy.DEFAULT_WAIT_S]  # no Retry-After: the default wait
    assert "cam2.mp4: the service is busy [too_many_active_jobs]" in captured.err
    assert _batch_items(sessions, settings.owner) == [("cam1.mp4", "succeeded"), ("cam2.mp4", "queued")]


# A service with AUTH=keys ----------------------------------------------------------------------------

@pytest.fixture
def keys_service(settings, monkeypatch) -> Iterator[tuple[str, Any]]:
    """The real web app with AUTH=keys over HTTP: (its URL, its session factory); no key in the environment."""
    from dataclasses import replace

    from tests.web.conftest import build_app, running_server

    monkeypatch.delenv("DEEPFAKE_SERVER", raising=False)
    monkeypatch.delenv("DEEPFAKE_API_KEY", raising=False)
    app = build_app(replace(settings, auth="keys"))
    with running_server(app) as url:
        yield url, app.extensions["deepfake.db"]["session_factory"]
    app.extensions["deepfake.db"]["engine"].dispose()


def _create_key(sessions, owner: str) -> tuple[str, str]:
    from shared.db import keys as key_store

    with sessions() as session:
        row, key = key_store.create_key(session=session, owner=owner)
        session.commit()
        return row.id, key


def _batches(sessions) -> list[tuple[str, list[str]]]:
    """(owner, files) of every batch on the service."""
    from shared.db import batches as batch_store

    with sessions() as session:
        return [(batch.owner, [item.upload_name for item in batch_store.batch_items(session=session,
                                                                                    batch_id=batch.id)])
                for batch in batch_store.list_batches(session=session, owner=None)]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("key, problem", [(None, "requires an API key"), ("df_not-a-key", "refused the API key")])
def test_a_batch_the_service_refuses_the_key_for_is_one_line_and_uploads_nothing(keys_service, tmp_path, clips,
                                                                                 capsys, key, problem):
    url, sessions = keys_service
    folder = _two_files(tmp_path, clips)
    key_args = ["--api-key", key] if key else []

    code = main(["batch", str(folder), "--server", url, *key_args, "--output", str(tmp_path / "r.csv")])

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and problem in err[0] and "HTTP 401" in err[0]
    assert "--api-key" in err[0] and "DEEPFAKE_API_KEY" in err[0]
    assert _batches(sessions) == [] and not (tmp_path / "r.csv").exists()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_api_key_flag_uploads_the_batch_as_its_owner(keys_service, tmp_path, clips, capsys):
    url, sessions = keys_service
    _, key = _create_key(sessions, "carol")
    folder = _two_files(tmp_path, clips)

    code = main(["batch", str(folder), "--server", url.removeprefix("http://"), "--api-key", key, "--no-wait",
                 "--face-detector", "none"])

    captured = capsys.readouterr()
    assert code == 0 and "uploaded 2 files" in captured.out and captured.err == ""
    assert _batches(sessions) == [("carol", ["cam1.mp4", "cam2.mp4"])]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_key_revoked_mid_batch_stops_the_uploads_with_one_line(keys_service, tmp_path, clips, capsys,
                                                                 monkeypatch):
    from shared.db import keys as key_store

    url, sessions = keys_service
    key_id, key = _create_key(sessions, "dave")
    folder = _two_files(tmp_path, clips)
    shutil.copy(clips[0], folder / "cam3.mp4")
    monkeypatch.setenv("DEEPFAKE_API_KEY", key)
    add_batch_item = ApiClient.add_batch_item

    def revoked_after_the_first(client, *args, **kwargs):  # the real upload; then an operator revokes the key
        answer = add_batch_item(client, *args, **kwargs)
        with sessions() as session:
            key_store.revoke_key(session=session, key_id=key_id)
            session.commit()
        return answer

    monkeypatch.setattr(ApiClient, "add_batch_item", revoked_after_the_first)
    code = main(["batch", str(folder), "--server", url, "--no-wait", "--face-detector", "none"])

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and "refused the API key" in err[0] and "stopped at cam2.mp4" in err[0]
    assert "holds the 1 files uploaded before it" in err[0]
    assert _batches(sessions) == [("dave", ["cam1.mp4"])]
