"""A queue job's life, IN_QUEUE -> IN_PROGRESS -> COMPLETED, computed from the clock on every read.

No task runs per job: the timeline (when the runner starts, when it finishes) is fixed at submit time
from the model's durations x `time_scale`, and every read asks what is true *now*. A cancel or a
client disconnect only moves the end earlier. Failure is never a separate status (fal has none): a
failed job is COMPLETED with `error` and `error_type`, and its result replays the error response.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from fal_mcp.sandbox.models.catalog import Model
from fal_mcp.sandbox.models.inputs import Json, JsonObject
from fal_mcp.sandbox.models.outputs import Generated, Generation, MediaFile, PlannedLog
from fal_mcp.sandbox.routing import base_app_id

Phase = Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]

INVALID_INPUT_RUN_S = 0.05
"""A runner rejects a bad input quickly: the job is IN_PROGRESS this long (scaled) before its 422."""


@dataclass(frozen=True)
class Outcome:
    """How a completed job ended, and what its result GET answers."""

    status_code: int
    body: Json
    headers: Mapping[str, str] = field(default_factory=dict[str, str])
    error: str | None = None
    error_type: str | None = None
    metrics: JsonObject = field(default_factory=dict[str, Json])
    files: Mapping[str, MediaFile] = field(default_factory=dict[str, MediaFile])


def _failure(status_code: int, error: str, error_type: str, headers: Mapping[str, str] | None = None) -> Outcome:
    """An infrastructure error as fal reports it: `{"detail", "error_type"}` plus `X-Fal-Error-Type`."""
    return Outcome(
        status_code,
        {"detail": error, "error_type": error_type},
        {"X-Fal-Error-Type": error_type, **(headers or {})},
        error,
        error_type,
    )


@dataclass(eq=False)
class Job:
    """One request to a model, via the queue (`sync=False`) or a synchronous run."""

    request_id: str
    endpoint_id: str
    model: Model
    input: JsonObject
    """The body as submitted."""
    owner_key: str
    """The key that submitted it; other keys get 404 for it."""
    origin: str
    """`scheme://host:port` the submit came in on; the job's URLs point back there."""
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    time_scale: float = 1.0
    start_timeout: float | None = None
    """`X-Fal-Request-Timeout`: the runner must start within this many seconds."""
    sync: bool = False
    runner_hint: str | None = None
    priority: str = "normal"
    webhook_url: str | None = None
    cancel_requests: int = field(default=0, init=False)
    cancelled: bool = field(default=False, init=False)
    """True once a cancel request took effect (not for a sync client that went away)."""

    def __post_init__(self) -> None:
        self.base_id = base_app_id(self.endpoint_id)
        self.created_at = self.clock()
        self.created_wall = time.time()
        self.cleaned_input, self.problems = self.model.validate(self.input)
        self.queue_s = self.model.queue_s * self.time_scale
        run_s = self.model.run_s if not self.problems else min(self.model.run_s, INVALID_INPUT_RUN_S)
        self.run_s = run_s * self.time_scale
        self.started_at: float | None
        if self.start_timeout is not None and self.queue_s > self.start_timeout:
            self.started_at = None
            self._natural_end = self.created_at + self.start_timeout
        else:
            self.started_at = self.created_at + self.queue_s
            self._natural_end = self.started_at + self.run_s
        self._planned: tuple[PlannedLog, ...] = () if self.problems else self.model.plan_logs(self.cleaned_input)
        self._stop: tuple[float, str, str] | None = None
        self._outcome: Outcome | None = None
        self._generated: Generated | None = None
        self._lock = threading.Lock()
        self._making = threading.Lock()

    # -- timeline ---------------------------------------------------------------------------------

    @property
    def end(self) -> float:
        """Clock time at which the job is (or will be) COMPLETED."""
        return self._natural_end if self._stop is None else min(self._stop[0], self._natural_end)

    def phase(self, now: float) -> Phase:
        """The state at clock time `now`."""
        if now >= self.end:
            return "COMPLETED"
        if self.started_at is not None and now >= self.started_at:
            return "IN_PROGRESS"
        return "IN_QUEUE"

    @property
    def state(self) -> Phase:
        """The state right now."""
        return self.phase(self.clock())

    def queue_position(self, now: float) -> int:
        """Requests ahead of this one: counts down evenly from the model's start position to 0."""
        start = self.model.queue_position
        if start <= 0 or self.queue_s <= 0:
            return 0
        steps = math.floor((now - self.created_at) / self.queue_s * (start + 1))
        return max(0, min(start, start - steps))

    def next_change(self, now: float) -> float | None:
        """The next clock time at which the status body may change, or None once COMPLETED."""
        if now >= self.end:
            return None
        moments = [self.end, *self._log_times()]
        if self.started_at is not None:
            moments.append(self.started_at)
        start = self.model.queue_position
        moments += [self.created_at + self.queue_s * k / (start + 1) for k in range(1, start + 1)]
        return min((moment for moment in moments if moment > now), default=self.end)

    def _log_times(self) -> list[float]:
        if self.started_at is None:
            return []
        return [self.started_at + line.at * self.run_s for line in self._planned]

    # -- control ----------------------------------------------------------------------------------

    def request_cancel(self) -> bool:
        """Count a cancel request; stop the job now unless already COMPLETED. True if it took effect."""
        with self._lock:
            self.cancel_requests += 1
            now = self.clock()
            if now >= self.end:
                return False
            self._stop = (now, "Request was cancelled", "client_cancelled")
            self.cancelled = True
            return True

    def abandon(self) -> None:
        """A synchronous caller hung up: fal stops the work (`client_disconnected`)."""
        with self._lock:
            now = self.clock()
            if now < self.end:
                self._stop = (now, "Client disconnected", "client_disconnected")

    # -- results ----------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Make the model's output now, while the job runs (the app calls this in a worker thread at submit).

        A real runner has its output when it reports completion; so must the fake, or whoever measures the time
        from completion to output would be timing the fake's picture-making.
        """
        if self.problems or self.model.crash is not None or self.started_at is None:
            return
        with self._making:
            if self._generated is None:
                generation = Generation(self.request_id, self.cleaned_input, f"{self.origin}/cdn", self._inference_time)
                self._generated = self.model.generate(generation)

    @property
    def prepared(self) -> bool:
        """Whether the model's output exists already (it is made while the job runs)."""
        return self._generated is not None

    @property
    def _inference_time(self) -> float:
        return round(self.run_s, 6)

    def outcome(self) -> Outcome | None:
        """How the job ended, or None while it is not COMPLETED (its output was made by `prepare`, or is now)."""
        if self.clock() < self.end:
            return None
        with self._lock:
            if self._outcome is None:
                self._outcome = self._conclude()
            return self._outcome

    def _conclude(self) -> Outcome:
        if self._stop is not None and self._stop[0] < self._natural_end:
            # fal lists client_cancelled / client_disconnected as 499 request errors.
            return _failure(499, self._stop[1], self._stop[2])
        if self.started_at is None:
            return _failure(504, "Request timed out", "request_timeout", {"X-Fal-Request-Timeout-Type": "user"})
        if self.problems:
            return Outcome(422, {"detail": list[Json](self.problems)}, error="Invalid status code: 422")
        crash = self.model.crash
        if crash is not None:
            return _failure(crash.status_code, crash.message, crash.error_type)
        self.prepare()
        generated = self._generated
        assert generated is not None
        return Outcome(200, generated.output, metrics={"inference_time": self._inference_time}, files=generated.files)

    @property
    def error(self) -> str | None:
        """The COMPLETED status's `error`, or None (also while not completed)."""
        outcome = self.outcome()
        return None if outcome is None else outcome.error

    @property
    def error_type(self) -> str | None:
        """The COMPLETED status's `error_type`, or None."""
        outcome = self.outcome()
        return None if outcome is None else outcome.error_type

    # -- wire bodies ------------------------------------------------------------------------------

    @property
    def urls(self) -> JsonObject:
        """`response_url`, `status_url`, `cancel_url`: on the base app id, never the subpath."""
        base = f"{self.origin}/queue/{self.base_id}/requests/{self.request_id}"
        return {"response_url": base, "status_url": f"{base}/status", "cancel_url": f"{base}/cancel"}

    def submit_body(self) -> JsonObject:
        """What a queue submit answers."""
        return {
            "status": "IN_QUEUE",
            "request_id": self.request_id,
            **self.urls,
            "queue_position": self.queue_position(self.created_at),
            "gateway_request_id": self.request_id,
        }

    def status_body(self, now: float, with_logs: bool) -> JsonObject:
        """The status JSON at `now`; `logs` is a key on IN_PROGRESS/COMPLETED, null unless asked for."""
        phase = self.phase(now)
        body: JsonObject = {"status": phase, "request_id": self.request_id}
        if phase == "IN_QUEUE":
            body["queue_position"] = self.queue_position(now)
        else:
            body["logs"] = self.logs(now) if with_logs else None
        outcome = self.outcome() if phase == "COMPLETED" else None
        if outcome is not None:
            body["metrics"] = outcome.metrics
            if outcome.error is not None:
                body["error"] = outcome.error
            if outcome.error_type is not None:
                body["error_type"] = outcome.error_type
        body.update(self.urls)
        return body

    def logs(self, now: float) -> list[Json]:
        """Log lines emitted up to `now` (and not after the job ended)."""
        horizon = min(now, self.end)
        return [
            {
                "message": line.message,
                "level": line.level,
                "source": "USER",
                "timestamp": self._timestamp(at),
            }
            for line, at in zip(self._planned, self._log_times(), strict=False)
            if at <= horizon
        ]

    def webhook_body(self, outcome: Outcome) -> JsonObject:
        """The body fal POSTs to `fal_webhook` once the job completed."""
        body: JsonObject = {
            "request_id": self.request_id,
            "gateway_request_id": self.request_id,
            "status": "OK" if outcome.error is None else "ERROR",
            "payload": outcome.body,
        }
        if outcome.error is not None:
            body["error"] = f"Invalid status code: {outcome.status_code}"
        return body

    def _timestamp(self, at: float) -> str:
        wall = datetime.fromtimestamp(self.created_wall + (at - self.created_at), UTC)
        return wall.isoformat(timespec="milliseconds").replace("+00:00", "Z")
