"""Completion webhooks, signed per the Standard Webhooks scheme (https://www.standardwebhooks.com/).

What the web checks at submission and the worker again before each delivery: only http(s) URLs, no
credentials in them, bounded length, and every address the host resolves to public (not loopback,
private, link-local, multicast, reserved or unspecified) unless the operator allows private ones
(WEBHOOK_ALLOW_PRIVATE=1). The worker then connects to an address it checked, never resolving again.

Signing: `webhook-signature: v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">` with
the secret's bytes (WEBHOOK_SECRET, `whsec_` + base64). Standard library only: the web and the worker use it.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import socket
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

DELIVER_TASK = "deepfake.deliver_webhook"
JOB_COMPLETED = "job.completed"
BATCH_COMPLETED = "batch.completed"
SECRET_PREFIX = "whsec_"
# Long enough for any real endpoint with a query string; short enough to store and log.
MAX_URL_LENGTH = 2048
SCHEMES = {"http": 80, "https": 443}

Resolver = Callable[[str, int], list[str]]


class WebhookUrlError(ValueError):
    """A webhook URL the service will not call (scheme, credentials, length, or where it points)."""


class WebhookSecretError(ValueError):
    """WEBHOOK_SECRET is not `whsec_` followed by base64."""


@dataclass(frozen=True)
class Target:
    """Where to deliver: the URL's parts and the addresses that were checked for it."""

    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent in the request line
    addresses: tuple[str, ...]

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == SCHEMES[self.scheme] else f"{host}:{self.port}"


def new_event_id() -> str:
    """A webhook-id: unique per event, the same on every attempt to deliver it."""
    return f"msg_{uuid.uuid4().hex}"


def secret_key(secret: str) -> bytes:
    """The signing key of a `whsec_<base64>` secret (WebhookSecretError when it is not one)."""
    if not secret.startswith(SECRET_PREFIX):
        raise WebhookSecretError(f"WEBHOOK_SECRET must start with {SECRET_PREFIX!r} followed by base64")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except binascii.Error:
        raise WebhookSecretError("WEBHOOK_SECRET must be 'whsec_' followed by base64") from None
    if len(key) < 16:  # the scheme's recommendation is 24 to 64 bytes; fewer than 16 is guessable
        raise WebhookSecretError("WEBHOOK_SECRET's key must be at least 16 bytes (24 to 64 recommended)")
    return key


def sign(*, secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header's value for one attempt."""
    signed = f"{event_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return f"v1,{base64.b64encode(digest).decode()}"


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """The request body: the same bytes for the same payload on every attempt."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def check_url(url: Any, *, allow_private: bool, resolve: Resolver | None = None) -> Target:
    """The delivery target of `url`, or WebhookUrlError saying why it is refused.

    The host is resolved (with `resolve`, default the system's resolver) and every address checked,
    unless `allow_private`; then it is resolved only when `resolve` is given (delivery needs addresses).
    """
    if not isinstance(url, str) or not url:
        raise WebhookUrlError("webhook_url must be a non-empty string")
    if len(url) > MAX_URL_LENGTH:
        raise WebhookUrlError(f"webhook_url is longer than {MAX_URL_LENGTH} characters")
    if any(not ch.isprintable() or ch.isspace() for ch in url):
        raise WebhookUrlError("webhook_url must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookUrlError("webhook_url is not a valid URL (bad host or port)") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise WebhookUrlError(f"webhook_url must be an http or https URL; got scheme {parts.scheme!r}")
    if "@" in parts.netloc:
        raise WebhookUrlError("webhook_url must not carry credentials (user:password@)")
    host = parts.hostname
    if not host:
        raise WebhookUrlError("webhook_url has no host")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    port = port or SCHEMES[scheme]
    if allow_private and resolve is None:
        return Target(scheme, host, port, path, ())
    addresses = tuple((resolve or resolve_host)(host, port))
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                raise WebhookUrlError(f"webhook_url's host {host!r} resolves to {address}, a loopback, private, "
                                      "link-local, multicast or reserved address (the operator may allow them "
                                      "with WEBHOOK_ALLOW_PRIVATE=1)")
    return Target(scheme, host, port, path, addresses)


def resolve_host(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in the resolver's order (WebhookUrlError if none)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise WebhookUrlError(f"webhook_url's host {host!r} does not resolve: {exc}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise WebhookUrlError(f"webhook_url's host {host!r} has no address")
    return addresses


def is_public(address: str) -> bool:
    """Whether `address` is a globally routable unicast address (IPv4 inside IPv6 judged as IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and not is_public(str(embedded)):
            return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_link_local or ip.is_loopback)


def job_event(*, job_id: str, status: str, verdict: str | None, fake_probability: float | None,
              error_code: str | None, error_message: str | None, timestamp: str) -> dict[str, Any]:
    """The `job.completed` payload (ids and paths only: the receiver fetches details with its API key)."""
    error = {"code": error_code, "message": error_message} if error_code else None
    return {"type": JOB_COMPLETED, "timestamp": timestamp, "data": {
        "id": job_id, "status": status, "verdict": verdict, "fake_probability": fake_probability, "error": error,
        "links": {"self": f"/api/v1/jobs/{job_id}", "artifacts": f"/api/v1/jobs/{job_id}/artifacts",
                  "page": f"/jobs/{job_id}"}}}


def batch_event(*, batch_id: str, counts: Mapping[str, int], verdicts: Mapping[str, int],
                fake_probability: float | None, timestamp: str) -> dict[str, Any]:
    """The `batch.completed` payload: status `completed`, the items per status and per verdict, and the highest
    item probability; `verdict` and `error` stay null (a batch has none of its own; see each item's)."""
    return {"type": BATCH_COMPLETED, "timestamp": timestamp, "data": {
        "id": batch_id, "status": "completed", "verdict": None, "fake_probability": fake_probability,
        "error": None, "counts": dict(counts), "verdicts": dict(verdicts),
        "links": {"self": f"/api/v1/batches/{batch_id}", "results": f"/api/v1/batches/{batch_id}/results.json",
                  "page": f"/batches/{batch_id}"}}}
