"""cli.busy: how long a client waits on a 429 (the real service's answers are in test_client and test_batch)."""
from __future__ import annotations

import pytest

from cli import busy
from cli.busy import ServiceBusyError, busy_error, retry_after_s


@pytest.mark.parametrize("raw, seconds", [("42", 42.0), (" 7 ", 7.0), ("0", 0.0), (None, None), ("", None),
                                          ("soon", None), ("-3", None), ("inf", None),
                                          ("Wed, 21 Oct 2026 07:28:00 GMT", None)])
def test_retry_after_is_read_as_seconds(raw, seconds):
    assert retry_after_s(raw) == seconds


@pytest.mark.parametrize("asked, waited", [(42, 42), (0, 1), (600, busy.MAX_WAIT_S), (None, busy.DEFAULT_WAIT_S)])
def test_one_wait_is_what_the_service_asked_within_bounds(asked, waited):
    assert ServiceBusyError("busy", code="rate_limited", retry_after_s=asked).wait_s() == waited


def test_only_a_429_is_busy_and_it_carries_the_services_code_and_message():
    body = {"error": {"code": "rate_limited", "message": "more than 2 writes a minute"}}

    busy_answer = busy_error(429, {"Retry-After": "12"}, body)

    assert (busy_answer.code, busy_answer.message, busy_answer.retry_after_s) == (
        "rate_limited", "more than 2 writes a minute", 12.0)
    assert busy_error(413, {}, body) is None and busy_error(200, {}, {}) is None


def test_waiting_stops_at_the_patience_and_says_each_wait(monkeypatch, capsys):
    waits = []
    monkeypatch.setattr(busy, "pause", waits.append)

    def always_busy():
        raise ServiceBusyError("wait", code="too_many_active_jobs", retry_after_s=None)

    with pytest.raises(ServiceBusyError):
        busy.send_patiently(always_busy, label="clip.mp4", patience_s=35)

    assert waits == [10.0, 10.0, 10.0]
    assert capsys.readouterr().err.count("clip.mp4: the service is busy [too_many_active_jobs]: wait;") == 3
