"""Following a queued request until it is done or the caller's wait budget runs out.

fal's status stream comes first: one open request that hears every change the moment fal makes it, so a
finished job costs submit + stream + result and its output is fetched as soon as fal completes it. When the
stream is refused or breaks, polling takes over for the rest of the budget: it starts fast (a quick model
is done within a second or two), backs off towards a ceiling while nothing changes, and snaps back to fast
as soon as something does. When the budget runs out the last status is returned, not an error: the job
keeps running at fal and the caller continues with get-result.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from fal_mcp.fal.endpoint import EndpointId
from fal_mcp.fal.errors import FalAPIError, FalError, FalRequestFailed
from fal_mcp.fal.queue_status import COMPLETED, IN_PROGRESS, IN_QUEUE, QueueStatus
from fal_mcp.store.records import CANCELLED, FAILED

if TYPE_CHECKING:
    from fal_mcp.fal.client import FalClient

logger = logging.getLogger(__name__)

StatusListener = Callable[[QueueStatus], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class PollSchedule:
    """Delays between status polls: `first_s`, growing by `growth` per unchanged poll, at most `ceiling_s`."""

    first_s: float = 0.25
    growth: float = 1.5
    ceiling_s: float = 4.0

    def next(self, previous: float | None, changed: bool) -> float:
        if previous is None or changed:
            return self.first_s
        return min(self.ceiling_s, previous * self.growth)


def fingerprint(status: QueueStatus) -> tuple[Any, ...]:
    """What counts as a change worth telling the caller about."""
    last_log = status.logs[-1] if status.logs else None
    return (
        status.status,
        status.queue_position,
        len(status.logs or ()),
        (last_log.timestamp, last_log.message) if last_log else None,
    )


class _Seen:
    """The latest status, and whether a new one differs from it."""

    def __init__(self, on_status: StatusListener | None) -> None:
        self.last: QueueStatus | None = None
        self._on_status = on_status

    async def see(self, status: QueueStatus) -> bool:
        changed = self.last is None or fingerprint(status) != fingerprint(self.last)
        self.last = status
        if changed and self._on_status is not None:
            await self._on_status(status)
        return changed


async def follow(
    client: FalClient,
    endpoint: EndpointId,
    request_id: str,
    *,
    budget_s: float,
    logs: bool = False,
    on_status: StatusListener | None = None,
    schedule: PollSchedule | None = None,
    stream: bool = True,
) -> QueueStatus:
    """Wait for the request to finish (stream first, then polling); return the last status seen."""
    seen = _Seen(on_status)
    with anyio.move_on_after(budget_s):
        if stream and await _stream(client, endpoint, request_id, logs, seen):
            assert seen.last is not None
            return seen.last
        await _poll(client, endpoint, request_id, logs, seen, schedule or PollSchedule())
        assert seen.last is not None
        return seen.last
    if seen.last is None:  # the budget ran out before fal said anything: ask once, so the caller has a state
        await seen.see(await client.status(endpoint, request_id, logs=logs))
    assert seen.last is not None
    return seen.last


async def _stream(client: FalClient, endpoint: EndpointId, request_id: str, logs: bool, seen: _Seen) -> bool:
    """Follow the status stream; True when it delivered a terminal status, False to fall back to polling."""
    try:
        async with client.status_stream(endpoint, request_id, logs=logs) as statuses:
            async for status in statuses:
                await seen.see(status)
                if status.is_terminal:
                    return True
        logger.info("status stream of %s ended early; polling instead", request_id)
    except FalError as exc:
        logger.info("status stream of %s unavailable (%s); polling instead", request_id, exc)
    return False


async def _poll(
    client: FalClient, endpoint: EndpointId, request_id: str, logs: bool, seen: _Seen, schedule: PollSchedule
) -> None:
    delay: float | None = None
    while True:
        status = await client.status(endpoint, request_id, logs=logs)
        changed = await seen.see(status)
        if status.is_terminal:
            return
        delay = schedule.next(delay, changed)
        await anyio.sleep(delay)


async def fetch_output(client: FalClient, endpoint: EndpointId, request_id: str, status: QueueStatus) -> Any:
    """The output of a terminal request, or `FalRequestFailed` carrying fal's reason (and the model's 422 detail)."""
    if not status.failed:
        return await client.result(endpoint, request_id)
    cause: FalAPIError | None = None
    try:
        await client.result(endpoint, request_id)
    except FalAPIError as error:
        cause = error
    raise FalRequestFailed(
        status.error or f"the request ended as {status.status}",
        error_type=status.error_type or (cause.error_type if cause else None),
        request_id=request_id,
        cause=cause,
    )


def history_state(status: QueueStatus) -> str:
    """How the history names a status: fal's own states, with failures and cancellations told apart."""
    if not status.is_terminal:
        return status.status
    if status.error_type == "client_cancelled":
        return CANCELLED
    return FAILED if status.failed else COMPLETED


def describe_state(status: QueueStatus) -> str:
    """A short human line for progress messages and headlines."""
    if status.status == IN_QUEUE:
        position = status.queue_position
        return "queued" if position is None else f"queued, position {position}"
    if status.is_terminal:
        return "failed" if status.failed else "completed"
    if status.status == IN_PROGRESS:
        return "running"
    return status.status.lower()
