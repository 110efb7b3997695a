"""The one place a tool's failure is caught: every exception becomes a single worded `isError` result."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult

from fal_mcp.calls import calls
from fal_mcp.fal.endpoint import InvalidIdError
from fal_mcp.fal.errors import FalError
from fal_mcp.jobs.failures import AfterSubmit, ToolFailure, explain
from fal_mcp.logs import redactor
from fal_mcp.media.fence import UploadRefused
from fal_mcp.server.replies import failure, for_protocol
from fal_mcp.store.database import StoreUnavailable

logger = logging.getLogger("fal_mcp.server.tools")

ToolFn = Callable[..., Awaitable[CallToolResult]]


def _endpoint_label(arguments: dict[str, Any]) -> str | None:
    if arguments.get("endpoint_id"):
        return str(arguments["endpoint_id"])
    parts = [str(arguments[k]) for k in ("app_owner", "app_id", "app_variant") if arguments.get(k)]
    return "/".join(parts) or None


def _protocol_of(args: tuple[Any, ...], arguments: dict[str, Any]) -> str | None:
    """The protocol version the calling client negotiated (a stateless request without a header: 2025-03-26)."""
    for value in (*args, *arguments.values()):
        if isinstance(value, Context):
            return cast("Context[Any, Any]", value).protocol_version  # quoted: subscripting a generic model costs 10 us
    return None


def guarded(action: str) -> Callable[[ToolFn], ToolFn]:
    """Catch every failure of a tool once, here, and answer it as one worded `isError` result.

    Cancellation is not an `Exception` and passes through untouched: a cancelled call must end as cancelled.
    """

    def decorate(fn: ToolFn) -> ToolFn:
        @functools.wraps(fn)
        async def tool(*args: Any, **arguments: Any) -> CallToolResult:
            with calls.call(action) as call:  # an id on every log line of this call, and its closing line
                try:
                    result = await fn(*args, **arguments)
                except Exception as exc:
                    call.outcome = "failed"
                    if isinstance(
                        exc, ToolFailure | UploadRefused | FalError | InvalidIdError | AfterSubmit | StoreUnavailable
                    ):
                        logger.info("%s failed: %s", action, exc)
                    else:
                        logger.exception("%s failed unexpectedly", action)
                    where = _endpoint_label(arguments)
                    message = explain(exc, action=action, endpoint=where, request_id=arguments.get("request_id"))
                    return failure(redactor.scrub(message))  # a key the caller pasted into an id is not echoed
                return for_protocol(result, _protocol_of(args, arguments))

        return tool

    return decorate
