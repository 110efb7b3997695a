"""Webhook delivery: once a job submitted with `fal_webhook` completes, POST its outcome there, signed.

As at fal: off the request path, signed with the fake's key (`signing`), and retried until the receiver answers
2xx, at most `len(RETRY_DELAYS_S)` times over about two hours (each delay times the fake's `time_scale`), each
attempt signed afresh. Never with the caller's Authorization header (the webhook URL is a third party;
`trust_env=False` also keeps netrc credentials and proxies out), never following a redirect. Every attempt is
recorded, with the exact bytes and headers sent, so a test can see (and replay) what was sent even without a
receiver.

Unlike fal, the sandbox is a local fake that promises nothing leaves the machine, and whoever submits a job
chooses where its webhook goes. So it delivers only to a loopback address (`127.0.0.0/8`, `::1`, `localhost`),
never to another host, a private network or a cloud metadata address; and when its callers may be remote (a
`fal-mcp --sandbox` serving the network), only to `only_path` on loopback (fal-mcp's own webhook route), not
to whatever else listens there. The one exception is a URL its operator named (`allowed_urls`: fal-mcp's own
public webhook URL), which no caller can choose. A refused delivery is recorded with the reason and sends nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from fal_mcp.sandbox.models.inputs import JsonObject
from fal_mcp.sandbox.queue.jobs import Job
from fal_mcp.sandbox.webhooks.signing import WebhookSigner, user_id_of

logger = logging.getLogger("fal_mcp.sandbox")

TIMEOUT_S = 5.0
POLL_S = 0.1
RETRY_DELAYS_S = (10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0, 1280.0, 1800.0, 1800.0)
"""fal's schedule: the waits before each retry of a delivery that got no 2xx (about two hours in all)."""


@dataclass(frozen=True)
class WebhookDelivery:
    """One delivery attempt: what was posted where, and how it went."""

    url: str
    body: JsonObject
    status_code: int | None
    """The receiver's answer, or None when it could not be reached (or the delivery was refused)."""
    error: str | None
    attempt: int = 1
    content: bytes = b""
    """The exact bytes posted (what a signature covers)."""
    headers: Mapping[str, str] = field(default_factory=dict[str, str])
    sent_at: float = 0.0
    """`time.monotonic()` when it was sent."""


@dataclass(frozen=True)
class Webhooks:
    """How the fake delivers: who signs, where it may deliver, and its delay scale."""

    signer: WebhookSigner
    record: Callable[[WebhookDelivery], None]
    only_path: str | None = None
    allowed_urls: Collection[str] = ()
    time_scale: Callable[[], float] = lambda: 1.0


def refusal(url: str, only_path: str | None = None, allowed_urls: Collection[str] = ()) -> str | None:
    """Why the sandbox will not deliver to `url`, or None when it may."""
    if url in allowed_urls:
        return None
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


async def deliver_when_done(job: Job, url: str, clock: Callable[[], float], webhooks: Webhooks) -> None:
    """Wait for `job` to complete, then POST its signed webhook body to `url` (if `refusal` allows) until the
    receiver answers 2xx or the retries run out."""
    # Polled, not awaited on an event: the end is a clock time, and a cancel can move it earlier.
    while (now := clock()) < job.end:  # noqa: ASYNC110
        await asyncio.sleep(min(job.end - now, POLL_S))
    outcome = job.outcome()
    if outcome is None:  # pragma: no cover - the loop above waited for the end
        return
    body = job.webhook_body(outcome)
    refused = refusal(url, webhooks.only_path, webhooks.allowed_urls)
    if refused is not None:
        logger.warning("webhook for %s not delivered: %s", job.request_id, refused)
        webhooks.record(WebhookDelivery(url, body, None, refused))
        return
    content = json.dumps(body, separators=(",", ":")).encode()
    async with httpx.AsyncClient(timeout=TIMEOUT_S, trust_env=False) as client:
        for attempt, delay_s in enumerate((*RETRY_DELAYS_S, None), start=1):
            if await _attempt(client, job, url, body, content, attempt, webhooks):
                return
            if delay_s is not None:
                await asyncio.sleep(delay_s * webhooks.time_scale())
    logger.warning(
        "webhook for %s to %s: no 2xx after %d attempts; given up", job.request_id, url, len(RETRY_DELAYS_S) + 1
    )


async def _attempt(
    client: httpx.AsyncClient, job: Job, url: str, body: JsonObject, content: bytes, attempt: int, webhooks: Webhooks
) -> bool:
    """One signed POST; True when the receiver took it (2xx)."""
    headers = {
        **webhooks.signer.sign(job.request_id, user_id_of(job.owner_key), content),
        "user-agent": "fal-sandbox-webhook",
        "content-type": "application/json",
    }
    sent_at = time.monotonic()
    try:
        answer = await client.post(url, content=content, headers=headers)
    except httpx.HTTPError as exc:
        logger.warning("webhook for %s to %s failed: %s", job.request_id, url, exc)
        error = str(exc) or type(exc).__name__
        webhooks.record(WebhookDelivery(url, body, None, error, attempt, content, headers, sent_at))
        return False
    webhooks.record(WebhookDelivery(url, body, answer.status_code, None, attempt, content, headers, sent_at))
    return answer.is_success
