"""fal's webhook deliveries as they bear on requests, whichever replica receives them and whichever waits.

- **Where fal pushes** (`webhook_url`): `<FAL_MCP_PUBLIC_URL>/webhooks/fal`, added to every submit that names no
  webhook of its own, when this server serves HTTP at a URL fal can reach. A loopback or private address is not one
  (unless fal itself is on loopback: the sandbox), so a public URL meant only for clients costs no wait.
- **What a delivery changes** (`accept`, called by the webhook route once the signature checked out): only a request
  this server submitted with its webhook (`Deliveries.awaited`) is touched. The delivery is kept once (a repeat is a
  duplicate and changes nothing), which wakes the call waiting for it on any replica; then the request's history
  row takes its state, error and media, and the running-jobs guard stops counting it.
- **How a call waits** (`pushed_or_followed`): for the delivery first, woken the moment any replica records it; only
  when none came within `FAL_MCP_WEBHOOK_GRACE_S` of the submit does it also follow the request at fal (stream, then
  polling), and whichever ends first answers. So a job that ends within the grace period costs fal one request, the
  submit, and a longer one still completes.
- **What a waiting call reads** (`pushed`): the delivery as a terminal status plus the output, or the failure the
  streaming path would have raised, so `run-model` and `get-result` answer from it without asking fal. A delivery
  is answered from for `RESULT_LIFETIME_S` (as long as fal keeps a result); after that fal is asked, as before.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio

from fal_mcp.fal.errors import FalAPIError, FalRequestFailed, api_error, json_field
from fal_mcp.fal.queue_status import COMPLETED, QueueStatus
from fal_mcp.fal.webhooks import WebhookBody
from fal_mcp.jobs.state import AppState
from fal_mcp.jobs.waiting import history_state
from fal_mcp.settings import Settings, is_loopback_host
from fal_mcp.store.database import StoreUnavailable
from fal_mcp.store.deliveries import Awaited, Delivery

logger = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/fal"
RESULT_LIFETIME_S = 3600.0
"""How long a delivered output stands in for fal's result (fal keeps results for a limited time too)."""
UNKNOWN_PATIENCE_S = 1.0
"""A delivery can overtake the note its submit writes once fal answered: it looks again for this long."""
UNKNOWN_STEP_S = 0.05

Acceptance = Literal["accepted", "duplicate", "unknown"]


def webhook_url(settings: Settings) -> str | None:
    """Where fal should push this server's requests, or None when it cannot (no public URL, not serving HTTP, or a
    public URL fal cannot reach)."""
    if not settings.public_url or settings.transport != "http":
        return None
    host = urlsplit(settings.public_url).hostname or ""
    fal_host = urlsplit(settings.queue_url).hostname or ""
    if not reachable_from_outside(host) and not is_loopback_host(fal_host):
        return None
    return settings.public_url + WEBHOOK_PATH


def reachable_from_outside(host: str) -> bool:
    """A name (resolved by fal, not here), or a global address: not loopback, private, link-local, documentation."""
    if is_loopback_host(host):
        return False
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return True
    return address.is_global


@dataclass(frozen=True, slots=True)
class Pushed:
    """A delivery as a waiting call reads it."""

    status: QueueStatus
    output: Any
    failure: FalRequestFailed | None
    has_output: bool
    """False when fal could not put the output in the webhook (`payload_error`): fetch it from fal."""


def pushed(delivery: Delivery) -> Pushed:
    body = WebhookBody.from_outcome(delivery.request_id, delivery.outcome)
    rid = delivery.request_id
    if body.ok:
        status = QueueStatus(status=COMPLETED, request_id=rid)
        return Pushed(status, body.payload, None, has_output=body.payload_error is None)
    code = body.status_code
    cause: FalAPIError | None = None
    if code is not None and code >= 400:
        cause = api_error(code, body.payload, reason=body.error or "no detail", request_id=rid)
    raw_type = json_field(body.payload, "error_type")
    error_type = cause.error_type if cause is not None else (str(raw_type) if raw_type else None)
    error = body.error or (cause.detail if cause is not None else None) or "fal reported that the request failed"
    status = QueueStatus(status=COMPLETED, request_id=rid, error=error, error_type=error_type)
    failure = FalRequestFailed(error, error_type=error_type, request_id=rid, cause=cause)
    return Pushed(status, None, failure, has_output=False)


async def awaited_by(state: AppState, partition: str, request_id: str) -> Awaited | None:
    """The note of a request submitted with this server's webhook, when it is this partition's."""
    try:
        awaited = await state.store.deliveries.awaited(request_id)
    except StoreUnavailable as exc:
        logger.warning("request %s: cannot look for fal's webhook (%s)", request_id, exc)
        return None
    return awaited if awaited is not None and awaited.partition == partition else None


async def delivered(state: AppState, request_id: str) -> Pushed | None:
    """The delivery of an awaited request, if fal made it and it still stands in for fal's result."""
    try:
        delivery = await state.store.deliveries.get(request_id)
    except StoreUnavailable as exc:
        logger.warning("request %s: cannot read fal's webhook (%s)", request_id, exc)
        return None
    if delivery is None or time.time() - delivery.received_at > RESULT_LIFETIME_S:
        return None
    return pushed(delivery)


async def accept(state: AppState, body: WebhookBody) -> Acceptance:
    """Take a verified delivery in: `unknown` for a request this server did not submit with its webhook (nothing
    changes), `duplicate` for one already taken (nothing changes), else `accepted`."""
    deliveries = state.store.deliveries
    awaited = await deliveries.awaited(body.request_id)
    with anyio.move_on_after(UNKNOWN_PATIENCE_S):
        while awaited is None:
            await anyio.sleep(UNKNOWN_STEP_S)
            awaited = await deliveries.awaited(body.request_id)
    if awaited is None:
        return "unknown"
    outcome = body.outcome()
    if not await deliveries.record(body.request_id, outcome):
        return "duplicate"
    got = pushed(Delivery(body.request_id, outcome, time.time()))
    await state.history.observe(
        awaited.partition,
        body.request_id,
        history_state(got.status),
        error=got.status.error,
        error_type=got.status.error_type,
        output=got.output if got.has_output else None,
    )
    await state.guards.ended(awaited.partition, body.request_id)
    return "accepted"


async def pushed_or_followed(
    state: AppState,
    awaited: Awaited,
    budget_s: float,
    following: Callable[[float], Awaitable[QueueStatus]],
) -> Pushed | QueueStatus | None:
    """Wait up to `budget_s` for the request's delivery; once the grace period after its submit is over (or the
    store cannot be used to wait), also follow it at fal with `following(budget left)`. The delivery, or the last
    status the follow saw, whichever came first; None when the budget ran out with neither."""
    deadline = anyio.current_time() + budget_s
    grace_left = awaited.submitted_at + state.settings.webhook_grace_s - time.time()
    store_failed = anyio.Event()
    found: list[Pushed | QueueStatus] = []
    failed: list[Exception] = []  # raised as itself below, not inside the task group's ExceptionGroup

    async with anyio.create_task_group() as group:

        async def watch() -> None:
            try:
                delivery = await state.store.deliveries.wait(awaited.request_id, budget_s)
            except StoreUnavailable as exc:
                logger.warning("waiting for fal's webhook of %s: %s; following it at fal", awaited.request_id, exc)
                store_failed.set()
                return
            if delivery is not None and time.time() - delivery.received_at <= RESULT_LIFETIME_S:
                found.append(pushed(delivery))
                group.cancel_scope.cancel()

        async def fall_back() -> None:
            with anyio.move_on_after(min(grace_left, budget_s)):
                await store_failed.wait()
            left = deadline - anyio.current_time()
            if left <= 0:
                return
            try:
                found.append(await following(left))
            except Exception as exc:
                failed.append(exc)
            group.cancel_scope.cancel()

        group.start_soon(watch)
        group.start_soon(fall_back)
    if failed:
        raise failed[0]
    return found[0] if found else None
