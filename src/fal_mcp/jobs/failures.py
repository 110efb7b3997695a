"""Failures worded once, for every surface: what failed, fal's status and `detail`, and what to try next.

`explain(error, action=...)` turns any exception a job can meet into one plain message a model (or a REST caller)
can act on: fal's status code and `detail` (each field for a 422), `error_type` where fal gave one, and what to do
next. `ToolFailure` is a failure already worded where it was found (bad arguments, a guard's refusal); `AfterSubmit`
wraps a failure that happened after fal accepted a submit, so its message always carries the request id.
"""

from __future__ import annotations

from fal_mcp.fal.endpoint import InvalidIdError
from fal_mcp.fal.errors import (
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
from fal_mcp.media.fence import UploadRefused
from fal_mcp.store.database import StoreUnavailable

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


class NotYours(ToolFailure):
    """A request the caller did not send through this server, asked about by a caller confined to its own (answered
    as an unknown request: whether it exists at all is not the caller's to learn)."""


class AfterSubmit(Exception):
    """A failure after fal accepted a submit: the message must carry the request id, or the job is lost."""

    def __init__(self, request_id: str, endpoint: str, cause: Exception) -> None:
        super().__init__(str(cause))
        self.request_id = request_id
        self.endpoint = endpoint
        self.cause = cause


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
    if isinstance(error, InvalidIdError | ToolFailure | UploadRefused | StoreUnavailable):
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
        known = f" for {endpoint!r}" if endpoint else ""
        return (
            f"{action}: fal knows no request {request_id!r}{known} ({said}). Check request_id and "
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
    rid += f" on {endpoint}" if endpoint else ""  # named by its request_id alone, the model is not known here
    kind = f" (error_type {error.error_type})" if error.error_type else ""
    cause = error.cause
    if isinstance(cause, FalValidationError) and cause.field_errors:
        fields = "; ".join(str(field) for field in cause.field_errors)
        return (
            f"{action}: request{rid} failed: fal rejected the input (422): {fields}. "
            "Fix these input fields and submit again."
        )
    detail = error.error
    if cause is not None and cause.detail and cause.detail not in detail:
        detail = f"{detail} ({cause.detail})"
    hint = _REQUEST_FAILED_HINTS.get(error.error_type or "", "check the input, or try again or another model")
    return f"{action}: request{rid} failed{kind}: {detail}. {hint[0].upper()}{hint[1:]}."


def _transport_error(error: FalTransportError, *, action: str) -> str:
    if error.maybe_sent and _starts_generation(action):
        return (
            f"{action}: {error}. fal may have received it, so it was not re-sent (that could bill twice). "
            "Do not repeat it blindly: it may still be running."
        )
    return f"{action}: {error}, after retrying. Check the network or the fal URLs in the configuration, then retry."
