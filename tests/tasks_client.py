"""The client side of the MCP tasks extension, as a tasks-capable client implements it (for the tests).

`TasksClient` advertises `io.modelcontextprotocol/tasks`, claims `resultType: "task"` answers to `tools/call`,
and resolves them by polling `tasks/get` at the server's `pollIntervalMs` until the task is terminal. It can
cancel the task with `tasks/cancel` after a given time, as a user pressing stop would.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import anyio
from mcp.client import ClaimContext, ClientExtension, ResultClaim
from mcp_types import CallToolResult, Request, RequestParams, Result
from pydantic import Field, TypeAdapter

TASKS = "io.modelcontextprotocol/tasks"


class CreatedTask(Result):
    result_type: Literal["task"] = Field(alias="resultType")
    task_id: str = Field(alias="taskId")
    status: str
    poll_interval_ms: int | None = Field(default=None, alias="pollIntervalMs")


class TaskIdParams(RequestParams):
    task_id: str = Field(alias="taskId")


class GetTask(Request[TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    params: TaskIdParams
    name_param: ClassVar[str | None] = "taskId"


class CancelTask(Request[TaskIdParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: TaskIdParams
    name_param: ClassVar[str | None] = "taskId"


class TasksClient(ClientExtension):
    identifier = TASKS

    def __init__(self, *, cancel_after_s: float | None = None) -> None:
        self.cancel_after_s = cancel_after_s
        self.created: list[CreatedTask] = []
        self.polls: list[dict[str, Any]] = []

    def claims(self) -> list[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=CreatedTask, resolve=self._resolve)]

    async def _resolve(self, created: CreatedTask, cctx: ClaimContext) -> CallToolResult:
        self.created.append(created)
        started = anyio.current_time()
        cancelled = False
        while True:
            task = await cctx.session.send_request(
                GetTask(params=TaskIdParams(taskId=created.task_id)), TypeAdapter(dict[str, Any])
            )
            self.polls.append(task)
            if task["status"] == "completed":
                return CallToolResult.model_validate(task["result"])
            if task["status"] in ("failed", "cancelled"):
                message = task.get("statusMessage") or task["status"]
                return CallToolResult(
                    content=[{"type": "text", "text": f"task {task['status']}: {message}"}], is_error=True
                )
            if (
                not cancelled
                and self.cancel_after_s is not None
                and anyio.current_time() - started > self.cancel_after_s
            ):
                await cctx.session.send_request(
                    CancelTask(params=TaskIdParams(taskId=created.task_id)), TypeAdapter(dict[str, Any])
                )
                cancelled = True
            await anyio.sleep((task.get("pollIntervalMs") or 500) / 1000)
