"""Webhook delivery: once a job submitted with `fal_webhook` completes, POST its outcome there.

Best effort and off the request path, as at fal: one attempt with a short timeout, never with the
caller's Authorization header (the webhook URL is a third party; `trust_env=False` also keeps netrc
credentials and proxies out). Every attempt is recorded so a
test can see what was sent even without a receiver.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from fal_mcp.sandbox.models.inputs import JsonObject
from fal_mcp.sandbox.queue.jobs import Job

logger = logging.getLogger("fal_mcp.sandbox")

TIMEOUT_S = 5.0
POLL_S = 0.1


@dataclass(frozen=True)
class WebhookDelivery:
    """One delivery attempt: what was posted where, and how it went."""

    url: str
    body: JsonObject
    status_code: int | None
    """The receiver's answer, or None when it could not be reached."""
    error: str | None


async def deliver_when_done(
    job: Job,
    url: str,
    clock: Callable[[], float],
    record: Callable[[WebhookDelivery], None],
) -> None:
    """Wait for `job` to complete, then POST its webhook body to `url`."""
    # Polled, not awaited on an event: the end is a clock time, and a cancel can move it earlier.
    while (now := clock()) < job.end:  # noqa: ASYNC110
        await asyncio.sleep(min(job.end - now, POLL_S))
    outcome = job.outcome()
    if outcome is None:  # pragma: no cover - the loop above waited for the end
        return
    body = job.webhook_body(outcome)
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_S, trust_env=False) as client:
            answer = await client.post(url, json=body, headers={"user-agent": "fal-sandbox-webhook"})
    except httpx.HTTPError as exc:
        logger.warning("webhook for %s to %s failed: %s", job.request_id, url, exc)
        record(WebhookDelivery(url, body, None, str(exc) or type(exc).__name__))
        return
    record(WebhookDelivery(url, body, answer.status_code, None))
