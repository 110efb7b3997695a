"""Turns outcomes into MCP tool results: the one place that words a failure for the model to act on.

Every failure becomes a `CallToolResult` with `isError: true` and one plain message: what failed, fal's status
code and `detail` (each field for a 422), `error_type` where fal gave one, and what to try next. Successes get
a short headline plus the structured result as JSON text, for clients that do not read `structuredContent`
(with inline `data:` URIs left out and a size cap: `fal_mcp.media.render_text`).
"""

from __future__ import annotations

from mcp.types import CallToolResult, TextContent

from fal_mcp.endpoint import InvalidIdError
from fal_mcp.errors import (
    FalAPIError,
    FalAuthError,
    FalError,
    FalNotFoundError,
    FalProtocolError,
    FalRateLimitError,
    FalRequestFailed,
    FalServerError,
    FalTransportError,
    FalValidationError,
    MissingKeyError,
)
from fal_mcp.media import DEFAULT_TEXT_LIMIT, render_text
from fal_mcp.outputs import ToolOutput

SANDBOX_NOTE = "[SANDBOX: fake fal on this machine; nothing was generated or billed] "

_REQUEST_FAILED_HINTS = {
    "request_timeout": "it did not start before start_timeout_s; allow more time or try later",
    "startup_timeout": "the model's runner did not start in time; try again later",
    "client_cancelled": "it was cancelled",
    "client_disconnected": "the connection was closed before it finished",
    "runner_scheduling_failure": "fal could not schedule a runner; try again later",
    "runner_server_error": "the model crashed on this input; try different input or another model",
    "internal_error": "fal had an internal error; try again later",
}


class ToolFailure(Exception):
    """A failure already worded for the model (bad arguments the tool itself caught)."""


class AfterSubmit(Exception):
    """A failure after fal accepted a submit: the message must carry the request id, or the job is lost."""

    def __init__(self, request_id: str, endpoint: str, cause: Exception) -> None:
        super().__init__(str(cause))
        self.request_id = request_id
        self.endpoint = endpoint
        self.cause = cause


def success(
    headline: str, result: ToolOutput, *, sandbox: bool, text_limit: int = DEFAULT_TEXT_LIMIT
) -> CallToolResult:
    """A normal result: headline and JSON text (inline data left out, capped), plus `structuredContent`."""
    if sandbox:
        result.sandbox = True
        headline = SANDBOX_NOTE + headline
    structured = result.structured()
    text = render_text(headline, structured, limit=text_limit)
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)


def failure(message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)


def explain(error: Exception, *, action: str, endpoint: str | None = None, request_id: str | None = None) -> str:
    """One actionable sentence or three for `error`, raised while doing `action` (e.g. "run-model")."""
    if isinstance(error, AfterSubmit):
        if isinstance(error.cause, FalRequestFailed):  # the request ran and failed: nothing is left running
            return explain(error.cause, action=action, endpoint=error.endpoint, request_id=error.request_id)
        inner = explain(error.cause, action=f"{action} (waiting)", endpoint=error.endpoint, request_id=error.request_id)
        return (
            f"{inner} The request itself is queued at fal as request_id '{error.request_id}' and may still run: "
            f"do not run it again; continue with get-result (request_id='{error.request_id}', "
            f"endpoint_id='{error.endpoint}') or cancel it."
        )
    if isinstance(error, InvalidIdError | ToolFailure):
        return f"{action}: {error}"
    if isinstance(error, MissingKeyError):
        return f"{action}: {error}"
    if isinstance(error, FalRequestFailed):
        return _request_failed(error, action=action, endpoint=endpoint)
    if isinstance(error, FalAPIError):
        return _api_error(error, action=action, endpoint=endpoint, request_id=request_id)
    if isinstance(error, FalTransportError):
        return _transport_error(error, action=action)
    if isinstance(error, FalProtocolError):
        if _starts_generation(action):  # a 2xx: fal took the request, only its answer was unreadable
            return (
                f"{action}: {error}. fal received it, so it was not re-sent (that could bill twice). "
                "Do not repeat it blindly: it may still be running."
            )
        return f"{action}: {error}. Try again; if it persists fal may be degraded."
    if isinstance(error, FalError):
        return f"{action}: {error}"
    return f"{action}: unexpected failure ({type(error).__name__}); the server logged the details"


def _fal_said(error: FalAPIError) -> str:
    kind = f", error_type {error.error_type}" if error.error_type else ""
    return f"fal answered {error.status_code}{kind}: {error.detail}"


def _starts_generation(action: str) -> bool:
    return action in ("run-model", "submit")


def _api_error(error: FalAPIError, *, action: str, endpoint: str | None, request_id: str | None) -> str:
    said = _fal_said(error)
    if isinstance(error, FalAuthError):
        if error.status_code == 401:
            return (
                f"{action}: fal rejected the key ({said}). Check FAL_KEY (or, with a server that takes your own key, "
                "the key you send as the Bearer credential): it must be the whole key ('key_id:key_secret') from "
                "https://fal.ai/dashboard/keys."
            )
        return f"{action}: fal refused this account ({said}). Nothing was run; resolve it on fal.ai, then retry."
    if isinstance(error, FalValidationError):
        fields = "; ".join(str(field) for field in error.field_errors) or error.detail
        return (
            f"{action}: fal rejected the input for {endpoint} (422): {fields}. Fix these input fields and call again."
        )
    if isinstance(error, FalNotFoundError):
        if _starts_generation(action):
            return f"{action}: fal has no endpoint {endpoint!r} ({said}). Check the model id on https://fal.ai/models."
        return (
            f"{action}: fal knows no request {request_id!r} for {endpoint!r} ({said}). Check request_id and "
            "endpoint_id (the same model id used at submit); results expire about an hour after completion."
        )
    if isinstance(error, FalRateLimitError):
        wait = f" in {error.retry_after:g}s" if error.retry_after is not None else " in a little while"
        queued = " Nothing was queued." if action == "submit" else ""
        return f"{action}: fal is limiting requests ({said}).{queued} Try again{wait}."
    if isinstance(error, FalServerError):
        if error.timeout_type == "user":
            return f"{action}: the request did not start before start_timeout_s ({said}). Allow more time or retry."
        return f"{action}: fal failed on its side ({said}). Try again shortly."
    return f"{action}: {said}."


def _request_failed(error: FalRequestFailed, *, action: str, endpoint: str | None) -> str:
    rid = f" {error.request_id}" if error.request_id else ""
    kind = f" (error_type {error.error_type})" if error.error_type else ""
    cause = error.cause
    if isinstance(cause, FalValidationError) and cause.field_errors:
        fields = "; ".join(str(field) for field in cause.field_errors)
        return (
            f"{action}: request{rid} on {endpoint} failed: fal rejected the input (422): {fields}. "
            "Fix these input fields and submit again."
        )
    detail = error.error
    if cause is not None and cause.detail and cause.detail not in detail:
        detail = f"{detail} ({cause.detail})"
    hint = _REQUEST_FAILED_HINTS.get(error.error_type or "", "check the input, or try again or another model")
    return f"{action}: request{rid} on {endpoint} failed{kind}: {detail}. {hint[0].upper()}{hint[1:]}."


def _transport_error(error: FalTransportError, *, action: str) -> str:
    if error.maybe_sent and _starts_generation(action):
        return (
            f"{action}: {error}. fal may have received it, so it was not re-sent (that could bill twice). "
            "Do not repeat it blindly: it may still be running."
        )
    return f"{action}: {error}, after retrying. Check the network or the fal URLs in the configuration, then retry."
