"""The five queue tools: run-model, submit, get-status, get-result, cancel.

Each returns a `CallToolResult` whose `structuredContent` matches its output model (`fal_mcp.jobs.results`); a failure
is caught by `guarded` and worded by `fal_mcp.jobs.failures`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, TextContent
from pydantic import Field

from fal_mcp.fal.client import ALREADY_COMPLETED, RequestOptions
from fal_mcp.fal.endpoint import resolve_endpoint
from fal_mcp.jobs.cost.estimates import usd
from fal_mcp.jobs.cost.limits import Spend
from fal_mcp.jobs.guards import nested_deeper_than
from fal_mcp.jobs.operations import Operations
from fal_mcp.jobs.results import CancelResult, Costed, RequestResult, RunResult, StatusResult, SubmitResult
from fal_mcp.jobs.saving import Saver
from fal_mcp.media.saving import SaveFolder
from fal_mcp.server.attachments import show_media
from fal_mcp.server.consent import Consent, agreed
from fal_mcp.server.context import app_state, caller_of
from fal_mcp.server.progress import QueueProgress
from fal_mcp.server.replies import success
from fal_mcp.server.tasks import running_as_task
from fal_mcp.server.tools.arguments import (
    AppArg,
    EndpointArg,
    HintArg,
    InputArg,
    LogsArg,
    MaxCostArg,
    OwnerArg,
    PreviewsArg,
    PriorityArg,
    RequestIdArg,
    SaveToArg,
    StartTimeoutArg,
    ValidateArg,
    VariantArg,
    WebhookArg,
)
from fal_mcp.server.tools.guard import guarded
from fal_mcp.server.tools.roots import ClientRoots
from fal_mcp.server.tools.spec import SEGMENTS, ToolSpec


def _options(priority: str | None, hint: str | None, start_timeout_s: float | None) -> RequestOptions:
    return RequestOptions(priority=priority, hint=hint, start_timeout_s=start_timeout_s)


def operations(ctx: Context[Any, Any]) -> Operations:
    state = app_state(ctx)
    return Operations(state=state, caller=caller_of(ctx), client_roots=ClientRoots(ctx))


STRUCTURED_MAX_DEPTH = 64
"""Levels of a model's output a result carries as structured content. MCP clients' JSON parsers stop not far above
(the Python SDK's near 200 levels, the message around the output included; serde_json's at 128)."""


def _as_text(output: Any, limit: int) -> TextContent:
    """A model's output as JSON text, within `limit` characters."""
    try:
        text = json.dumps(output, ensure_ascii=False, separators=(",", ":"))
    except (RecursionError, ValueError):
        text = "(it is nested too deeply to be written out at all)"
    if len(text) > limit:
        text = text[:limit] + f"... [cut at {limit:,} of {len(text):,} characters]"
    return TextContent(type="text", text=f"output (JSON):\n{text}")


async def _saving(ctx: Context[Any, Any], ops: Operations, save_to: str | None) -> tuple[Saver, SaveFolder] | None:
    """With `save_to`, the saver and the folder it admitted (a refusal is the call's error, before anything runs)."""
    if save_to is None:
        return None
    saver = Saver(ops.state, client_roots=ClientRoots(ctx))
    return saver, await saver.folder(save_to)


def cost_note(result: Costed) -> str:
    """The estimate in words, for a headline: "estimated cost: about $0.003", or why it is unknown."""
    if result.estimated_cost_usd is not None:
        return f"estimated cost: about {usd(result.estimated_cost_usd)}"
    return f"estimated cost: unknown ({result.estimate_basis})"


async def _reply(
    ops: Operations, result: RequestResult, *, previews: bool, saving: tuple[Saver, SaveFolder] | None = None
) -> CallToolResult:
    if result.next_step is not None:
        headline = result.next_step
    else:
        headline = f"{result.endpoint_id} completed" + (
            f" (request {result.request_id})." if result.request_id else "."
        )
    if isinstance(result, RunResult) and result.estimate_basis is not None:
        headline += f" E{cost_note(result)[1:]}."
    if saving is not None:
        saver, folder = saving
        if result.next_step is None:
            report = await saver.save(result.output, folder)
            result.saved = report.saved
            headline += report.note()
        else:
            headline += " Nothing saved yet: call get-result with save_to once it completes."
    settings = ops.state.settings
    output = result.output
    too_deep = nested_deeper_than(output, STRUCTURED_MAX_DEPTH)
    if too_deep:  # a result must still reach the caller: the output as text, with no structured copy
        result = result.model_copy(update={"output": None})
        headline += (
            f" Its output is nested more than {STRUCTURED_MAX_DEPTH} levels deep, more than structured content may "
            "carry: it follows as JSON text."
        )
    shown = await show_media(ops.state, output, previews=previews, request_id=result.request_id)
    reply = success(headline + shown.note, result, sandbox=settings.sandbox, text_limit=settings.text_max_chars)
    reply.content += shown.blocks
    if too_deep:
        reply.content.append(_as_text(output, settings.text_max_chars))
    return reply


# -- the tools -------------------------------------------------------------------------------------------


@guarded("run-model")
async def run_model(
    ctx: Context[Any, Any],
    input: InputArg,
    consent: Consent,
    endpoint_id: EndpointArg = None,
    app_owner: OwnerArg = None,
    app_id: AppArg = None,
    app_variant: VariantArg = None,
    mode: Annotated[
        Literal["queue", "sync"],
        Field(description="sync: one HTTP call"),
    ] = "queue",
    wait_s: Annotated[
        float | None,
        Field(description="Seconds to wait", ge=0),
    ] = None,
    logs: LogsArg = False,
    priority: PriorityArg = None,
    hint: HintArg = None,
    start_timeout_s: StartTimeoutArg = None,
    validate: ValidateArg = True,
    previews: PreviewsArg = True,
    save_to: SaveToArg = None,
    max_cost_usd: MaxCostArg = None,
) -> Annotated[CallToolResult, RunResult]:
    """Run a fal model: its output, or after wait_s its request_id (continue with get-result)."""
    ops = operations(ctx)
    endpoint = resolve_endpoint(endpoint_id, app_owner, app_id, app_variant)
    options = _options(priority, hint, start_timeout_s)
    spend = Spend(max_cost_usd, confirmed=agreed(consent))  # declined or dismissed: nothing is sent
    saving = await _saving(ctx, ops, save_to)  # a refused folder costs nothing: checked before anything runs
    if mode == "sync":
        result = await ops.run_sync(endpoint, input, options, validate=validate, spend=spend)
        return await _reply(ops, result, previews=previews, saving=saving)
    # As an MCP task nobody is left waiting on the call, so it follows the request to the end.
    budget = ops.state.settings.max_wait_s if running_as_task.get() and wait_s is None else ops.wait_budget(wait_s)
    progress = QueueProgress(ctx, heartbeat_s=ops.state.settings.heartbeat_s)
    async with progress.heartbeat():
        result = await ops.run_queued(
            endpoint, input, options, budget_s=budget, logs=logs, listener=progress, validate=validate, spend=spend
        )
    return await _reply(ops, result, previews=previews, saving=saving)


@guarded("submit")
async def submit(
    ctx: Context[Any, Any],
    input: InputArg,
    consent: Consent,
    endpoint_id: EndpointArg = None,
    app_owner: OwnerArg = None,
    app_id: AppArg = None,
    app_variant: VariantArg = None,
    webhook_url: WebhookArg = None,
    priority: PriorityArg = None,
    hint: HintArg = None,
    start_timeout_s: StartTimeoutArg = None,
    validate: ValidateArg = True,
    max_cost_usd: MaxCostArg = None,
) -> Annotated[CallToolResult, SubmitResult]:
    """Queue a model request; returns its request_id at once."""
    ops = operations(ctx)
    endpoint = resolve_endpoint(endpoint_id, app_owner, app_id, app_variant)
    options = _options(priority, hint, start_timeout_s)
    spend = Spend(max_cost_usd, confirmed=agreed(consent))
    result = await ops.submit(endpoint, input, options, webhook_url=webhook_url, validate=validate, spend=spend)
    headline = (
        f"Queued {endpoint} as request {result.request_id}; {cost_note(result)}. "
        "Follow it with get-status or get-result (same request_id and endpoint_id)."
    )
    return success(headline, result, sandbox=ops.state.settings.sandbox)


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
    """A request's state: IN_QUEUE (position), IN_PROGRESS or COMPLETED (error if it failed)."""
    ops = operations(ctx)
    endpoint = await ops.endpoint_of(request_id, endpoint_id, app_owner, app_id, app_variant)
    result = await ops.status(endpoint, request_id, logs=logs)
    headline = f"Request {request_id} is {result.status}"
    if result.queue_position is not None:
        headline += f", position {result.queue_position}"
    headline += f". Error: {result.error}" if result.error else "."
    return success(headline, result, sandbox=ops.state.settings.sandbox)


@guarded("get-result")
async def get_result(
    ctx: Context[Any, Any],
    request_id: RequestIdArg,
    endpoint_id: EndpointArg = None,
    app_owner: OwnerArg = None,
    app_id: AppArg = None,
    app_variant: VariantArg = None,
    wait_s: Annotated[float, Field(description="Seconds to wait", ge=0)] = 0,
    logs: LogsArg = False,
    previews: PreviewsArg = True,
    save_to: SaveToArg = None,
) -> Annotated[CallToolResult, RequestResult]:
    """A request's output, or its state while it runs (wait_s: wait for it)."""
    ops = operations(ctx)
    endpoint = await ops.endpoint_of(request_id, endpoint_id, app_owner, app_id, app_variant)
    saving = await _saving(ctx, ops, save_to)
    budget = ops.wait_budget(wait_s)
    if budget <= 0:
        return await _reply(ops, await ops.result(endpoint, request_id), previews=previews, saving=saving)
    progress = QueueProgress(ctx, heartbeat_s=ops.state.settings.heartbeat_s)
    async with progress.heartbeat():
        result = await ops.result(endpoint, request_id, budget_s=budget, logs=logs, listener=progress)
    return await _reply(ops, result, previews=previews, saving=saving)


@guarded("cancel")
async def cancel(
    ctx: Context[Any, Any],
    request_id: RequestIdArg,
    endpoint_id: EndpointArg = None,
    app_owner: OwnerArg = None,
    app_id: AppArg = None,
    app_variant: VariantArg = None,
) -> Annotated[CallToolResult, CancelResult]:
    """Cancel a queued or running request."""
    ops = operations(ctx)
    endpoint = await ops.endpoint_of(request_id, endpoint_id, app_owner, app_id, app_variant)
    result = await ops.cancel(endpoint, request_id)
    if result.status == ALREADY_COMPLETED:
        headline = f"Request {request_id} had already completed; nothing to cancel. get-result has its output."
    else:
        headline = f"Cancellation of {request_id} requested; a queued request is removed, a running one is stopped."
    return success(headline, result, sandbox=ops.state.settings.sandbox)


QUEUE_TOOLS = (
    ToolSpec(
        run_model,
        "run-model",
        "Run a fal model",
        read_only=False,
        destructive=False,
        idempotent=False,
        shown_in_view=True,
    ),
    ToolSpec(
        submit, "submit", "Queue a fal request", read_only=False, destructive=False, idempotent=False, unlisted=SEGMENTS
    ),
    ToolSpec(
        get_status,
        "get-status",
        "Status of a fal request",
        read_only=True,
        destructive=False,
        idempotent=True,
        unlisted=SEGMENTS,
    ),
    ToolSpec(
        get_result,
        "get-result",
        "Result of a fal request",
        read_only=True,
        destructive=False,
        idempotent=True,
        shown_in_view=True,
        unlisted=SEGMENTS,
    ),
    ToolSpec(
        cancel, "cancel", "Cancel a fal request", read_only=False, destructive=True, idempotent=True, unlisted=SEGMENTS
    ),
)
