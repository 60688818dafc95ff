"""Schemathesis drives every documented operation with requests generated from the app's own OpenAPI
document and holds each answer to that document (issue 10: a schema-driven client and the server agree).

In-process over WSGI, on the test's real database (SQLite) and Redis queue. A bounded, derandomized run,
so CI sees the same requests every time; a failure message carries a reproducing curl command.
"""
from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks
from schemathesis.checks import CheckContext
from schemathesis.core import NOT_SET
from schemathesis.errors import FailureGroup

from shared.db import batches as batch_store
from shared.db import keys as key_store
from shared.settings import Settings
from tests.web.conftest import build_app, engine_result

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 25
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


def _error_shape(ctx: CheckContext, response: schemathesis.Response, case: schemathesis.Case) -> bool | None:
    """Every error under /api and the health checks is `{"error": {"code", "message"}}` (web/errors.py)."""
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not (isinstance(error, dict) and isinstance(error.get("code"), str) and isinstance(error.get("message"), str)):
        raise AssertionError(f'error body is not {{"error": {{"code", "message"}}}}: {response.text[:300]}')
    return True


def _not_applicable(case: schemathesis.Case) -> list:
    """Checks whose premise the document cannot meet for this request, each for a stated reason."""
    excluded = []
    # "Schema-valid data is accepted" cannot hold where validity is beyond a schema: an upload's bytes must
    # be a decodable video (random bytes are rightly 415/422), and a list cursor is a token only the server
    # issues (any other string is rightly 400 invalid_cursor).
    # Likewise a `weights` name is valid only if that checkpoint is installed (WEIGHTS_DIR is empty here),
    # and a `webhook_url` only if its host resolves to public addresses and the server has WEBHOOK_SECRET.
    if case.media_type == "multipart/form-data" or "cursor" in (case.query or {}) or _depends_on_server(case.body):
        excluded.append(checks.positive_data_acceptance)
    # A multipart field is text on the wire: a "wrong type" mutation (an object where a string is declared)
    # arrives as a string, so a server accepting it is no sign of a loose check. (Bad option values in an upload
    # can only be refused here anyway: the random video bytes around them never make a job.)
    if case.media_type == "multipart/form-data":
        excluded.append(checks.negative_data_rejection)
    # /readyz answers 503 not_ready by design while no worker or checkpoint is there (none are, in this
    # test); that 503 is documented, so status_code_conformance still holds it to the document.
    if case.operation.path == "/readyz":
        excluded.append(checks.not_a_server_error)
    return excluded


def _depends_on_server(body: Any) -> bool:
    if not isinstance(body, dict):
        return False
    options = body.get("options")
    return "webhook_url" in body or (isinstance(options, dict) and "weights" in options)


def fuzz(operation: Any, mode: GenerationMode, *, key: str, path_parameters: dict[str, str] | None = None,
         body: Any = NOT_SET) -> str | None:
    """Run the bounded examples of one operation; the first failure's report, or None."""

    # The key is fixed, not generated: negative examples then vary the input, not the credentials
    # (ignored_auth still sends a missing and a wrong key and expects 401).
    @given(case=operation.as_strategy(generation_mode=mode, headers={"Authorization": f"Bearer {key}"},
                                      path_parameters=path_parameters, body=body))
    @hypothesis_settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(additional_checks=[_error_shape], excluded_checks=_not_applicable(case))

    try:
        run()
    except Unsatisfiable:  # negative mode with no input left to vary (none, or only the fixed path): nothing to break
        return None
    except (AssertionError, FailureGroup) as exc:
        return f"{operation.label} [{mode.value}] {path_parameters or ''} {'' if body is NOT_SET else 'real video'}: {exc}"
    return None


@pytest.fixture
def keys_app(settings: Settings) -> Iterator[Flask]:
    """The service as it runs on a network (AUTH=keys), so the check that a bad key gets 401 means something."""
    app = build_app(replace(settings, auth="keys"))
    yield app
    app.extensions["deepfake.db"]["engine"].dispose()


@pytest.fixture
def api_key(keys_app: Flask, settings: Settings) -> str:
    with keys_app.extensions["deepfake.db"]["session_factory"]() as session:
        _, key = key_store.create_key(session=session, owner=settings.owner)
        session.commit()
    return key


@pytest.fixture
def existing(make_job, advance_job, session_factory, settings: Settings) -> dict[str, list[str]]:
    """The key owner's jobs in each state and two batches, for the runs that address real resources
    (generated ids alone would only ever meet 404)."""
    jobs = {state: make_job() for state in ("queued", "running", "succeeded", "failed")}
    for state, job_id in jobs.items():
        if state != "queued":
            advance_job(job_id, state)
    with session_factory() as session:
        batch = batch_store.create_batch(session=session, owner=settings.owner, name="night", params={})
        batch_store.add_failed_item(session=session, batch=batch, upload_name="a.mp4", upload_size=1,
                                    upload_sha256="0" * 64, code="not_a_video", message="not a video")
        empty = batch_store.create_batch(session=session, owner=settings.owner, name="", params={})
        session.commit()
        batches = [batch.id, empty.id]
    return {"job_id": list(jobs.values()), "batch_id": batches, "name": [engine_result().artifacts[0].name]}


def _known_ids(operation: Any, existing: dict[str, list[str]]) -> list[dict[str, str]]:
    """Path parameters naming each existing resource the operation takes (none: the generated ids only)."""
    names = [p.name for p in operation.path_parameters if p.name in existing]
    return [dict(zip(names, values)) for values in itertools.product(*(existing[n] for n in names))] if names else []


def _runs(operation: Any, existing: dict[str, list[str]], video: bytes) -> list[dict[str, Any]]:
    """Generated input, then each existing resource; an upload also once with a real video (random bytes
    never make a job, so the 201/202 answers would go unchecked)."""
    runs = [{}, *({"path_parameters": ids} for ids in _known_ids(operation, existing))]
    if operation.body and operation.body[0].media_type == "multipart/form-data":
        runs += [{**run, "body": {"video": video}} for run in runs if run or not operation.path_parameters]
    return runs


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_operation_answers_within_its_documented_contract(keys_app: Flask, api_key: str,
                                                                existing: dict[str, list[str]],
                                                                video_clip: Path) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", keys_app)
    # Deletions last, so the other operations still find the resources they are pointed at.
    operations = sorted((result.ok() for result in schema.get_all_operations()), key=lambda op: op.method == "delete")
    runs = [(op, run) for op in operations for run in _runs(op, existing, video_clip.read_bytes())]

    failures = [f for op, run in runs for mode in MODES if (f := fuzz(op, mode, key=api_key, **run))]

    assert failures == [], "\n\n".join(failures)
