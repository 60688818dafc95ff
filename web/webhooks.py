"""The `webhook_url` a client may give with a job or a batch: checked here, recorded with it (shared.db.webhooks).

Refused with 422: `webhooks_disabled` when the operator set no WEBHOOK_SECRET (nothing could be signed), and
`invalid_webhook_url` for a URL the service will not call (shared.webhooks.check_url says why).
"""
from __future__ import annotations

from typing import Any

from shared.webhooks import WebhookUrlError, check_url
from web.context import current_settings
from web.errors import ApiError

WEBHOOK_FIELD = "webhook_url"


class WebhooksDisabledError(ApiError):
    status = 422
    code = "webhooks_disabled"


class InvalidWebhookUrlError(ApiError):
    status = 422
    code = "invalid_webhook_url"


def checked_webhook_url(raw: Any) -> str | None:
    """The client's webhook URL once checked (None when none was given), else a 422."""
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return None
    settings = current_settings()
    if not settings.webhook_secret:
        raise WebhooksDisabledError("webhooks are disabled on this server: the operator has not set WEBHOOK_SECRET")
    try:
        check_url(raw, allow_private=settings.webhook_allow_private)
    except WebhookUrlError as exc:
        raise InvalidWebhookUrlError(str(exc)) from None
    return raw


def announce_cancelled(*, job_ids: list[str], batch_id: str | None = None) -> None:
    """Jobs the web just cancelled while queued (no worker will see them end): arm their webhook events, and
    the batch's if that ended it, and send them now. Best effort: what is not sent here, the workers'
    reaper pass arms and sends (within its interval)."""
    from shared.db import webhooks as event_store
    from web.db import get_session
    from web.queue import EnqueueError, enqueue_webhook

    session = get_session()
    armed = [event_id for job_id in job_ids for event_id in event_store.arm_job(session=session, job_id=job_id)]
    if batch_id is not None:
        armed += event_store.arm_batch(session=session, batch_id=batch_id,
                                       settle_s=current_settings().webhook_batch_settle_s)
    session.commit()
    try:
        for event_id in armed:
            enqueue_webhook(event_id)
    except EnqueueError:
        pass  # armed and due: the reaper's pass sends it once overdue
