"""MCP progress notifications for a call that waits on a fal request.

Progress goes out only when the caller asked for it (a progress token; the SDK drops it otherwise). Values
increase strictly, as the spec requires, and `total` stays unknown: a fal job has no known length. Messages
are short and human: `queued, position 3`, `running`, each new log line when logs were asked for, `waiting for fal
to report` while fal is to push the outcome (a webhook: fal is not asked, so no position is known), and a
heartbeat (`still running, 35s`) whenever nothing else was said for a few seconds, because some clients
give up on a call that has been silent for a minute and others reset their timer on every notification.
A client that went away must not break the call, so a failed notification is logged and forgotten. Progress is
the one text that reaches the client outside an answer (so outside `server.redaction`): a runner's log line may
quote its input, so every message is scrubbed of keys here.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

import anyio
from mcp.server.mcpserver import Context

from fal_mcp.fal.endpoint import EndpointId
from fal_mcp.fal.queue_status import QueueStatus
from fal_mcp.jobs.waiting import describe_state
from fal_mcp.logs import redactor

logger = logging.getLogger(__name__)

HEARTBEAT_S = 4.0
"""Longest silence while waiting: under the 5 s the issue asks for, with room for a slow send."""
MAX_LOG_LINES_PER_UPDATE = 5
AWAITING_WEBHOOK = "waiting for fal to report"

progress_sink: ContextVar[Callable[[str], None] | None] = ContextVar("progress_sink", default=None)
"""A second audience for progress messages: an MCP task shows them as its status message."""
request_sink: ContextVar[Callable[[str, str], None] | None] = ContextVar("request_sink", default=None)
"""Hears `(endpoint id, request id)` once fal accepted the request: an MCP task keeps it in its record, so a caller
can continue with get-result should the process running the task stop."""


class ProgressReporter:
    """Sends `notifications/progress` with a counter that only goes up."""

    def __init__(self, ctx: Context[Any, Any] | None) -> None:
        self._ctx = ctx
        self._count = 0
        self.last_sent_at = anyio.current_time()

    @property
    def sent(self) -> int:
        return self._count

    async def report(self, message: str) -> None:
        message = redactor.scrub(message)
        self._count += 1
        self.last_sent_at = anyio.current_time()
        sink = progress_sink.get()
        if sink is not None:
            sink(message)
        if self._ctx is None:
            return
        try:
            await self._ctx.report_progress(self._count, None, message)
        except Exception as exc:  # the client may have gone; the fal job must not suffer for it
            logger.debug("progress notification not delivered: %s", exc)


class QueueProgress:
    """Listens to a followed request (see `operations.Listener`) and narrates it as progress."""

    def __init__(self, ctx: Context[Any, Any] | None, *, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.reporter = ProgressReporter(ctx)
        self._heartbeat_s = heartbeat_s
        self._state = "submitting"
        self._started = anyio.current_time()
        self._logged: set[tuple[str | None, str]] = set()

    async def submitted(self, endpoint: EndpointId, request_id: str) -> None:
        self._state = "submitted"
        sink = request_sink.get()
        if sink is not None:
            sink(str(endpoint), request_id)
        await self.reporter.report(f"submitted to {endpoint} as {request_id}")

    async def status(self, status: QueueStatus) -> None:
        state = describe_state(status)
        new_lines = [line for line in status.logs or () if (line.timestamp, line.message) not in self._logged]
        self._logged.update((line.timestamp, line.message) for line in new_lines)
        if state != self._state or not new_lines:
            self._state = state
            await self.reporter.report(state)
        for line in new_lines[-MAX_LOG_LINES_PER_UPDATE:]:
            await self.reporter.report(f"{state}: {line.message[:200]}")

    async def awaiting_webhook(self) -> None:
        self._state = AWAITING_WEBHOOK
        await self.reporter.report(AWAITING_WEBHOOK)

    @asynccontextmanager
    async def heartbeat(self) -> AsyncGenerator[None]:
        """While the block runs, say something at least every `heartbeat_s` seconds."""

        async def beat() -> None:
            while True:
                quiet = anyio.current_time() - self.reporter.last_sent_at
                if quiet >= self._heartbeat_s:
                    elapsed = anyio.current_time() - self._started
                    await self.reporter.report(f"still {self._state}, {elapsed:.0f}s")
                    quiet = 0.0
                await anyio.sleep(self._heartbeat_s - quiet)

        failure: Exception | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(beat)
            try:
                yield
            except Exception as exc:  # carried out of the task group as itself, not as an ExceptionGroup
                failure = exc
            finally:
                group.cancel_scope.cancel()
        if failure is not None:
            raise failure
