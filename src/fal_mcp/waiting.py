"""Following a queued request until it is done or the caller's wait budget runs out.

Polling adapts: it starts fast (a quick model is done within a second or two), backs off towards a ceiling
while nothing changes, and snaps back to fast as soon as something does. When the budget runs out the last
status is returned, not an error: the job keeps running at fal and the caller continues with get-result.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from fal_mcp.client import FalClient
from fal_mcp.endpoint import EndpointId
from fal_mcp.errors import FalAPIError, FalRequestFailed
from fal_mcp.models import IN_QUEUE, QueueStatus

StatusListener = Callable[[QueueStatus], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class PollSchedule:
    """Delays between status polls: `first_s`, growing by `growth` per unchanged poll, at most `ceiling_s`."""

    first_s: float = 0.2
    growth: float = 1.5
    ceiling_s: float = 3.0

    def next(self, previous: float | None, changed: bool) -> float:
        if previous is None or changed:
            return self.first_s
        return min(self.ceiling_s, previous * self.growth)


def _fingerprint(status: QueueStatus) -> tuple[Any, ...]:
    return (status.status, status.queue_position, len(status.logs or ()))


async def follow(
    client: FalClient,
    endpoint: EndpointId,
    request_id: str,
    *,
    budget_s: float,
    logs: bool = False,
    on_status: StatusListener | None = None,
    schedule: PollSchedule | None = None,
) -> QueueStatus:
    """Poll until the request is terminal or `budget_s` has passed; return the last status seen."""
    schedule = schedule or PollSchedule()
    deadline = anyio.current_time() + budget_s
    delay: float | None = None
    last: QueueStatus | None = None
    while True:
        status = await client.status(endpoint, request_id, logs=logs)
        changed = last is None or _fingerprint(status) != _fingerprint(last)
        if changed and on_status is not None:
            await on_status(status)
        last = status
        remaining = deadline - anyio.current_time()
        if status.is_terminal or remaining <= 0:
            return status
        delay = schedule.next(delay, changed)
        await anyio.sleep(min(delay, remaining))


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


def describe_state(status: QueueStatus) -> str:
    """A short human line for progress messages and headlines."""
    if status.status == IN_QUEUE:
        position = status.queue_position
        return "queued" if position is None else f"queued, position {position}"
    if status.is_terminal:
        return "failed" if status.failed else "completed"
    if status.logs:
        return f"running: {status.logs[-1].message[:120]}"
    return "running" if status.status == "IN_PROGRESS" else status.status.lower()
