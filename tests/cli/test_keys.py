"""`deepfake keys`, the CLI sending its key to a service with AUTH=keys, and serve/web refusing to listen on a
network address without accounts (real database, Redis and HTTP)."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from typing import Iterator

import pytest
import requests

from cli.main import main
from cli.service import free_port
from shared.db import batches as batch_store
from shared.db import keys as key_store
from tests.conftest import REDIS_URL, REPO_ROOT, stop_process_group, wait_for
# The web tests' fixtures (a real clip; the queue read back from Redis) are reused by import.
from tests.web.conftest import queued_tasks, video_clip  # noqa: F401
from tests.web.conftest import build_app, record_job, running_server
from web.auth import is_loopback


@pytest.fixture
def keys_app(settings):
    app = build_app(replace(settings, auth="keys"))
    yield app
    app.extensions["deepfake.db"]["engine"].dispose()


@pytest.fixture
def sessions(keys_app):
    return keys_app.extensions["deepfake.db"]["session_factory"]


@pytest.fixture
def server(keys_app) -> Iterator[str]:
    with running_server(keys_app) as url:
        yield url


@pytest.fixture
def cli_env(monkeypatch, settings):
    """The CLI's environment: the test's database, no key unless a test sets one."""
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("DEEPFAKE_API_KEY", raising=False)
    monkeypatch.delenv("DEEPFAKE_SERVER", raising=False)
    monkeypatch.delenv("AUTH", raising=False)


def _create_key(sessions, owner: str, *, admin: bool = False) -> tuple[str, str]:
    with sessions() as session:
        row, key = key_store.create_key(session=session, owner=owner, admin=admin)
        session.commit()
        return row.id, key


def test_keys_create_prints_the_key_once_list_shows_it_and_revoke_stops_it(cli_env, sessions, capsys):
    assert main(["keys", "create", "--owner", "alice", "--label", "laptop"]) == 0
    out, err = capsys.readouterr()
    key = out.strip()
    with sessions() as session:
        row = key_store.verify_key(session=session, key=key)
        assert (row.owner, row.admin, row.label) == ("alice", False, "laptop")
    assert key not in err and row.id in err and "AUTH is not keys here" in err

    assert main(["keys", "create", "--owner", "ops", "--admin"]) == 0
    capsys.readouterr()
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert key not in listing
    lines = {line.split()[0]: line.split() for line in listing.splitlines()[1:]}
    assert lines[row.id][1:3] == ["alice", "user"] and lines[row.id][-1] == "laptop"
    assert [fields[1:3] for key_id, fields in lines.items() if key_id != row.id] == [["ops", "admin"]]

    assert main(["keys", "revoke", row.id]) == 0
    capsys.readouterr()
    with sessions() as session:
        assert key_store.verify_key(session=session, key=key) is None
    assert main(["keys", "revoke", "000000000000"]) == 1
    assert "no API key with id" in capsys.readouterr().err
    assert main(["keys", "create", "--owner", "not a name"]) == 2


def test_the_cli_sends_its_key_from_the_environment_or_the_flag(cli_env, server, sessions, monkeypatch, capsys):
    _, alice = _create_key(sessions, "alice")
    job_id = record_job(sessions, owner="alice")

    assert main(["status", job_id, "--server", server]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "requires an API key" in err and "DEEPFAKE_API_KEY" in err
    assert "deepfake keys create" in err

    assert main(["status", job_id, "--server", server, "--api-key", alice]) == 0
    assert capsys.readouterr().out.startswith(f"{job_id}: queued")
    monkeypatch.setenv("DEEPFAKE_API_KEY", alice)
    assert main(["status", job_id, "--server", server]) == 0
    assert capsys.readouterr().out.startswith(f"{job_id}: queued")

    monkeypatch.setenv("DEEPFAKE_API_KEY", alice[:-3] + "abc")
    assert main(["status", job_id, "--server", server]) == 1
    assert "refused the API key" in capsys.readouterr().err


def test_submit_and_batch_upload_as_the_keys_owner(cli_env, server, sessions, video_clip, queued_tasks, monkeypatch,
                                                    capsys, tmp_path):
    _, bob = _create_key(sessions, "bob")
    monkeypatch.setenv("DEEPFAKE_API_KEY", bob)

    assert main(["submit", str(video_clip), "--server", server]) == 0
    job_id = capsys.readouterr().out.strip()
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(video_clip.read_bytes())
    assert main(["batch", str(folder), "--server", server, "--no-wait", "--output", str(tmp_path / "r.csv")]) == 0
    capsys.readouterr()

    with sessions() as session:
        from shared.db import jobs as job_store

        assert job_store.get_job(session=session, owner="bob", job_id=job_id) is not None
        [batch] = batch_store.list_batches(session=session, owner="bob")
        assert [item.owner for item in batch_store.batch_items(session=session, batch_id=batch.id)] == ["bob"]


def test_submit_without_a_key_stops_at_the_first_file_with_one_line(cli_env, server, video_clip, capsys):
    assert main(["submit", str(video_clip), str(video_clip), "--server", server]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "DEEPFAKE_API_KEY" in err[0]


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True),
                                            ("[::1]", True), ("localhost", True), ("0.0.0.0", False),
                                            ("::", False), ("", False), ("10.0.0.5", False), ("example.org", False)])
def test_which_listen_addresses_count_as_this_machine_only(host, loopback):
    assert is_loopback(host) is loopback


def _bare_env(tmp_path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "AUTH", "SECRET_KEY")}
    env.update({"DATA_DIR": str(tmp_path / "var"), "WEIGHTS_DIR": str(tmp_path / "weights"), "DEVICE": "cpu",
                "PYTHONUNBUFFERED": "1", **extra})
    return env


def _deepfake(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_serve_and_web_refuse_a_network_address_without_accounts(tmp_path):
    served = _deepfake("serve", "--host", "0.0.0.0", "--port", str(free_port()), env=_bare_env(tmp_path))
    web = _deepfake("web", "--host", "0.0.0.0", "--port", str(free_port()),
                    env=_bare_env(tmp_path, REDIS_URL=REDIS_URL))

    for done in (served, web):
        assert done.returncode == 1, done.stdout + done.stderr
        assert "refusing to listen on 0.0.0.0 without accounts" in done.stderr
        assert "AUTH=keys" in done.stderr and "AUTH=none-allow-network" in done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "var" / "redis").exists()  # refused before starting anything


def test_web_with_keys_and_several_processes_needs_a_shared_secret_key(tmp_path):
    done = _deepfake("web", "--host", "0.0.0.0", "--port", str(free_port()), "--workers", "2",
                     env=_bare_env(tmp_path, REDIS_URL=REDIS_URL, AUTH="keys"))
    assert done.returncode == 1 and "SECRET_KEY" in done.stderr


@pytest.mark.parametrize("auth, host, says", [
    ("none", "127.0.0.1", "no login (AUTH=none): single-user mode"),
    ("none-allow-network", "0.0.0.0", "no login on a network address (AUTH=none-allow-network)"),
    ("keys", "0.0.0.0", "accounts on (AUTH=keys)"),
])
def test_web_says_at_start_who_may_use_it(tmp_path, auth, host, says):
    port = free_port()
    env = _bare_env(tmp_path, REDIS_URL=REDIS_URL, DATABASE_URL=f"sqlite:///{tmp_path / 'web.db'}", AUTH=auth)
    assert _deepfake("db", "upgrade", env=env).returncode == 0
    log = tmp_path / "web.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "cli.main", "web", "--server", "werkzeug", "--host", host,
                                    "--port", str(port)], cwd=REPO_ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), timeout=60, what="the web app")
        jobs = requests.get(f"http://127.0.0.1:{port}/api/v1/jobs", timeout=5)
        assert jobs.status_code == (401 if auth == "keys" else 200)
        assert says in log.read_text()
    finally:
        stop_process_group(process)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def test_the_compose_web_service_runs_with_accounts():
    import yaml

    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    assert compose["services"]["web"]["environment"]["AUTH"] == "keys"


def test_several_web_processes_need_a_shared_secret_key_without_accounts_too(tmp_path):
    """The pages' CSRF token lives in the signed session cookie in every mode: with a key per process, a
    form whose POST reaches the other process would fail."""
    done = _deepfake("web", "--port", str(free_port()), "--workers", "2",
                     env=_bare_env(tmp_path, REDIS_URL=REDIS_URL, DATABASE_URL=f"sqlite:///{tmp_path / 'w.db'}"))
    assert done.returncode == 1 and "SECRET_KEY" in done.stderr and "CSRF" in done.stderr
