"""JSON Schema declarations of the API's documents (the `components` of the OpenAPI document)."""
from __future__ import annotations

from typing import Any

from shared.db.models import JobStatus
from shared.options import CHOICES, CLIENT_OPTIONS, INT_RANGES, OPTION_HELP, AnalysisOptions
from shared.options import WEIGHTS_NAME  # the one rule for a checkpoint name (a file name, never a path)
from shared.webhooks import MAX_URL_LENGTH


def _obj(properties: dict[str, Any], *required: str) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required)}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _closed(schema: dict[str, Any]) -> dict[str, Any]:
    """An object whose unlisted fields the server refuses (422 invalid_options), said so to clients."""
    return {**schema, "additionalProperties": False}


_STR = {"type": "string"}
_INT = {"type": "integer"}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_PROB = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
JOB_STATUSES = [status.value for status in JobStatus]

_WINDOW = _obj({"start_frame": _INT, "end_frame": _INT, "start_s": {"type": "number"},
                "end_s": {"type": "number"}, "fake_probability": _PROB})
_LINKS = _obj({"self": _STR, "cancel": _STR, "artifacts": _STR, "page": _STR}, "self", "cancel", "artifacts", "page")

COMPONENTS: dict[str, Any] = {
    "Error": _obj({"error": _obj({"code": _STR, "message": _STR}, "code", "message")}, "error"),
    "Progress": _obj({"frames_done": _INT, "frames_total": _INT, "fraction": {"type": "number"},
                      "eta_s": {"type": ["number", "null"]}, "updated_at": _TIME},
                     "frames_done", "frames_total", "fraction", "eta_s"),
    "Timeline": _obj({"tracks": {"type": "array", "items": _obj({"id": _INT, "windows": {
        "type": "array", "items": _WINDOW}}, "id", "windows")}}, "tracks"),
    "JobSummary": _obj({"id": {"type": "string", "format": "uuid"}, "status": {"enum": JOB_STATUSES},
                        "created_at": _TIME, "started_at": _TIME, "finished_at": _TIME,
                        "upload_name": _STR,
                        "owner": {"type": "string", "description": "Whose job it is (an admin key lists every owner's)."},
                        "verdict": {"type": ["string", "null"]},
                        "fake_probability": _PROB, "links": _LINKS}, "id", "status", "created_at", "links"),
    "Job": {"allOf": [_ref("JobSummary"), _obj({
        "progress": _ref("Progress"),
        "queue_position": {"type": ["integer", "null"], "description": "Jobs ahead of this one (queued only)."},
        "cancel_requested": {"type": "boolean"},
        "attempts": _INT,
        "params": {"type": "object", "description": "The engine settings chosen at submission."},
        "upload": _obj({"name": _STR, "size": _INT, "sha256": _STR}, "name", "size", "sha256"),
        "timeline": {**_ref("Timeline"), "description": "Windows scored so far (running jobs)."},
        "result": {"type": "object", "description": "The engine's result JSON, verbatim (succeeded jobs)."},
        "error": _obj({"code": _STR, "message": _STR}, "code", "message"),
    }, "progress", "params", "upload")]},
    "JobList": _obj({"jobs": {"type": "array", "items": _ref("JobSummary")},
                     "next_cursor": {"type": ["string", "null"]}}, "jobs", "next_cursor"),
    "ArtifactList": _obj({"artifacts": {"type": "array", "items": _obj({
        "name": _STR, "media_type": _STR, "track_id": {"type": ["integer", "null"]}, "description": _STR,
        "url": _STR}, "name", "media_type", "url")}}, "artifacts"),
    "BatchItem": _obj({"position": _INT, "job_id": {"type": "string", "format": "uuid"}, "file": _STR,
                       "status": {"enum": JOB_STATUSES}, "verdict": {"type": ["string", "null"]},
                       "fake_probability": _PROB, "error": {"type": ["object", "null"]},
                       "reused_from": {"type": ["string", "null"],
                                       "description": "The job whose stored result this file reused."},
                       "fraction": {"type": "number"}, "links": {"type": "object"}},
                      "position", "job_id", "file", "status"),
    "BatchSummary": _obj({"id": {"type": "string", "format": "uuid"}, "name": _STR, "created_at": _TIME,
                          "params": {"type": "object"}, "total": _INT, "done": _INT, "finished": {"type": "boolean"},
                          "counts": {"type": "object", "additionalProperties": _INT},
                          "progress": {"type": "object"}, "links": {"type": "object"}},
                         "id", "name", "total", "done", "finished", "counts", "links"),
    "Batch": {"allOf": [_ref("BatchSummary"), _obj({"items": {"type": "array", "items": _ref("BatchItem")}},
                                                    "items")]},
    "BatchList": _obj({"batches": {"type": "array", "items": _ref("BatchSummary")}}, "batches"),
    "BatchReport": _obj({"columns": {"type": "array", "items": _STR},
                         "rows": {"type": "array", "items": {"type": "object"}},
                         "summary": {"type": "object"}}, "columns", "rows", "summary"),
    "Health": _obj({"status": _STR}, "status"),
    "Readiness": _obj({"status": _STR, "checks": {"type": "object", "additionalProperties": _STR},
                       "workers": {"type": "array", "description": "Each live worker as its heartbeat reports it "
                                   "(device, detector and checkpoints \"unknown\"/null for an older worker).",
                                   "items": _obj({"name": _STR, "device": _STR, "detector": _ref("ReadyDetector"),
                                                  "checkpoints": {"type": ["array", "null"], "items": _STR}},
                                                 "name", "device", "detector", "checkpoints")},
                       "detector": _ref("ReadyDetector"),
                       "checkpoints": {"type": "array", "items": _STR,
                                       "description": "Checkpoint file names the live workers hold (the web "
                                                      "machine's WEIGHTS_DIR while none reports)."},
                       "warnings": {"type": "array", "items": _STR,
                                    "description": "Live workers on the Haar fallback, or that report nothing."}},
                      "status", "checks", "workers", "detector", "checkpoints", "warnings"),
    "ReadyDetector": _obj({"name": {"type": "string", "description": "What face_detector=auto resolves to: "
                                    "retinaface-<backbone>, opencv (the Haar fallback), mixed or unknown; "
                                    "retinaface when read from the web machine's files."},
                           "weights": {"type": "array", "items": _STR}, "note": _STR,
                           "source": {"enum": ["live workers", "web machine"]}}, "name", "weights"),
    "OpenAPI": {"type": "object", "description": "This document."},
}

_OPTION_DEFAULTS = AnalysisOptions().to_dict()


def _option_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of option `name`, from shared.options' declaration of its values and its help line
    (the pages show the same `description` beside the field)."""
    if name in INT_RANGES:
        low, high = INT_RANGES[name]
        schema: dict[str, Any] = {"type": "integer", "minimum": low, "maximum": high}
    elif name in CHOICES:
        schema = {"enum": list(CHOICES[name])}
    elif name == "weights":  # any other string is refused with 422 invalid_options
        schema = {"type": "string", "pattern": WEIGHTS_NAME.pattern}
    else:
        schema = {"type": "string"}
    if _OPTION_DEFAULTS[name] is not None:
        schema["default"] = _OPTION_DEFAULTS[name]
    return {**schema, "description": OPTION_HELP[name]}


OPTION_PROPERTIES = {name: _option_schema(name) for name in CLIENT_OPTIONS}
WEBHOOK_URL_PROPERTY = {"type": "string", "maxLength": MAX_URL_LENGTH, "description": (
    "Optional: an http(s) URL to POST a signed `job.completed` (or, for a batch, one `batch.completed` when "
    "every item ended) event to (Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature). No "
    "credentials in it; its host must resolve to public addresses unless the operator allows private ones. "
    "422 `invalid_webhook_url` otherwise, `webhooks_disabled` when the server has no WEBHOOK_SECRET.")}

JOB_UPLOAD_BODY: dict[str, Any] = {
    "required": True,
    "content": {"multipart/form-data": {"schema": _closed(_obj(
        {"video": {"type": "string", "format": "binary", "description": "The video file."}, **OPTION_PROPERTIES,
         "webhook_url": WEBHOOK_URL_PROPERTY},
        "video"))}},
}

BATCH_CREATE_BODY: dict[str, Any] = {
    "required": True,
    "content": {"application/json": {"schema": _closed(_obj({
        "name": {"type": "string", "description": "A label for people (e.g. the night's date)."},
        "options": _closed(_obj(OPTION_PROPERTIES)),
        "import": {"type": "object", "description": (
            'Files already on the server, relative to BATCH_IMPORT_ROOT: {"folder": "dir", "recursive": false} '
            'or {"paths": ["a.mp4"]}.')},
        # JSON null (like an empty string) means no webhook, as the server reads it.
        "webhook_url": {**WEBHOOK_URL_PROPERTY, "type": ["string", "null"]},
    }))}},
}

BATCH_ITEM_BODY: dict[str, Any] = {
    "required": True,
    "content": {"multipart/form-data": {"schema": _closed(_obj({
        "video": {"type": "string", "format": "binary", "description": "The video file."},
        "path": {"type": "string", "description": "The file's path as the user knows it (shown in the report)."},
    }, "video"))}},
}
