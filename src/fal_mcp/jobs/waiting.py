"""Following a queued request until it is done or the caller's wait budget runs out.

fal's status stream comes first: one open request that hears every change the moment fal makes it, so a
finished job costs submit + stream + result and its output is fetched as soon as fal completes it. When the
stream is refused or breaks, polling takes over for the rest of the budget: it starts fast (a quick model
is done within a second or two), backs off towards a ceiling while nothing changes, and snaps back to fast
as soon as something does. When the budget runs out the last status is returned, not an error: the job
keeps running at fal and the caller continues with get-result.

Many calls may wait on the same request (an agent retrying, or a caller holding a crowd of waits): they share one
follow (`Followers`, `SharedFollow`) and one fetch of its output, so fal hears one stream and one result request
however many wait, and the history is written once.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager
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
        return await _until_done(client, endpoint, request_id, logs, seen, schedule or PollSchedule(), stream)
    if seen.last is None:  # the budget ran out before fal said anything: ask once, so the caller has a state
        await seen.see(await client.status(endpoint, request_id, logs=logs))
    assert seen.last is not None
    return seen.last


async def _until_done(
    client: FalClient,
    endpoint: EndpointId,
    request_id: str,
    logs: bool,
    seen: _Seen,
    schedule: PollSchedule,
    stream: bool,
) -> QueueStatus:
    """Follow the request (stream first, then polling) until fal says it ended; its terminal status."""
    if not (stream and await _stream(client, endpoint, request_id, logs, seen)):
        await _poll(client, endpoint, request_id, logs, seen, schedule)
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


KEPT_STATUSES = 16
"""Statuses a shared follow keeps for waits that have not caught up yet (each hears the latest one in any case)."""


class SharedFollow:
    """One follow of a request, for every call waiting on it with the same key, in the same partition.

    The first wait follows the request (stream, then polling); later ones hear every status it hears, each with
    its own budget. When the wait that follows leaves (its budget ran out, it was cancelled), another takes over,
    so no wait ever ends another's. The outcome (output, or failure, and its history write) is settled once for the
    waits that were there together (`settled`).
    """

    def __init__(self, endpoint: EndpointId, request_id: str, logs: bool, on_change: StatusListener | None) -> None:
        self.endpoint = endpoint
        self.request_id = request_id
        self.logs = logs
        self.waiters = 0
        self.failure: Exception | None = None
        """Why following failed (fal refused, or could not be reached): every wait there then fails with it."""
        self._heard: list[QueueStatus] = []
        """The latest statuses heard (at most `KEPT_STATUSES`: with logs, each carries every line so far)."""
        self._dropped = 0
        """How many statuses were heard before `_heard[0]`."""
        self._on_change = on_change
        self._following = False
        self._news = anyio.Event()
        self._outcome = _Once()

    def _wake(self) -> None:
        self._news.set()
        self._news = anyio.Event()

    async def wait(
        self,
        client: FalClient,
        *,
        budget_s: float,
        on_status: StatusListener | None = None,
        schedule: PollSchedule | None = None,
        stream: bool = True,
    ) -> QueueStatus:
        """As `follow`, sharing the following with the other waits on this request."""
        seen = _Seen(on_status)
        told = self._dropped + max(0, len(self._heard) - 1)  # a late wait starts from the latest status

        async def catch_up() -> None:
            nonlocal told
            told = max(told, self._dropped)  # a wait that fell far behind skips to the oldest status kept
            while told < self._dropped + len(self._heard) and not (seen.last is not None and seen.last.is_terminal):
                told += 1
                await seen.see(self._heard[told - 1 - self._dropped])
                told = max(told, self._dropped)

        async def hear(status: QueueStatus) -> None:  # the follow's own statuses, while this wait follows
            last = self._heard[-1] if self._heard else None
            if last is None or fingerprint(status) != fingerprint(last):
                self._heard.append(status)
                if len(self._heard) > KEPT_STATUSES:
                    del self._heard[0]
                    self._dropped += 1
                self._wake()
                if self._on_change is not None:
                    await self._on_change(status)
            await catch_up()

        with anyio.move_on_after(budget_s):
            while True:
                await catch_up()
                if seen.last is not None and seen.last.is_terminal:  # heard here, or while this wait followed
                    return seen.last
                if self.failure is not None:
                    raise self.failure
                if self._following:
                    await self._news.wait()
                    continue
                self._following = True
                try:
                    await _until_done(
                        client,
                        self.endpoint,
                        self.request_id,
                        self.logs,
                        _Seen(hear),
                        schedule or PollSchedule(),
                        stream,
                    )
                except Exception as exc:
                    self.failure = exc
                finally:
                    self._following = False
                    self._wake()  # another wait takes over, or hears how it ended
        if told < self._dropped + len(self._heard):
            await seen.see(self._heard[-1])
        if seen.last is None:  # the budget ran out before fal said anything: ask once, so the caller has a state
            await seen.see(await client.status(self.endpoint, self.request_id, logs=self.logs))
        assert seen.last is not None
        return seen.last

    async def settled(self, settle: Callable[[], Awaitable[Any]]) -> Any:
        """What `settle()` returns (or raises), called once for the waits that are here together."""
        return await self._outcome.get(settle)


class _Once:
    """A single flight: the first caller runs it, the others await its answer; when that caller leaves before it
    is done, the next one runs it."""

    def __init__(self) -> None:
        self._done = False
        self._value: Any = None
        self._error: Exception | None = None
        self._running = False
        self._news = anyio.Event()

    async def get(self, make: Callable[[], Awaitable[Any]]) -> Any:
        while not self._done:
            if self._running:
                await self._news.wait()
                continue
            self._running = True
            try:
                self._value = await make()
            except Exception as exc:
                self._error = exc
            finally:
                self._running = False
                self._news.set()
                self._news = anyio.Event()
            self._done = True
        if self._error is not None:
            raise self._error
        return self._value


FollowKey = tuple[str, str, str, str, bool]
"""Whose (the key's digest, the history partition) and which request (endpoint, id, with logs or not)."""


class Followers:
    """The requests this process is waiting on, each followed once however many calls wait on it.

    Waits are shared only between calls that pay with the same key and act in the same partition: another key
    authenticates its own requests, and callers sharing the server's key are told apart by their partition (and
    checked as owners of the request before they get here).
    """

    def __init__(self) -> None:
        self._following: dict[FollowKey, SharedFollow] = {}

    def __len__(self) -> int:
        return len(self._following)

    @asynccontextmanager
    async def joined(
        self,
        client: FalClient,
        partition: str,
        endpoint: EndpointId,
        request_id: str,
        *,
        logs: bool = False,
        on_change: StatusListener | None = None,
    ) -> AsyncGenerator[SharedFollow]:
        """The request's shared follow while the block runs; forgotten when its last wait left. `on_change` hears
        each new status once, whichever wait follows (for the history)."""
        key: FollowKey = (client.credential, partition, str(endpoint), request_id, logs)
        shared = self._following.get(key)
        if shared is None or shared.failure is not None:  # a failed follow is not joined: a new wait tries again
            shared = self._following[key] = SharedFollow(endpoint, request_id, logs, on_change)
        shared.waiters += 1
        try:
            yield shared
        finally:
            shared.waiters -= 1
            if shared.waiters == 0 and self._following.get(key) is shared:
                del self._following[key]


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
