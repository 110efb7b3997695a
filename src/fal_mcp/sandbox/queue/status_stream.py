"""The status stream: Server-Sent Events with one `data:` status object per change.

The first event is the state at connect time; then one per change (state, queue position, or a
new log line when logs were asked for); the stream ends after the COMPLETED event. A `: ping`
comment goes out after `ping_s` real seconds of silence (never scaled, whatever the fake's clock
does) so proxies keep an idle stream open.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

from fal_mcp.sandbox.models.inputs import JsonObject
from fal_mcp.sandbox.queue.jobs import Job

POLL_S = 0.1
"""Longest sleep between looks at the job: a cancel may change it at any moment."""


async def status_events(
    job: Job,
    with_logs: bool,
    clock: Callable[[], float],
    closing: Callable[[], bool],
    ping_s: float,
) -> AsyncIterator[bytes]:
    """Yield SSE frames until the job is COMPLETED (or the fake shuts down)."""
    last: JsonObject | None = None
    quiet_since = time.monotonic()
    while not closing():
        now = clock()
        body = job.status_body(now, with_logs)
        if body != last:
            yield b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"
            last, quiet_since = body, time.monotonic()
            if body["status"] == "COMPLETED":
                return
        elif time.monotonic() - quiet_since >= ping_s:
            yield b": ping\n\n"
            quiet_since = time.monotonic()
        upcoming = job.next_change(now)
        until_change = POLL_S if upcoming is None else upcoming - now
        until_ping = ping_s - (time.monotonic() - quiet_since)
        await asyncio.sleep(max(min(until_change, until_ping, POLL_S), 0.001))


class StreamCut(Exception):
    """Raised inside a stream to break its connection mid-way (the server then closes it unfinished)."""


async def cut_short(frames: AsyncIterable[Any], events: int, *, broken: bool) -> AsyncIterator[Any]:
    """Pass on the first `events` data events, then end the stream (or, `broken`, break the connection)."""
    sent = 0
    async for frame in frames:
        if sent >= events:
            break
        yield frame
        if bytes(frame).startswith(b"data:"):
            sent += 1
    if broken:
        raise StreamCut("sandbox fault: status stream cut mid-way")


async def cut_inside_first_event(frames: AsyncIterable[Any]) -> AsyncIterator[bytes]:
    """Pass on the first half of the first frame, then end the stream: an event whose JSON breaks off."""
    async for frame in frames:
        data = bytes(frame)
        yield data[: len(data) // 2]
        return
