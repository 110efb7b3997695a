"""Webhook delivery: once a job submitted with `fal_webhook` completes, POST its outcome there.

Best effort and off the request path, as at fal: one attempt with a short timeout, never with the
caller's Authorization header (the webhook URL is a third party; `trust_env=False` also keeps netrc
credentials and proxies out), never following a redirect. Every attempt is recorded so a
test can see what was sent even without a receiver.

Unlike fal, the sandbox is a local fake that promises nothing leaves the machine, and whoever submits a job
chooses where its webhook goes. So it delivers only to a loopback address (`127.0.0.0/8`, `::1`, `localhost`),
never to another host, a private network or a cloud metadata address; and when its callers may be remote (a
`fal-mcp --sandbox` serving the network), only to `only_path` on loopback (fal-mcp's own webhook route), not
to whatever else listens there. A refused delivery is recorded with the reason and sends nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

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


def refusal(url: str, only_path: str | None = None) -> str | None:
    """Why the sandbox will not deliver to `url`, or None when it may."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return "refused: not a URL"
    if parts.scheme not in ("http", "https"):
        return "refused: the sandbox delivers webhooks over http(s) only"
    if host.lower() != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            return "refused: the sandbox delivers webhooks only to loopback addresses (nothing leaves the machine)"
    if only_path is not None and parts.path != only_path:
        return f"refused: this sandbox delivers webhooks only to {only_path} on loopback"
    return None


async def deliver_when_done(
    job: Job,
    url: str,
    clock: Callable[[], float],
    record: Callable[[WebhookDelivery], None],
    only_path: str | None = None,
) -> None:
    """Wait for `job` to complete, then POST its webhook body to `url` (if `refusal` allows)."""
    # Polled, not awaited on an event: the end is a clock time, and a cancel can move it earlier.
    while (now := clock()) < job.end:  # noqa: ASYNC110
        await asyncio.sleep(min(job.end - now, POLL_S))
    outcome = job.outcome()
    if outcome is None:  # pragma: no cover - the loop above waited for the end
        return
    body = job.webhook_body(outcome)
    refused = refusal(url, only_path)
    if refused is not None:
        logger.warning("webhook for %s not delivered: %s", job.request_id, refused)
        record(WebhookDelivery(url, body, None, refused))
        return
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_S, trust_env=False) as client:
            answer = await client.post(url, json=body, headers={"user-agent": "fal-sandbox-webhook"})
    except httpx.HTTPError as exc:
        logger.warning("webhook for %s to %s failed: %s", job.request_id, url, exc)
        record(WebhookDelivery(url, body, None, str(exc) or type(exc).__name__))
        return
    record(WebhookDelivery(url, body, answer.status_code, None))
