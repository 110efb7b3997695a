"""MCP tasks (`io.modelcontextprotocol/tasks`) for `run-model`, for clients that can poll instead of wait.

On a 2026-07-28 connection whose request advertises the extension, `run-model` answers at once with a task
handle; the run goes on in the background (waiting up to `FAL_MCP_MAX_WAIT_S`, since no client timeout applies
to it any more), `tasks/get` reports it (its status message follows the progress: `queued, position 2`,
`running: ...`) and finally carries the tool result, and `tasks/cancel` stops it, at fal too: cancelling the
background run goes through the same path as a client cancelling a waiting call. Every other client, and every
legacy-era connection (where a `resultType: "task"` would be an invalid result), gets the ordinary call.

Tasks live in this process's memory for `TTL_MS` and belong to the caller that made them (the partition of its
fal key); the fal requests they run are in the request history like any other, so a restart loses the task
handle but never the request.

No caller can push out another's task. A task is made only once its run is under way (fal accepted the request,
or the run has been going for `ANSWER_WITHIN_S`): a call that fails before that (bad arguments, a refused input, a
key fal rejects) is answered as an ordinary tool result and leaves no record. The store is bounded per caller
(`MAX_TASKS_PER_OWNER`) and in total (`MAX_TASKS`); to make room a caller first gives up its own oldest finished
task, and only a full store takes the oldest finished task of whoever holds the most. A working task is never
evicted: when only working tasks fill the room, the new call is refused.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import Context, require_client_extension
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    CallToolRequestParams,
    CallToolResult,
    RequestParams,
    TextContent,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel

from fal_mcp.jobs.state import AppState
from fal_mcp.server.context import caller_identity
from fal_mcp.server.progress import progress_sink

logger = logging.getLogger(__name__)

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
TASK_TOOLS = frozenset({"run-model"})
TTL_MS = 3_600_000
POLL_INTERVAL_MS = 500
MAX_TASKS = 1000
MAX_TASKS_PER_OWNER = 100
ANSWER_WITHIN_S = 5.0
"""The longest a task-capable call waits for its run to get under way before it is answered with the task."""

running_as_task: ContextVar[bool] = ContextVar("running_as_task", default=False)
"""True inside a background task run: the tool then waits for completion instead of its usual budget."""


class TaskIdParams(RequestParams):
    """`{"taskId": ...}`, the parameters of `tasks/get` and `tasks/cancel`."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    task_id: str = Field(min_length=1, max_length=100)


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"


@dataclass
class TaskRecord:
    """One task: who owns it, where it stands, and how to stop it."""

    task_id: str
    partition: str
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    status: str = "working"
    status_message: str | None = "starting"
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)

    def update(self, message: str) -> None:
        self.status_message = message
        self.updated_at = time.time()

    def finish(self, status: str, *, result: dict[str, Any] | None = None, error: dict[str, Any] | None = None) -> None:
        if self.status != "working":
            return  # terminal states are final
        self.status, self.result, self.error = status, result, error
        self.updated_at = time.time()

    def wire(self) -> dict[str, Any]:
        """The task as `tasks/get` shows it (a DetailedTask)."""
        body: dict[str, Any] = {
            "taskId": self.task_id,
            "status": self.status,
            "createdAt": _iso(self.created_at),
            "lastUpdatedAt": _iso(self.updated_at),
            "ttlMs": TTL_MS,
            "pollIntervalMs": POLL_INTERVAL_MS,
        }
        if self.status_message:
            body["statusMessage"] = self.status_message
        if self.result is not None:
            body["result"] = self.result
        if self.error is not None:
            body["error"] = self.error
        return body


class _Run:
    """A run started for a task-capable call, before and after it is answered."""

    def __init__(self, record: TaskRecord) -> None:
        self.record = record
        self.under_way = anyio.Event()
        """Set on the run's first progress (fal accepted the request) or when it ends."""
        self.ended = False
        self.answer: HandlerResult = None
        self.raised: MCPError | None = None

    def heard(self, message: str) -> None:
        self.record.update(message)
        self.under_way.set()

    def result(self) -> HandlerResult:
        """What an ordinary call would have answered."""
        if self.raised is not None:
            raise self.raised
        return self.answer


class TasksExtension(Extension):
    """Answers `run-model` with a task on connections that can take one, and serves `tasks/get` / `tasks/cancel`."""

    identifier = TASKS_EXTENSION

    def __init__(self) -> None:
        self._tasks: dict[str, TaskRecord] = {}
        self._starting: dict[str, int] = {}
        """Runs per owner started for a task-capable call and not yet answered."""
        self._group: TaskGroup | None = None

    def attach(self, group: TaskGroup | None) -> None:
        """Where background runs live: a task group the server's lifespan keeps open."""
        self._group = group

    def methods(self) -> list[MethodBinding]:
        modern = frozenset(MODERN_PROTOCOL_VERSIONS)
        return [
            MethodBinding("tasks/get", TaskIdParams, self._get, protocol_versions=modern),
            MethodBinding("tasks/cancel", TaskIdParams, self._cancel, protocol_versions=modern),
        ]

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if params.name not in TASK_TOOLS or self._group is None or not _can_take_a_task(ctx):
            return await call_next(ctx)
        owner = _partition(ctx)
        refusal = self._no_room_for(owner)
        if refusal is not None:
            return CallToolResult(content=[TextContent(type="text", text=f"{params.name}: {refusal}")], is_error=True)
        run = _Run(TaskRecord(task_id=str(uuid.uuid4()), partition=owner))
        self._starting[owner] = self._starting.get(owner, 0) + 1
        try:
            self._group.start_soon(self._run, run, call_next, ctx)
            with anyio.move_on_after(ANSWER_WITHIN_S):
                await run.under_way.wait()
        except BaseException:  # the caller left before the task existed: the run is theirs to stop
            run.record.scope.cancel()
            raise
        finally:
            self._starting[owner] -= 1
            if not self._starting[owner]:
                del self._starting[owner]
        if run.ended:  # over before it was under way (a refusal, a failure): an ordinary answer, no record
            return run.result()
        self._admit(run.record)
        logger.info("run-model answered as task %s", run.record.task_id)
        created = run.record.wire()
        created["resultType"] = "task"
        return created

    async def _run(self, run: _Run, call_next: CallNext, ctx: ServerRequestContext[Any, Any]) -> None:
        running_as_task.set(True)
        progress_sink.set(run.heard)
        record = run.record
        try:
            with record.scope:
                try:
                    run.answer = await call_next(ctx)
                except MCPError as exc:
                    run.raised = exc
                    record.finish("failed", error={"code": exc.error.code, "message": exc.error.message})
                    return
                except Exception:
                    logger.exception("task %s crashed", record.task_id)
                    run.raised = MCPError(code=INTERNAL_ERROR, message="internal error")
                    record.finish("failed", error={"code": INTERNAL_ERROR, "message": "internal error"})
                    return
                record.finish("completed", result=_dump(run.answer))
            if record.scope.cancelled_caught:
                record.finish("cancelled")
                record.update("cancelled at the caller's request")
        finally:
            run.ended = True
            run.under_way.set()

    def _owned(self, ctx: ServerRequestContext[Any, Any], task_id: str) -> TaskRecord:
        require_client_extension(ctx, TASKS_EXTENSION)
        record = self._tasks.get(task_id)
        if record is None or record.partition != _partition(ctx) or _expired(record):
            raise MCPError(code=INVALID_PARAMS, message="Failed to retrieve task: Task not found")
        return record

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> HandlerResult:
        return self._owned(ctx, params.task_id).wire()

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> HandlerResult:
        record = self._owned(ctx, params.task_id)
        if record.status == "working":
            record.update("cancelling")
            record.scope.cancel()
        return {}

    def _no_room_for(self, owner: str) -> str | None:
        """Why a new task of `owner` cannot be held, or None. Finished tasks can always make room; working tasks and
        runs still starting cannot, so they alone are counted against the bounds."""
        self._forget_expired()
        busy = [record.partition for record in self._tasks.values() if record.status == "working"]
        owned = busy.count(owner) + self._starting.get(owner, 0)
        if owned >= MAX_TASKS_PER_OWNER:
            return (
                f"this caller already has {owned} tasks running on this server, the most allowed. Wait for one "
                "to finish or cancel one (tasks/cancel), then retry."
            )
        if len(busy) + sum(self._starting.values()) >= MAX_TASKS:
            return f"this server is running {MAX_TASKS} tasks, the most it holds. Retry in a minute."
        return None

    def _admit(self, record: TaskRecord) -> None:
        """Store a task, first making room: the owner's own oldest finished task, else (the store being full) the
        oldest finished task of whoever holds the most. `_no_room_for` made sure a finished one exists."""
        self._forget_expired()
        owner = record.partition
        owned = [r for r in self._tasks.values() if r.partition == owner]
        if len(owned) >= MAX_TASKS_PER_OWNER or len(self._tasks) >= MAX_TASKS:
            victim = _oldest_finished(owned)
            if victim is None and len(self._tasks) >= MAX_TASKS:
                holders = Counter(r.partition for r in self._tasks.values() if r.status != "working")
                if holders:
                    biggest = max(holders, key=lambda p: (sum(r.partition == p for r in self._tasks.values()), p))
                    victim = _oldest_finished([r for r in self._tasks.values() if r.partition == biggest])
            if victim is not None:
                del self._tasks[victim.task_id]
        self._tasks[record.task_id] = record

    def _forget_expired(self) -> None:
        for task_id in [t for t, record in self._tasks.items() if _expired(record)]:
            del self._tasks[task_id]


def _oldest_finished(records: list[TaskRecord]) -> TaskRecord | None:
    finished = [record for record in records if record.status != "working"]
    return min(finished, key=lambda record: record.created_at) if finished else None


def _declares_tasks(ctx: ServerRequestContext[Any, Any]) -> bool:
    capabilities = ctx.session.client_capabilities
    return bool(capabilities and capabilities.extensions and TASKS_EXTENSION in capabilities.extensions)


def _can_take_a_task(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Only on the modern protocol (a legacy wire has no such result), and only if this request says it can."""
    return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS and _declares_tasks(ctx)


def _partition(ctx: ServerRequestContext[Any, Any]) -> str:
    state = ctx.lifespan_context
    if not isinstance(state, AppState):
        raise MCPError(code=INTERNAL_ERROR, message="fal-mcp's lifespan did not run")
    return state.caller_for(caller_identity(Context(request_context=ctx))).partition


def _expired(record: TaskRecord) -> bool:
    return (time.time() - record.created_at) * 1000 > TTL_MS


def _dump(result: HandlerResult) -> dict[str, Any]:
    if isinstance(result, CallToolResult):
        return result.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"result_type", "meta"})
    if isinstance(result, dict):
        return result
    return {} if result is None else result.model_dump(mode="json", by_alias=True, exclude_none=True)
