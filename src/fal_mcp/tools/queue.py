"""The five queue tools: run-model, submit, get-status, get-result, cancel.

Each returns a `CallToolResult` whose `structuredContent` matches its output model (`fal_mcp.outputs`); a failure
is caught by `guarded` and worded by `fal_mcp.replies`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult
from pydantic import Field

from fal_mcp.client import FalClient, RequestOptions
from fal_mcp.endpoint import EndpointId, check_request_id, resolve_endpoint
from fal_mcp.models import COMPLETED, QueueStatus
from fal_mcp.outputs import CancelResult, RequestResult, StatusResult, SubmitResult
from fal_mcp.progress import ProgressReporter
from fal_mcp.replies import AfterSubmit, ToolFailure, success
from fal_mcp.state import AppState, app_state
from fal_mcp.tools.arguments import (
    AppArg,
    EndpointArg,
    HintArg,
    InputArg,
    LogsArg,
    OwnerArg,
    PriorityArg,
    RequestIdArg,
    StartTimeoutArg,
    VariantArg,
    WebhookArg,
)
from fal_mcp.tools.guard import guarded
from fal_mcp.tools.spec import ToolSpec
from fal_mcp.waiting import describe_state, fetch_output, follow


def _options(priority: str | None, hint: str | None, start_timeout_s: float | None) -> RequestOptions:
    return RequestOptions(priority=priority, hint=hint, start_timeout_s=start_timeout_s)


def _envelope(endpoint: EndpointId, request_id: str | None, status: QueueStatus) -> RequestResult:
    return RequestResult(
        endpoint_id=str(endpoint),
        request_id=request_id,
        status=status.status,
        metrics=status.metrics or None,
        queue_position=status.queue_position,
        logs=status.logs,
    )


def _continue_hint(endpoint: EndpointId, request_id: str, status: QueueStatus, waited_s: float) -> str:
    return (
        f"Still {describe_state(status)} after {waited_s:.0f}s; the job keeps running at fal. "
        f"Call get-result with request_id='{request_id}' and endpoint_id='{endpoint}' (wait_s>0 to wait), "
        "or cancel it."
    )


async def _finish(
    state: AppState,
    fal: FalClient,
    endpoint: EndpointId,
    request_id: str,
    status: QueueStatus,
    waited_s: float,
) -> CallToolResult:
    """The envelope for a followed request: its output when terminal, else its handle and how to continue."""
    envelope = _envelope(endpoint, request_id, status)
    if status.is_terminal:
        envelope.output = await fetch_output(fal, endpoint, request_id, status)
        envelope.status = COMPLETED
        headline = f"{endpoint} completed (request {request_id})."
    else:
        envelope.next_step = _continue_hint(endpoint, request_id, status, waited_s)
        headline = envelope.next_step
    return success(headline, envelope, sandbox=state.settings.sandbox)


def _wait_budget(state: AppState, wait_s: float | None) -> float:
    if wait_s is None:
        return state.settings.wait_s
    if wait_s > state.settings.max_wait_s:
        raise ToolFailure(f"wait_s may be at most {state.settings.max_wait_s:g} seconds on this server")
    return wait_s


# -- the tools -------------------------------------------------------------------------------------------


@guarded("run-model")
async def run_model(
    ctx: Context[Any, Any],
    input: InputArg,
    endpoint_id: EndpointArg = None,
    app_owner: OwnerArg = None,
    app_id: AppArg = None,
    app_variant: VariantArg = None,
    mode: Annotated[
        Literal["queue", "sync"],
        Field(description="'queue' (default): submit and wait, with progress. 'sync': one blocking HTTP call"),
    ] = "queue",
    wait_s: Annotated[
        float | None,
        Field(description="Queue mode: seconds to wait before returning the request handle instead", ge=0),
    ] = None,
    logs: LogsArg = False,
    priority: PriorityArg = None,
    hint: HintArg = None,
    start_timeout_s: StartTimeoutArg = None,
) -> Annotated[CallToolResult, RequestResult]:
    """Run a fal model and return its output. Waits up to wait_s, then returns the request_id to continue with."""
    state = app_state(ctx)
    endpoint = resolve_endpoint(endpoint_id, app_owner, app_id, app_variant)
    options = _options(priority, hint, start_timeout_s)
    fal = state.caller(ctx).fal
    if mode == "sync":
        ran = await fal.run(endpoint, input, options)
        envelope = RequestResult(
            endpoint_id=str(endpoint), request_id=ran.request_id, status=COMPLETED, output=ran.output
        )
        return success(f"{endpoint} completed.", envelope, sandbox=state.settings.sandbox)
    budget = _wait_budget(state, wait_s)
    submitted = await fal.submit(endpoint, input, options)
    request_id = submitted.request_id
    progress = ProgressReporter(ctx)
    await progress.report(f"submitted to {endpoint} as {request_id}")
    started = anyio.current_time()

    async def on_status(status: QueueStatus) -> None:
        await progress.report(describe_state(status))

    try:
        status = await follow(fal, endpoint, request_id, budget_s=budget, logs=logs, on_status=on_status)
        return await _finish(state, fal, endpoint, request_id, status, anyio.current_time() - started)
    except Exception as exc:
        raise AfterSubmit(request_id, str(endpoint), exc) from exc


@guarded("submit")
async def submit(
    ctx: Context[Any, Any],
    input: InputArg,
    endpoint_id: EndpointArg = None,
    app_owner: OwnerArg = None,
    app_id: AppArg = None,
    app_variant: VariantArg = None,
    webhook_url: WebhookArg = None,
    priority: PriorityArg = None,
    hint: HintArg = None,
    start_timeout_s: StartTimeoutArg = None,
) -> Annotated[CallToolResult, SubmitResult]:
    """Queue a fal model request and return its request_id at once (for slow models such as video)."""
    state = app_state(ctx)
    endpoint = resolve_endpoint(endpoint_id, app_owner, app_id, app_variant)
    submitted = await state.caller(ctx).fal.submit(
        endpoint, input, _options(priority, hint, start_timeout_s), webhook_url=webhook_url
    )
    result = SubmitResult(
        endpoint_id=str(endpoint),
        request_id=submitted.request_id,
        status=submitted.status,
        queue_position=submitted.queue_position,
        status_url=submitted.status_url,
        response_url=submitted.response_url,
        cancel_url=submitted.cancel_url,
    )
    headline = (
        f"Queued {endpoint} as request {submitted.request_id}. "
        "Follow it with get-status or get-result (same request_id and endpoint_id)."
    )
    return success(headline, result, sandbox=state.settings.sandbox)


@guarded("get-status")
async def get_status(
    ctx: Context[Any, Any],
    request_id: RequestIdArg,
    endpoint_id: EndpointArg = None,
    app_owner: OwnerArg = None,
    app_id: AppArg = None,
    app_variant: VariantArg = None,
    logs: LogsArg = False,
) -> Annotated[CallToolResult, StatusResult]:
    """Check a queued request: IN_QUEUE (with position), IN_PROGRESS or COMPLETED (with error if it failed)."""
    state = app_state(ctx)
    endpoint = resolve_endpoint(endpoint_id, app_owner, app_id, app_variant)
    check_request_id(request_id)
    status = await state.caller(ctx).fal.status(endpoint, request_id, logs=logs)
    result = StatusResult(
        endpoint_id=str(endpoint),
        request_id=request_id,
        status=status.status,
        queue_position=status.queue_position,
        logs=status.logs,
        metrics=status.metrics or None,
        error=status.error,
        error_type=status.error_type,
    )
    headline = f"Request {request_id} is {describe_state(status)}."
    if status.failed:
        headline += f" Error: {status.error}"
    return success(headline, result, sandbox=state.settings.sandbox)


@guarded("get-result")
async def get_result(
    ctx: Context[Any, Any],
    request_id: RequestIdArg,
    endpoint_id: EndpointArg = None,
    app_owner: OwnerArg = None,
    app_id: AppArg = None,
    app_variant: VariantArg = None,
    wait_s: Annotated[
        float, Field(description="Seconds to wait for completion (0: answer at once with the current state)", ge=0)
    ] = 0,
    logs: LogsArg = False,
) -> Annotated[CallToolResult, RequestResult]:
    """Get a request's output; if it is still running, its state (or wait up to wait_s for it)."""
    state = app_state(ctx)
    fal = state.caller(ctx).fal
    endpoint = resolve_endpoint(endpoint_id, app_owner, app_id, app_variant)
    check_request_id(request_id)
    budget = _wait_budget(state, wait_s)
    started = anyio.current_time()
    if budget > 0:
        progress = ProgressReporter(ctx)

        async def on_status(status: QueueStatus) -> None:
            await progress.report(describe_state(status))

        status = await follow(fal, endpoint, request_id, budget_s=budget, logs=logs, on_status=on_status)
    else:
        status = await fal.status(endpoint, request_id, logs=logs)
    return await _finish(state, fal, endpoint, request_id, status, anyio.current_time() - started)


@guarded("cancel")
async def cancel(
    ctx: Context[Any, Any],
    request_id: RequestIdArg,
    endpoint_id: EndpointArg = None,
    app_owner: OwnerArg = None,
    app_id: AppArg = None,
    app_variant: VariantArg = None,
) -> Annotated[CallToolResult, CancelResult]:
    """Cancel a queued or running request (a running one stops if the model allows it)."""
    state = app_state(ctx)
    endpoint = resolve_endpoint(endpoint_id, app_owner, app_id, app_variant)
    check_request_id(request_id)
    outcome = await state.caller(ctx).fal.cancel(endpoint, request_id)
    result = CancelResult(endpoint_id=str(endpoint), request_id=request_id, status=outcome)
    if outcome == "ALREADY_COMPLETED":
        headline = f"Request {request_id} had already completed; nothing to cancel. get-result has its output."
    else:
        headline = f"Cancellation of {request_id} requested; a queued request is removed, a running one is stopped."
    return success(headline, result, sandbox=state.settings.sandbox)


QUEUE_TOOLS = (
    ToolSpec(run_model, "run-model", "Run a fal model", read_only=False, destructive=False, idempotent=False),
    ToolSpec(submit, "submit", "Queue a fal request", read_only=False, destructive=False, idempotent=False),
    ToolSpec(get_status, "get-status", "Status of a fal request", read_only=True, destructive=False, idempotent=True),
    ToolSpec(get_result, "get-result", "Result of a fal request", read_only=True, destructive=False, idempotent=True),
    ToolSpec(cancel, "cancel", "Cancel a fal request", read_only=False, destructive=True, idempotent=True),
)
