"""MCP tasks (`io.modelcontextprotocol/tasks`) for `run-model`, for clients that can poll instead of wait.

On a 2026-07-28 connection whose request advertises the extension, `run-model` answers at once with a task
handle; the run goes on in the background (waiting up to `FAL_MCP_MAX_WAIT_S`, since no client timeout applies
to it any more), `tasks/get` reports it (its status message follows the progress: `queued, position 2`,
`running: ...`) and finally carries the tool result, and `tasks/cancel` stops it, at fal too: cancelling the
background run goes through the same path as a client cancelling a waiting call. Every other client, and every
legacy-era connection (where a `resultType: "task"` would be an invalid result), gets the ordinary call.

The task's record lives in the store (`store.tasks`), so any replica sharing it answers `tasks/get` and
`tasks/cancel`; the run itself lives in the process that started it. A cancel that reaches another replica is
passed on through the store (a flag the owner is notified of, and polls for as a safety net), and the owner cancels
its run. A task whose process died is reported failed, with its fal request id, so the caller can continue with
get-result. Records last `TTL_MS` and belong to the caller that made them (the partition of its fal key).

No caller can push out another's task. A task is made only once its run is under way (fal accepted the request,
or the run has been going for `ANSWER_WITHIN_S`): a call that fails before that (bad arguments, a refused input, a
key fal rejects) is answered as an ordinary tool result and leaves no record. Each caller holds at most
`MAX_TASKS_PER_OWNER` working tasks across the replicas (counted in the store, under the caller's lock), and gives
up its own oldest finished task to make room; a process runs at most `MAX_TASKS` at once. A working task is never
evicted: when only working tasks fill the room, the new call is refused.
"""

from __future__ import annotations

import logging
import time
import uuid
from contextvars import ContextVar
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
from fal_mcp.store import owners
from fal_mcp.store.database import StoreUnavailable
from fal_mcp.store.tasks import TTL_S, WORKING, TaskRow, TaskRows, orphaned_message

logger = logging.getLogger(__name__)

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
TASK_TOOLS = frozenset({"run-model"})
TTL_MS = int(TTL_S * 1000)
POLL_INTERVAL_MS = 500
MAX_TASKS = 1000
MAX_TASKS_PER_OWNER = 100
ANSWER_WITHIN_S = 5.0
"""The longest a task-capable call waits for its run to get under way before it is answered with the task."""
WRITE_EVERY_S = 0.25
"""A task's status message is written to the store at most this often (the last one always)."""
CANCEL_POLL_S = 2.0
"""How often a running task looks for a cancel asked on another replica, besides being notified of it."""

running_as_task: ContextVar[bool] = ContextVar("running_as_task", default=False)
"""True inside a background task run: the tool then waits for completion instead of its usual budget."""


class TaskIdParams(RequestParams):
    """`{"taskId": ...}`, the parameters of `tasks/get` and `tasks/cancel`."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    task_id: str = Field(min_length=1, max_length=100)


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"


def wire(row: TaskRow) -> dict[str, Any]:
    """The task as `tasks/get` shows it (a DetailedTask)."""
    body: dict[str, Any] = {
        "taskId": row.task_id,
        "status": row.status,
        "createdAt": _iso(row.created_at),
        "lastUpdatedAt": _iso(row.updated_at),
        "ttlMs": TTL_MS,
        "pollIntervalMs": POLL_INTERVAL_MS,
    }
    if row.status_message:
        body["statusMessage"] = row.status_message
    if row.result is not None:
        body["result"] = row.result
    if row.error is not None:
        body["error"] = {"code": INTERNAL_ERROR, **row.error}
    return body


class _Run:
    """A run started for a task-capable call, in this process, before and after it is answered."""

    def __init__(self, row: TaskRow, rows: TaskRows) -> None:
        self.row = row
        self.rows = rows
        self.scope = anyio.CancelScope()
        self.under_way = anyio.Event()
        """Set on the run's first progress (fal accepted the request) or when it ends."""
        self.ended = False
        self.answer: HandlerResult = None
        self.raised: MCPError | None = None
        self._message_changed = anyio.Event()

    def heard(self, message: str) -> None:
        self.row.status_message = message
        self._message_changed.set()
        self.under_way.set()

    def requested(self, endpoint_id: str, request_id: str) -> None:
        self.row.endpoint_id, self.row.request_id = endpoint_id, request_id

    def result(self) -> HandlerResult:
        """What an ordinary call would have answered."""
        if self.raised is not None:
            raise self.raised
        return self.answer

    async def write_progress(self) -> None:
        """Keep the record's status message (and fal request) in step with the run, a few writes a second at most."""
        written: tuple[str | None, str | None] = (None, None)
        while True:
            await self._message_changed.wait()
            self._message_changed = anyio.Event()
            try:
                if self.row.request_id is not None and written[1] != self.row.request_id:
                    await self.rows.started(self.row.task_id, self.row.request_id, self.row.endpoint_id or "")
                if self.row.status_message is not None and written[0] != self.row.status_message:
                    await self.rows.progress(self.row.task_id, self.row.status_message)
                written = (self.row.status_message, self.row.request_id)
            except StoreUnavailable as exc:
                logger.warning("task %s: progress not recorded: %s", self.row.task_id, exc)
            await anyio.sleep(WRITE_EVERY_S)

    async def watch_cancel(self, signals_listen: Any, subscribed: Any) -> None:
        """Cancel the run when another replica asks for it (notified, or found by polling)."""
        await signals_listen()
        with subscribed(f"cancel:{self.row.task_id}") as waiter:
            while True:
                try:
                    if await self.rows.cancel_requested(self.row.task_id):
                        self.scope.cancel()
                        return
                except StoreUnavailable:
                    pass  # looked again on the next round
                await waiter.wait(CANCEL_POLL_S)

    async def finish(self, status: str, **outcome: Any) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self.rows.finish(self.row.task_id, status, **outcome)
            except StoreUnavailable as exc:
                logger.warning("task %s ended %s, but the store could not record it: %s", self.row.task_id, status, exc)


class TasksExtension(Extension):
    """Answers `run-model` with a task on connections that can take one, and serves `tasks/get` / `tasks/cancel`."""

    identifier = TASKS_EXTENSION

    def __init__(self) -> None:
        self._runs: dict[str, _Run] = {}
        """The runs of this process, by task id, until they end."""
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
        state = _state(ctx)
        now = time.time()
        row = TaskRow(
            task_id=str(uuid.uuid4()),
            partition=_partition(ctx),
            owner=owners.owner(),
            created_at=now,
            updated_at=now,
            status_message="starting",
        )
        refusal = await self._reserve(state.store.tasks, row)
        if refusal is not None:
            return CallToolResult(content=[TextContent(type="text", text=f"{params.name}: {refusal}")], is_error=True)
        run = _Run(row, state.store.tasks)
        self._runs[row.task_id] = run
        try:
            self._group.start_soon(self._run, run, call_next, ctx, state)
            with anyio.move_on_after(ANSWER_WITHIN_S):
                await run.under_way.wait()
        except BaseException:  # the caller left before the task existed: the run is theirs to stop
            run.scope.cancel()
            raise
        if run.ended:  # over before it was under way (a refusal, a failure): an ordinary answer, no record
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                try:
                    await state.store.tasks.drop(row.task_id)
                except StoreUnavailable as exc:
                    logger.warning("task %s not dropped: %s", row.task_id, exc)
            return run.result()
        logger.info("run-model answered as task %s", row.task_id)
        created = wire(row)
        created["resultType"] = "task"
        return created

    async def _reserve(self, rows: TaskRows, row: TaskRow) -> str | None:
        """Why a new task of this caller cannot be held, or None once its record is stored."""
        if len(self._runs) >= MAX_TASKS:
            return f"this server is running {MAX_TASKS} tasks, the most it holds. Retry in a minute."
        try:
            owned = await rows.reserve(row, MAX_TASKS_PER_OWNER)
        except StoreUnavailable as exc:
            return f"{exc}. Nothing was sent to fal."
        if owned is not None:
            return (
                f"this caller already has {owned} tasks running on this server, the most allowed. Wait for one "
                "to finish or cancel one (tasks/cancel), then retry."
            )
        return None

    async def _run(self, run: _Run, call_next: CallNext, ctx: ServerRequestContext[Any, Any], state: AppState) -> None:
        from fal_mcp.server.progress import progress_sink, request_sink  # with what waits: not at every start

        running_as_task.set(True)
        progress_sink.set(run.heard)
        request_sink.set(run.requested)
        row = run.row
        database = state.store.database
        try:
            async with anyio.create_task_group() as helpers:
                helpers.start_soon(run.write_progress)
                helpers.start_soon(run.watch_cancel, database.listen, database.signals.subscribed)
                try:
                    await self._work(run, call_next, ctx)
                finally:
                    helpers.cancel_scope.cancel()
        except anyio.get_cancelled_exc_class():  # the server is stopping: say so now, not after a silence
            message = orphaned_message(row.request_id, row.endpoint_id)
            await run.finish("failed", message=message, error={"message": message})
            raise
        finally:
            run.ended = True
            run.under_way.set()
            self._runs.pop(row.task_id, None)

    async def _work(self, run: _Run, call_next: CallNext, ctx: ServerRequestContext[Any, Any]) -> None:
        row = run.row
        with run.scope:
            try:
                run.answer = await call_next(ctx)
            except MCPError as exc:
                run.raised = exc
                await run.finish("failed", error={"code": exc.error.code, "message": exc.error.message})
                return
            except Exception:
                logger.exception("task %s crashed", row.task_id)
                run.raised = MCPError(code=INTERNAL_ERROR, message="internal error")
                await run.finish("failed", error={"code": INTERNAL_ERROR, "message": "internal error"})
                return
            await run.finish("completed", result=_dump(run.answer), message=row.status_message)
        if run.scope.cancelled_caught:
            await run.finish("cancelled", message="cancelled at the caller's request")

    async def _owned(self, ctx: ServerRequestContext[Any, Any], task_id: str) -> TaskRow:
        require_client_extension(ctx, TASKS_EXTENSION)
        try:
            row = await _state(ctx).store.tasks.get(task_id)
        except StoreUnavailable as exc:
            raise MCPError(code=INTERNAL_ERROR, message=str(exc)) from exc
        if row is None or row.partition != _partition(ctx):
            raise MCPError(code=INVALID_PARAMS, message="Failed to retrieve task: Task not found")
        return row

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> HandlerResult:
        return wire(await self._owned(ctx, params.task_id))

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> HandlerResult:
        row = await self._owned(ctx, params.task_id)
        if row.status != WORKING:
            return {}
        local = self._runs.get(row.task_id)
        if local is not None:
            local.heard("cancelling")
            local.scope.cancel()
            return {}
        try:
            await _state(ctx).store.tasks.request_cancel(row.task_id)  # its owner, on another replica, stops it
        except StoreUnavailable as exc:
            raise MCPError(code=INTERNAL_ERROR, message=str(exc)) from exc
        return {}


def _declares_tasks(ctx: ServerRequestContext[Any, Any]) -> bool:
    capabilities = ctx.session.client_capabilities
    return bool(capabilities and capabilities.extensions and TASKS_EXTENSION in capabilities.extensions)


def _can_take_a_task(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Only on the modern protocol (a legacy wire has no such result), and only if this request says it can."""
    return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS and _declares_tasks(ctx)


def _state(ctx: ServerRequestContext[Any, Any]) -> AppState:
    state = ctx.lifespan_context
    if not isinstance(state, AppState):
        raise MCPError(code=INTERNAL_ERROR, message="fal-mcp's lifespan did not run")
    return state


def _partition(ctx: ServerRequestContext[Any, Any]) -> str:
    return _state(ctx).caller_for(caller_identity(Context(request_context=ctx))).partition


def _dump(result: HandlerResult) -> dict[str, Any]:
    if isinstance(result, CallToolResult):
        return result.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"result_type", "meta"})
    if isinstance(result, dict):
        return result
    return {} if result is None else result.model_dump(mode="json", by_alias=True, exclude_none=True)
