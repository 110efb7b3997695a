"""Decoding fal's error answers, the retry rule, and how failures are worded for the model."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from fal_mcp.fal.errors import (
    FalAPIError,
    FalAuthError,
    FalNotFoundError,
    FalProtocolError,
    FalRateLimitError,
    FalRequestFailed,
    FalServerError,
    FalTransportError,
    FalValidationError,
    answer_lost,
    decode_response_error,
    parse_retry_after,
)
from fal_mcp.fal.retry import RetryPolicy, is_retryable
from fal_mcp.jobs.failures import AfterSubmit, explain

NGINX_503 = (
    "<html><head><title>503 Service Temporarily Unavailable</title></head><body><center>nginx</center></body></html>"
)


def response(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("GET", "https://queue.fal.run/fal-ai/flux/requests/r1/status")
    if isinstance(body, str):
        return httpx.Response(status, text=body, headers=headers, request=request)
    return httpx.Response(
        status, content=json.dumps(body).encode() if body is not None else b"", headers=headers, request=request
    )


@pytest.mark.parametrize(
    ("status", "body", "headers", "cls", "detail", "error_type"),
    [
        (
            401,
            {"detail": "No user found for Key ID and Secret"},
            {},
            FalAuthError,
            "No user found for Key ID and Secret",
            None,
        ),
        (
            403,
            {"detail": "User is locked. Reason: Exhausted balance."},
            {},
            FalAuthError,
            "User is locked. Reason: Exhausted balance.",
            None,
        ),
        (404, {"detail": "Application 'x' not found"}, {}, FalNotFoundError, "Application 'x' not found", None),
        (404, {"status": "NOT_FOUND"}, {}, FalNotFoundError, "NOT_FOUND", None),
        (
            422,
            {
                "detail": [
                    {"loc": ["body", "prompt"], "msg": "field required", "type": "value_error.missing"},
                    {"loc": ["body", "image_size"], "msg": "value is not a valid enumeration member", "type": "enum"},
                ]
            },
            {},
            FalValidationError,
            "prompt: field required; image_size: value is not a valid enumeration member",
            None,
        ),
        (422, {"detail": "prompt is too long"}, {}, FalValidationError, "prompt is too long", None),
        (429, {"detail": "Too many requests"}, {"Retry-After": "3"}, FalRateLimitError, "Too many requests", None),
        (
            500,
            {"detail": "Runner failed", "error_type": "runner_server_error"},
            {},
            FalServerError,
            "Runner failed",
            "runner_server_error",
        ),
        (
            504,
            {"detail": "Request timed out"},
            {"X-Fal-Error-Type": "request_timeout"},
            FalServerError,
            "Request timed out",
            "request_timeout",
        ),
        (503, NGINX_503, {}, FalServerError, "503 Service Temporarily Unavailable nginx", None),
        (
            499,
            {"detail": "Client disconnected", "error_type": "client_disconnected"},
            {},
            FalServerError,
            "Client disconnected",
            "client_disconnected",
        ),
        (400, {"status": "ALREADY_COMPLETED"}, {}, FalAPIError, "ALREADY_COMPLETED", None),
        (400, None, {}, FalAPIError, "Bad Request", None),
        (418, {"detail": {"nested": True}}, {}, FalAPIError, '{"nested": true}', None),
    ],
)
def test_decode_error_bodies(
    status: int, body: Any, headers: dict[str, str], cls: type[FalAPIError], detail: str, error_type: str | None
) -> None:
    error = decode_response_error(response(status, body, headers))
    assert type(error) is cls
    assert error.status_code == status
    assert " ".join(error.detail.split()) == detail
    assert error.error_type == error_type


def test_field_errors_drop_the_body_prefix() -> None:
    error = decode_response_error(
        response(422, {"detail": [{"loc": ["body", "loras", 0, "path"], "msg": "bad", "type": "x", "url": "u"}]})
    )
    assert [str(f) for f in error.field_errors] == ["loras.0.path: bad"]


@pytest.mark.parametrize(
    ("value", "seconds"), [(None, None), ("3", 3.0), ("0.5", 0.5), ("-1", 0.0), ("Wed, 21 Oct 2026 07:28:00 GMT", 1.0)]
)
def test_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


def _api(status: int, headers: dict[str, str] | None = None, body: Any = None) -> FalAPIError:
    return decode_response_error(response(status, body if body is not None else {"detail": "x"}, headers))


@pytest.mark.parametrize(
    ("error", "idempotent", "retry"),
    [
        (FalTransportError("x", maybe_sent=False), False, True),  # could not connect: safe even for submit
        (FalTransportError("x", maybe_sent=True), False, False),  # may have reached fal: never re-submit
        (FalTransportError("x", maybe_sent=True), True, True),
        (_api(429), True, True),
        (_api(429), False, False),
        (_api(503), True, True),  # no x-fal-request-id: the ingress answered
        (_api(503, {"x-fal-request-id": "r1"}), True, False),  # a fal app answered 503: not ours to repeat
        (_api(504, {"X-Fal-Request-Timeout-Type": "user"}), True, False),
        (_api(502, body=NGINX_503), True, True),
        (_api(502), False, False),
        (_api(500), True, False),
        (_api(404), True, False),
        (_api(422), True, False),
        (_api(401), True, False),
    ],
)
def test_retry_rule(error: Exception, idempotent: bool, retry: bool) -> None:
    assert isinstance(error, FalTransportError | FalAPIError)
    assert is_retryable(error, idempotent=idempotent) is retry


@pytest.mark.parametrize(
    ("error", "lost"),
    [
        (FalTransportError("x", maybe_sent=True), True),  # the connection broke once the request may have arrived
        (FalProtocolError("x"), True),  # fal answered 2xx: it took the request, the answer was unreadable
        (FalTransportError("x", maybe_sent=False), False),  # never connected: nothing reached fal
        (_api(429), False),  # refused: nothing was queued
        (_api(503), False),
    ],
)
def test_answer_lost(error: Exception, lost: bool) -> None:
    assert answer_lost(error) is lost


@pytest.mark.parametrize(
    ("error", "ran"),
    [
        (_api(500), True),  # fal's app failed it: it happened
        (_api(503, {"x-fal-request-id": "r1"}), True),
        (_api(499), True),
        (_api(503), False),  # the ingress answered: no fal app saw it
        (_api(504, {"X-Fal-Request-Timeout-Type": "user"}), True),  # fal timed it out waiting for a runner
        (_api(429), False),
        (_api(422), False),
    ],
)
def test_ran(error: FalAPIError, ran: bool) -> None:
    assert error.ran is ran


def test_backoff_is_bounded_and_jittered() -> None:
    policy = RetryPolicy(retries=6, base_delay_s=0.25, max_delay_s=2.0)
    delays = [policy.backoff(n) for n in range(1, 7) for _ in range(20)]
    assert all(0.125 <= d <= 2.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 10  # jittered, not a fixed schedule
    assert policy.delay_before_retry(_api(503), 7, idempotent=True) is None  # attempts are bounded


def test_retry_after_is_honoured_within_the_budget() -> None:
    policy = RetryPolicy(retries=3, max_retry_after_s=5)
    assert policy.delay_before_retry(_api(429, {"Retry-After": "2"}), 1, idempotent=True) == pytest.approx(2.0, abs=0.2)
    assert policy.delay_before_retry(_api(429, {"Retry-After": "60"}), 1, idempotent=True) is None


@pytest.mark.parametrize(
    ("error", "action", "expected"),
    [
        (
            _api(401, body={"detail": "No user found for Key ID and Secret"}),
            "run-model",
            ["401", "No user found", "FAL_KEY"],
        ),
        (_api(403, body={"detail": "User is locked. Reason: Exhausted balance."}), "submit", ["403", "locked"]),
        (
            _api(422, body={"detail": [{"loc": ["body", "prompt"], "msg": "field required", "type": "missing"}]}),
            "run-model",
            ["422", "prompt: field required", "Fix"],
        ),
        (_api(404), "submit", ["no endpoint", "fal-ai/flux/schnell", "404"]),
        (_api(404), "get-status", ["no request", "r1", "404"]),
        (_api(429, {"Retry-After": "7"}), "submit", ["429", "Nothing was queued", "7s"]),
        (
            _api(503, body={"detail": "down", "error_type": "runner_scheduling_failure"}),
            "get-result",
            ["503", "runner_scheduling_failure", "down"],
        ),
        (
            FalTransportError("submit to fal-ai/flux/schnell: the connection broke", maybe_sent=True),
            "submit",
            ["may have received", "not re-sent", "twice"],
        ),
        (
            FalTransportError("status of r1: could not connect to queue.fal.run", maybe_sent=False),
            "get-status",
            ["could not connect", "retry"],
        ),
        (
            FalRequestFailed("Runner crashed", error_type="runner_server_error", request_id="r1"),
            "run-model",
            ["r1", "failed", "runner_server_error", "Runner crashed"],
        ),
        (
            AfterSubmit("r1", "fal-ai/flux/schnell", FalTransportError("status of r1: broke", maybe_sent=True)),
            "run-model",
            ["r1", "do not run it again", "get-result"],
        ),
    ],
)
def test_explain_is_actionable(error: Exception, action: str, expected: list[str]) -> None:
    message = explain(error, action=action, endpoint="fal-ai/flux/schnell", request_id="r1")
    assert message.startswith(action)
    for fragment in expected:
        assert fragment in message, message
    assert "\n" not in message
