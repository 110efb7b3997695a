"""MCP progress notifications for a waiting tool call.

Progress is only sent when the caller asked for it (a progress token; the SDK drops it otherwise). Values
increase strictly, as the spec requires, and `total` stays unknown: a fal job has no known length. A client
that went away must not break the call, so a failed notification is logged and forgotten.
"""

from __future__ import annotations

import logging
from typing import Any

from mcp.server.mcpserver import Context

logger = logging.getLogger(__name__)


class ProgressReporter:
    """Sends `notifications/progress` with a counter that only goes up."""

    def __init__(self, ctx: Context[Any, Any] | None) -> None:
        self._ctx = ctx
        self._count = 0
        self.last_message: str | None = None

    @property
    def sent(self) -> int:
        return self._count

    async def report(self, message: str) -> None:
        self._count += 1
        self.last_message = message
        if self._ctx is None:
            return
        try:
            await self._ctx.report_progress(self._count, None, message)
        except Exception as exc:  # the client may have gone; the fal job must not suffer for it
            logger.debug("progress notification not delivered: %s", exc)
