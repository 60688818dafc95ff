"""JSON Schema declarations of the API's documents (the `components` of the OpenAPI document)."""
from __future__ import annotations

from typing import Any


def _obj(properties: dict[str, Any], *required: str) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required)}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_STR = {"type": "string"}
_INT = {"type": "integer"}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_PROB = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
JOB_STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"]

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
                        "upload_name": _STR, "verdict": {"type": ["string", "null"]},
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
    "Health": _obj({"status": _STR}, "status"),
    "Readiness": _obj({"status": _STR, "checks": {"type": "object", "additionalProperties": _STR}},
                      "status", "checks"),
    "OpenAPI": {"type": "object", "description": "This document."},
}

OPTION_PROPERTIES = {
    "sequence_length": {"type": "integer", "minimum": 1, "maximum": 1000},
    "window_stride": {"type": "integer", "minimum": 1, "maximum": 1000},
    "frame_stride": {"type": "integer", "minimum": 1, "maximum": 1000},
    "detect_every": {"type": "integer", "minimum": 1, "maximum": 1000},
    "full_detect_every": {"type": "integer", "minimum": 1, "maximum": 1000},
    "face_detector": {"enum": ["auto", "retinaface", "opencv", "none"]},
    "precision": {"enum": ["auto", "fp32", "bf16", "int8"]},
    "weights": {"type": "string", "description": "A checkpoint file name in the server's weights directory."},
}

JOB_UPLOAD_BODY: dict[str, Any] = {
    "required": True,
    "content": {"multipart/form-data": {"schema": _obj(
        {"video": {"type": "string", "format": "binary", "description": "The video file."}, **OPTION_PROPERTIES},
        "video")}},
}
