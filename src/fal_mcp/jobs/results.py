"""What each tool returns: these models are the tools' output schemas, and `structuredContent` is their dump."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from fal_mcp.fal.queue_status import LogLine


class ToolOutput(BaseModel):
    """Fields every result shares."""

    sandbox: bool | None = Field(
        default=None, description="true from the sandbox fake fal: nothing real made or billed"
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
    saved: list[str] | None = None


KEEPS_NULL = "x-keeps-null"
"""Marks a field whose null is an answer (the output schemas keep its null branch, `structured` keeps the null)."""


class Costed(BaseModel):
    """What a call that fal bills was estimated to cost before it was sent."""

    estimated_cost_usd: float | None = Field(
        default=None,
        description="the estimate before sending, in USD; null when it cannot be known (estimate_basis says why)",
        json_schema_extra={KEEPS_NULL: True},
    )
    estimate_basis: str | None = Field(default=None, description="how the estimate was worked out, or why it is null")

    def costed(self, structured: dict[str, Any]) -> dict[str, Any]:
        """`structured` with the estimate's null kept: null says no price or quantity could be known."""
        if self.estimate_basis is not None:
            structured.setdefault("estimated_cost_usd", None)
        return structured


class RunResult(RequestResult, Costed):
    """What run-model returns: the request's envelope, and what it was estimated to cost."""

    def structured(self) -> dict[str, Any]:
        return self.costed(super().structured())


class SubmitResult(ToolOutput, Costed):
    """What submit returns: the handle of the queued request, and what it was estimated to cost."""

    def structured(self) -> dict[str, Any]:
        return self.costed(super().structured())

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


# -- models, uploads -------------------------------------------------------------------------------------


class Price(BaseModel):
    """fal's price per unit (image, megapixels, seconds, ...)."""

    unit_price: float | None = None
    unit: str | None = None
    currency: str | None = None


class ModelHit(BaseModel):
    endpoint_id: str
    name: str | None = None
    category: str | None = None
    description: str | None = Field(default=None, description="one line")
    price: Price | None = None


class ModelSearchResult(ToolOutput):
    """One page of models."""

    models: list[ModelHit]
    next_cursor: str | None = Field(default=None, description="pass as cursor for the next page")
    has_more: bool = False


class InputField(BaseModel):
    name: str
    type: str
    required: bool
    default: Any = None
    enum: list[Any] | None = Field(default=None, description="the allowed values")
    minimum: int | float | None = None
    maximum: int | float | None = None
    min_length: int | None = None
    max_length: int | None = None
    description: str | None = None


class OutputField(BaseModel):
    name: str
    type: str
    description: str | None = None


class ModelSchemaResult(ToolOutput):
    """What one endpoint takes and gives, and what it costs."""

    endpoint_id: str
    name: str | None = None
    category: str | None = None
    description: str | None = None
    price: Price | None = None
    pricing: str | None = Field(default=None, description="how a call's price is computed: what counts as a unit")
    input: list[InputField] = Field(description="the fields run-model's input may hold")
    output: list[OutputField] = Field(description="the top-level fields of the model's output")
    note: str | None = Field(default=None, description="why input or output is empty, when it is")


class UploadResult(ToolOutput):
    """A local file, now on fal's CDN."""

    url: str = Field(description="public URL to put in a model's input (e.g. image_url)")
    file_name: str
    content_type: str
    size_bytes: int
