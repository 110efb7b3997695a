"""`list-requests` and the `fal://requests/{request_id}` resource: finding yesterday's job after a restart.

Both read only this server's request history, and only the caller's own partition of it. With `FAL_ADMIN_KEY`,
`list-requests` first asks fal what the listed requests that finished really cost (each at most once per couple of
minutes, `fal_mcp.jobs.cost.charges`); each line shows a request's cost, fal's charge or the estimate made before
sending it (marked `~`, "estimated"), and the headline the total of the rows listed.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.types import CallToolResult
from pydantic import Field

from fal_mcp.jobs.cost.estimates import usd
from fal_mcp.jobs.results import ToolOutput
from fal_mcp.server.replies import counted, success
from fal_mcp.server.tools.guard import guarded
from fal_mcp.server.tools.queue import operations
from fal_mcp.server.tools.spec import ToolSpec
from fal_mcp.store.records import ACTIVE_STATES, RequestRecord

StateFilter = Literal["active", "IN_QUEUE", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED", "UNKNOWN"]


class RequestList(ToolOutput):
    """Requests from the history, newest first."""

    requests: list[RequestRecord]
    history: str = Field(description="'off' when this server keeps no history, 'unavailable' when it could not open it")


def _cost(record: RequestRecord) -> str:
    if record.actual_cost_usd is not None:
        return f" - {usd(record.actual_cost_usd)}"
    if record.estimated_cost_usd is not None:
        return f" - ~{usd(record.estimated_cost_usd)} (estimated)"
    return ""


def _line(record: RequestRecord) -> str:
    error = f" - {record.error}" if record.error else ""
    media = f" - {len(record.media_urls)} media" if record.media_urls else ""
    head = f"{record.submitted_at} {record.state} {record.endpoint_id} {record.request_id or '(no id)'}"
    return f"{head}{_cost(record)}{media}{error}"


def _total(records: list[RequestRecord], charges_known: bool) -> str:
    """The cost of the rows listed: charges where known, estimates elsewhere (and how much of it is estimated)."""
    costs = [record.cost_usd for record in records if record.cost_usd is not None]
    if not costs:
        return ""
    estimated = sum(r.estimated_cost_usd or 0.0 for r in records if r.actual_cost_usd is None)
    total = f"; total {usd(sum(costs))}"
    if estimated and estimated < sum(costs):
        total += f", of which {usd(estimated)} estimated"
    elif estimated:
        total += " (estimated" + ("" if charges_known else ": FAL_ADMIN_KEY would show fal's charges") + ")"
    return total


@guarded("list-requests")
async def list_requests(
    ctx: Context[Any, Any],
    state: Annotated[StateFilter | None, Field(description="Only this state (active: unfinished)")] = None,
    endpoint_id: Annotated[str | None, Field(description="Endpoint id prefix")] = None,
    limit: Annotated[int, Field(description="At most this many", ge=1, le=100)] = 20,
) -> Annotated[CallToolResult, RequestList]:
    """Requests this server sent to fal, newest first, also from before a restart."""
    ops = operations(ctx)
    states: tuple[str, ...] = ACTIVE_STATES if state == "active" else ((state,) if state else ())
    records = await ops.recent(states=states, endpoint_prefix=endpoint_id, limit=limit)
    if records and ops.state.charges.enabled and await ops.charge(records):
        records = await ops.recent(states=states, endpoint_prefix=endpoint_id, limit=limit)
    history = ops.state.history
    problem = history.problem
    result = RequestList(requests=records, history="on" if history.enabled else ("unavailable" if problem else "off"))
    if problem is not None:
        headline = (
            f"The request history is unavailable: {problem}. Requests still go to fal, but none is recorded; "
            "make that folder writable or set FAL_MCP_STATE_DIR to one that is."
        )
    elif not history.enabled:
        headline = "The request history is off on this server (FAL_MCP_STATE_DIR=off)."
    elif not records:
        headline = "No matching requests in the history."
    else:
        total = _total(records, ops.state.charges.enabled)
        headline = f"{counted(len(records), 'request')}, newest first{total}:\n" + "\n".join(_line(r) for r in records)
    return success(headline, result, sandbox=ops.state.settings.sandbox)


async def request_resource(request_id: str, ctx: Context[Any, Any]) -> str:
    """`fal://requests/{request_id}`: one request from the history, as JSON: endpoint, state, error, media URLs,
    input summary (registered by `server.build`)."""
    ops = operations(ctx)
    try:
        record = await ops.record(request_id)
    except ValueError as exc:
        raise ResourceError(str(exc)) from exc
    if record is None:
        raise ResourceError(f"request {request_id!r} is not in this server's request history")
    return json.dumps(record.model_dump(mode="json"), ensure_ascii=False)


HISTORY_TOOLS = (
    ToolSpec(
        list_requests,
        "list-requests",
        "List past fal requests",
        read_only=True,
        destructive=False,
        idempotent=True,
        open_world=False,
        shown_in_view=True,
    ),
)
