"""What each tool returns: these models are the tools' output schemas, and `structuredContent` is their dump."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from fal_mcp.models import LogLine


class ToolOutput(BaseModel):
    """Fields every result shares."""

    sandbox: bool | None = Field(
        default=None, description="true when this came from the built-in fake fal: nothing real was generated or billed"
    )

    def structured(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class RequestResult(ToolOutput):
    """The envelope of run-model and get-result."""

    endpoint_id: str = Field(description="the model id the request was addressed to")
    request_id: str | None = Field(
        default=None, description="fal's id for the request; use it with get-status/get-result/cancel"
    )
    status: str = Field(description="COMPLETED when output is present; IN_QUEUE or IN_PROGRESS when still running")
    output: Any = Field(default=None, description="the model's own output JSON, untouched (absent until completed)")
    metrics: dict[str, Any] | None = Field(default=None, description="fal's metrics, e.g. inference_time in seconds")
    queue_position: int | None = Field(default=None, description="requests ahead of this one, while IN_QUEUE")
    logs: list[LogLine] | None = Field(default=None, description="runner log lines, when requested")
    next_step: str | None = Field(default=None, description="what to call to continue, when the output is not here yet")


class SubmitResult(ToolOutput):
    """What submit returns: the handle of the queued request."""

    endpoint_id: str
    request_id: str = Field(description="pass to get-status, get-result or cancel")
    status: str = Field(description="IN_QUEUE right after submitting")
    queue_position: int | None = None
    status_url: str | None = Field(default=None, description="fal's status URL (informational)")
    response_url: str | None = Field(default=None, description="fal's result URL (informational)")
    cancel_url: str | None = Field(default=None, description="fal's cancel URL (informational)")


class StatusResult(ToolOutput):
    """Where a queued request stands."""

    endpoint_id: str
    request_id: str
    status: str = Field(description="IN_QUEUE, IN_PROGRESS or COMPLETED (a failure is COMPLETED with error)")
    queue_position: int | None = Field(default=None, description="requests ahead of this one, while IN_QUEUE")
    logs: list[LogLine] | None = Field(default=None, description="runner log lines, when logs=true")
    metrics: dict[str, Any] | None = None
    error: str | None = Field(default=None, description="why the request failed, when it did")
    error_type: str | None = Field(default=None, description="fal's error category, e.g. runner_server_error")


class CancelResult(ToolOutput):
    """The outcome of a cancel."""

    endpoint_id: str
    request_id: str
    status: str = Field(description="CANCELLATION_REQUESTED, or ALREADY_COMPLETED when it had finished")
