"""The queue operations behind every surface: run, submit, follow, status, result, cancel.

The MCP tools (and any other surface) are thin adapters over these, so whatever must happen to a request (checks
before it is sent, records after) happens the same way however it arrived. Nothing here knows about MCP: the
caller identity comes in as a `Caller`, progress goes out through a `Listener`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from fal_mcp.client import RequestOptions
from fal_mcp.endpoint import EndpointId, check_request_id
from fal_mcp.models import COMPLETED, QueueStatus
from fal_mcp.outputs import CancelResult, RequestResult, StatusResult, SubmitResult
from fal_mcp.preflight import prepare_input
from fal_mcp.replies import AfterSubmit, ToolFailure
from fal_mcp.state import AppState, Caller
from fal_mcp.uploads import RootsSource
from fal_mcp.waiting import describe_state, fetch_output, follow


class Listener(Protocol):
    """Hears how a followed request goes (the MCP tools turn this into progress notifications)."""

    async def submitted(self, endpoint: EndpointId, request_id: str) -> None: ...

    async def status(self, status: QueueStatus) -> None: ...


def continue_hint(endpoint: EndpointId, request_id: str, status: QueueStatus, waited_s: float) -> str:
    return (
        f"Still {describe_state(status)} after {waited_s:.0f}s; the job keeps running at fal. "
        f"Call get-result with request_id='{request_id}' and endpoint_id='{endpoint}' (wait_s>0 to wait), "
        "or cancel it."
    )


@dataclass(frozen=True, slots=True)
class Operations:
    """The operations one caller may perform, against the process's shared fal client."""

    state: AppState
    caller: Caller
    client_roots: RootsSource | None = None
    """The MCP client's roots, asked for only when an input names a local file."""

    def wait_budget(self, wait_s: float | None) -> float:
        settings = self.state.settings
        if wait_s is None:
            return settings.wait_s
        if wait_s > settings.max_wait_s:
            raise ToolFailure(f"wait_s may be at most {settings.max_wait_s:g} seconds on this server")
        return wait_s

    async def run_sync(
        self, endpoint: EndpointId, payload: Mapping[str, Any], options: RequestOptions, *, validate: bool = True
    ) -> RequestResult:
        payload = await prepare_input(
            self.state, self.caller, endpoint, payload, validate=validate, client_roots=self.client_roots
        )
        ran = await self.caller.fal.run(endpoint, payload, options)
        return RequestResult(endpoint_id=str(endpoint), request_id=ran.request_id, status=COMPLETED, output=ran.output)

    async def submit(
        self,
        endpoint: EndpointId,
        payload: Mapping[str, Any],
        options: RequestOptions,
        *,
        webhook_url: str | None = None,
        validate: bool = True,
    ) -> SubmitResult:
        payload = await prepare_input(
            self.state, self.caller, endpoint, payload, validate=validate, client_roots=self.client_roots
        )
        submitted = await self.caller.fal.submit(endpoint, payload, options, webhook_url=webhook_url)
        return SubmitResult(
            endpoint_id=str(endpoint),
            request_id=submitted.request_id,
            status=submitted.status,
            queue_position=submitted.queue_position,
            status_url=submitted.status_url,
            response_url=submitted.response_url,
            cancel_url=submitted.cancel_url,
        )

    async def run_queued(
        self,
        endpoint: EndpointId,
        payload: Mapping[str, Any],
        options: RequestOptions,
        *,
        budget_s: float,
        logs: bool = False,
        listener: Listener | None = None,
        validate: bool = True,
    ) -> RequestResult:
        """Submit, then follow until done or out of budget. After the submit, no failure may lose the request id."""
        submitted = await self.submit(endpoint, payload, options, validate=validate)
        try:
            if listener is not None:
                await listener.submitted(endpoint, submitted.request_id)
            return await self.result(endpoint, submitted.request_id, budget_s=budget_s, logs=logs, listener=listener)
        except Exception as exc:
            raise AfterSubmit(submitted.request_id, str(endpoint), exc) from exc

    async def status(self, endpoint: EndpointId, request_id: str, *, logs: bool = False) -> StatusResult:
        check_request_id(request_id)
        status = await self.caller.fal.status(endpoint, request_id, logs=logs)
        return StatusResult(
            endpoint_id=str(endpoint),
            request_id=request_id,
            status=status.status,
            queue_position=status.queue_position,
            logs=status.logs,
            metrics=status.metrics or None,
            error=status.error,
            error_type=status.error_type,
        )

    async def result(
        self,
        endpoint: EndpointId,
        request_id: str,
        *,
        budget_s: float = 0,
        logs: bool = False,
        listener: Listener | None = None,
    ) -> RequestResult:
        """The output when the request is done (waiting up to `budget_s`), else its state and how to continue."""
        check_request_id(request_id)
        fal = self.caller.fal
        started = anyio.current_time()
        if budget_s > 0:
            on_status = listener.status if listener is not None else None
            status = await follow(fal, endpoint, request_id, budget_s=budget_s, logs=logs, on_status=on_status)
        else:
            status = await fal.status(endpoint, request_id, logs=logs)
        envelope = RequestResult(
            endpoint_id=str(endpoint),
            request_id=request_id,
            status=status.status,
            metrics=status.metrics or None,
            queue_position=status.queue_position,
            logs=status.logs,
        )
        if status.is_terminal:
            envelope.output = await fetch_output(fal, endpoint, request_id, status)
            envelope.status = COMPLETED
        else:
            envelope.next_step = continue_hint(endpoint, request_id, status, anyio.current_time() - started)
        return envelope

    async def cancel(self, endpoint: EndpointId, request_id: str) -> CancelResult:
        check_request_id(request_id)
        outcome = await self.caller.fal.cancel(endpoint, request_id)
        return CancelResult(endpoint_id=str(endpoint), request_id=request_id, status=outcome)
