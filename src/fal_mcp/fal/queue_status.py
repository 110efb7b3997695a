"""Shapes of fal's queue answers, read leniently: fal adds fields over time and not every app sends all of them.

The status is kept as a plain string: fal documents `IN_QUEUE`, `IN_PROGRESS` and `COMPLETED` (a failure is
`COMPLETED` with `error`), the capability spec also names `FAILED` and `CANCELED`, and whatever else fal
sends is passed on rather than refused.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

IN_QUEUE = "IN_QUEUE"
IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"
TERMINAL_STATES = frozenset({COMPLETED, "FAILED", "CANCELED", "CANCELLED", "ERROR"})


class LogLine(BaseModel):
    """One runner log entry."""

    model_config = ConfigDict(extra="ignore")

    message: str = ""
    level: str | None = None
    source: str | None = None
    timestamp: str | None = None


class QueueStatus(BaseModel):
    """The answer of `GET .../requests/{id}/status` (and each event of its stream)."""

    model_config = ConfigDict(extra="ignore")

    status: str
    request_id: str | None = None
    queue_position: int | None = None
    logs: list[LogLine] | None = None
    metrics: dict[str, Any] | None = None
    error: str | None = None
    error_type: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status.upper() in TERMINAL_STATES

    @property
    def failed(self) -> bool:
        """fal reports a failed request as COMPLETED with `error`; other terminal states also count."""
        return self.is_terminal and (self.error is not None or self.status.upper() != COMPLETED)


class SubmitResponse(BaseModel):
    """The answer of a queue submit."""

    model_config = ConfigDict(extra="ignore")

    request_id: str = Field(min_length=1)
    status: str = IN_QUEUE
    queue_position: int | None = None
    status_url: str | None = None
    response_url: str | None = None
    cancel_url: str | None = None


class RunResponse(BaseModel):
    """A synchronous run: the model's output and the request id fal put in `x-fal-request-id`."""

    output: Any
    request_id: str | None = None
