"""The queue operations behind every surface: run, submit, follow, status, result, cancel.

The MCP tools (and any other surface) are thin adapters over these, so whatever must happen to a request (checks
before it is sent, the history record after) happens the same way however it arrived. Nothing here knows about
MCP: the caller identity comes in as a `Caller`, progress goes out through a `Listener`.

Three promises live here:
- **Nothing is lost.** Every request is in the history before it is sent and keeps its last known state; after
  a submit, any failure carries the request id (`AfterSubmit`).
- **Nothing bills after a cancel.** When the caller abandons a run that is waiting on the request it started (the
  MCP client cancelled it, or hung up), fal gets the cancel for that request before the call ends, shielded from
  the cancellation itself and bounded in time. Only the run that started a job owns its fate: an abandoned wait
  on a result (`get-result` is read-only) just stops waiting, and the job goes on at fal.
- **A wait budget degrades instead of failing**: when it runs out, the request's handle and state come back.
"""

from __future__ import annotations

import calendar
import logging
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from fal_mcp.calls import calls
from fal_mcp.fal.client import CANCELLATION_REQUESTED, RequestOptions
from fal_mcp.fal.endpoint import EndpointId, InvalidIdError, check_request_id, resolve_endpoint
from fal_mcp.fal.errors import FalAPIError, FalError, FalNotFoundError, FalRequestFailed, answer_lost
from fal_mcp.fal.queue_status import COMPLETED, QueueStatus
from fal_mcp.jobs import deliveries
from fal_mcp.jobs.cost import estimates
from fal_mcp.jobs.cost.estimates import Estimate
from fal_mcp.jobs.cost.limits import UNLIMITED, Spend
from fal_mcp.jobs.failures import AfterSubmit, NotYours, ToolFailure
from fal_mcp.jobs.preflight import check_input
from fal_mcp.jobs.results import CancelResult, RequestResult, RunResult, StatusResult, SubmitResult
from fal_mcp.jobs.state import AppState, Caller
from fal_mcp.jobs.uploads import RootsSource, Uploader
from fal_mcp.jobs.waiting import describe_state, fetch_output, history_state
from fal_mcp.store.database import StoreUnavailable
from fal_mcp.store.history import SpendLimit
from fal_mcp.store.records import CANCELLED, FAILED, FINISHED_STATES, UNKNOWN, RequestRecord, media_urls

logger = logging.getLogger(__name__)

CANCEL_ON_ABORT_S = 5.0
"""How long an abandoned call may spend telling fal to cancel, after its caller is gone."""


class Listener(Protocol):
    """Hears how a followed request goes (the MCP tools turn this into progress notifications)."""

    async def submitted(self, endpoint: EndpointId, request_id: str) -> None: ...

    async def status(self, status: QueueStatus) -> None: ...

    async def awaiting_webhook(self) -> None:
        """The call waits for fal to push the outcome (a webhook): fal is not asked, so no state is known."""


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

    async def endpoint_of(
        self,
        request_id: str,
        endpoint_id: str | None,
        app_owner: str | None = None,
        app_id: str | None = None,
        app_variant: str | None = None,
    ) -> EndpointId:
        """The endpoint as given, or, when none is, the one this request was sent to (from the history)."""
        if any((endpoint_id, app_owner, app_id, app_variant)):
            return resolve_endpoint(endpoint_id, app_owner, app_id, app_variant)
        check_request_id(request_id)
        record = await self.state.history.get(self.caller.partition, request_id)
        if record is None:
            raise InvalidIdError(
                f"name the model with endpoint_id (request {request_id!r} is not in this server's request history)"
            )
        return EndpointId.parse(record.endpoint_id)

    async def _check_owned(self, request_id: str) -> None:
        """A confined caller (see `Caller.confined`) may address only requests it sent through this server."""
        if not self.caller.confined:
            return
        history = self.state.history
        if not history.enabled:
            raise NotYours(
                f"this server keeps no request history, so it cannot tell whether request {request_id!r} is yours "
                "(callers sharing its key are kept apart by it): ask the operator to set FAL_MCP_STATE_DIR"
            )
        if await history.get(self.caller.partition, request_id) is None:
            raise NotYours(
                f"no request {request_id!r} of yours is in this server's request history: follow or cancel only "
                "requests you sent through this server (list-requests shows them)"
            )

    # -- sending ------------------------------------------------------------------------------------

    async def estimate(self, endpoint: EndpointId, payload: Mapping[str, Any]) -> Estimate:
        """What a call of `endpoint` with `payload` would cost (cached price x the quantity the input implies)."""
        return await estimates.estimate(self.state.catalog, self.caller.fal, self.caller.partition, endpoint, payload)

    async def vet(self, endpoint: EndpointId, payload: Mapping[str, Any], *, validate: bool, spend: Spend) -> Estimate:
        """Refuse what a run or submit may not send, before any work is done for it: the guards, the input's schema,
        the cost limits and the budget as it stands. Returns the call's estimate."""
        state = self.state
        state.guards.check(endpoint, payload)  # refuse what can be refused before any request
        if validate and state.settings.validate_inputs:
            await check_input(state, self.caller, endpoint, payload)
        estimate = await self.estimate(endpoint, payload)
        state.limits.check(estimate, max_cost_usd=spend.max_cost_usd, confirmed=spend.confirmed)
        await state.budget.check(self.caller.partition, estimate)  # again, atomically, when the request is recorded
        return estimate

    async def _admit(
        self, endpoint: EndpointId, payload: Mapping[str, Any], *, validate: bool, spend: Spend
    ) -> tuple[Mapping[str, Any], Estimate]:
        """`vet`, then local files uploaded: the input as it will be sent, and its estimate."""
        estimate = await self.vet(endpoint, payload, validate=validate, spend=spend)
        return await Uploader(self.state, self.caller, self.client_roots).replace_file_uris(payload), estimate

    async def run_sync(
        self,
        endpoint: EndpointId,
        payload: Mapping[str, Any],
        options: RequestOptions,
        *,
        validate: bool = True,
        spend: Spend = UNLIMITED,
    ) -> RunResult:
        payload, estimate = await self._admit(endpoint, payload, validate=validate, spend=spend)
        history, partition = self.state.history, self.caller.partition
        async with self.state.guards.starting(partition, self.caller.fal, endpoint, payload):
            row = await self._record(endpoint, payload, "run-model (sync)", estimate)
            try:
                ran = await self.caller.fal.run(endpoint, payload, options)
            except BaseException as exc:
                await self._sent_but_failed(row, exc, ran_synchronously=True)
                raise
        await history.sent(row, ran.request_id, COMPLETED, media_urls=media_urls(ran.output))
        return RunResult(
            endpoint_id=str(endpoint),
            request_id=ran.request_id,
            status=COMPLETED,
            output=ran.output,
            estimated_cost_usd=estimate.usd,
            estimate_basis=estimate.basis,
        )

    async def submit(
        self,
        endpoint: EndpointId,
        payload: Mapping[str, Any],
        options: RequestOptions,
        *,
        webhook_url: str | None = None,
        origin: str = "submit",
        validate: bool = True,
        spend: Spend = UNLIMITED,
    ) -> SubmitResult:
        payload, estimate = await self._admit(endpoint, payload, validate=validate, spend=spend)
        history, partition = self.state.history, self.caller.partition
        ours = deliveries.webhook_url(self.state.settings) if webhook_url is None else None  # fal takes one
        async with self.state.guards.starting(partition, self.caller.fal, endpoint, payload) as start:
            row = await self._record(endpoint, payload, origin, estimate)
            try:
                submitted = await self.caller.fal.submit(endpoint, payload, options, webhook_url=webhook_url or ours)
            except BaseException as exc:
                await self._sent_but_failed(row, exc, ran_synchronously=False)
                raise
            start.queued(endpoint, submitted.request_id)
        await history.sent(row, submitted.request_id, submitted.status)
        if ours is not None:  # after the history row has its id: the delivery may already be on its way
            await self._expect_webhook(endpoint, submitted.request_id)
        return SubmitResult(
            endpoint_id=str(endpoint),
            request_id=submitted.request_id,
            status=submitted.status,
            queue_position=submitted.queue_position,
            status_url=submitted.status_url,
            response_url=submitted.response_url,
            cancel_url=submitted.cancel_url,
            estimated_cost_usd=estimate.usd,
            estimate_basis=estimate.basis,
        )

    async def _expect_webhook(self, endpoint: EndpointId, request_id: str) -> None:
        """Note that fal will push this request's outcome here, so any replica can take it and a wait can use it."""
        try:
            await self.state.store.deliveries.expect(request_id, self.caller.partition, str(endpoint))
        except StoreUnavailable as exc:  # the webhook will find no note (404): the call follows the job at fal
            logger.warning("request %s: cannot note that fal will push its outcome (%s)", request_id, exc)

    async def _record(
        self, endpoint: EndpointId, payload: Mapping[str, Any], origin: str, estimate: Estimate
    ) -> int | None:
        """The history row of a request about to be sent, with its estimate, written only if it fits the budget."""

        async def begin(limit: SpendLimit | None) -> int | None:
            return await self.state.history.begin(
                self.caller.partition,
                str(endpoint),
                payload,
                origin,
                estimated_cost_usd=estimate.usd,
                spend_limit=limit,
            )

        return await self.state.budget.record(self.caller.partition, estimate, begin)

    async def _sent_but_failed(self, row: int | None, exc: BaseException, *, ran_synchronously: bool) -> None:
        """What the history keeps of a request whose sending failed: a trace whenever fal may hold or have run it.

        A refusal (4xx, or the ingress's 5xx) or a connection that never opened leaves nothing at fal, so nothing is
        kept. A lost or unreadable answer (or a caller who left mid-send) may hide a queued, billing job: it stays as
        UNKNOWN. A synchronous run that a fal app answered with a 5xx did run, and failed.
        """
        history = self.state.history
        with anyio.CancelScope(shield=True):
            if ran_synchronously and isinstance(exc, FalAPIError) and exc.ran:
                await history.sent(row, exc.request_id, FAILED, error=exc.detail, error_type=exc.error_type)
            elif ran_synchronously and isinstance(exc, anyio.get_cancelled_exc_class()):
                await history.sent(row, None, CANCELLED, error="cancelled by the caller while running")
            elif not isinstance(exc, Exception) or answer_lost(exc):
                await history.sent(row, None, UNKNOWN, error=f"fal's answer was lost: {exc}")
            else:
                await history.discard(row)

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
        spend: Spend = UNLIMITED,
    ) -> RunResult:
        """Submit, then follow until done or out of budget. After the submit, no failure may lose the request id."""
        submitted = await self.submit(endpoint, payload, options, origin="run-model", validate=validate, spend=spend)
        try:
            settled = await self._settle(endpoint, submitted.request_id, budget_s, logs, listener, started_here=True)
        except Exception as exc:
            raise AfterSubmit(submitted.request_id, str(endpoint), exc) from exc
        return RunResult(
            **dict(settled), estimated_cost_usd=submitted.estimated_cost_usd, estimate_basis=submitted.estimate_basis
        )

    # -- following ----------------------------------------------------------------------------------

    async def status(self, endpoint: EndpointId, request_id: str, *, logs: bool = False) -> StatusResult:
        check_request_id(request_id)
        self.state.guards.check_endpoint(endpoint)
        await self._check_owned(request_id)
        status = await self._asked(self.caller.fal.status(endpoint, request_id, logs=logs), request_id)
        await self.remember(request_id, status)
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
        self.state.guards.check_endpoint(endpoint)
        await self._check_owned(request_id)
        return await self._settle(endpoint, request_id, budget_s, logs, listener)

    async def _settle(
        self,
        endpoint: EndpointId,
        request_id: str,
        budget_s: float,
        logs: bool,
        listener: Listener | None,
        *,
        started_here: bool = False,
    ) -> RequestResult:
        """Follow the request up to `budget_s`, then answer its output or its state.

        `started_here`: this call submitted the request, so it announces it and, when abandoned, cancels it at fal.
        A call that only looks at a request (get-result) never changes it: abandoned, it just stops waiting.
        """
        fal = self.caller.fal
        started = anyio.current_time()
        recorder = _Recorder(self, request_id, listener)
        awaited = (  # submitted with our webhook: fal pushes its outcome, whichever replica receives it
            await deliveries.awaited_by(self.state, self.caller.partition, request_id)
            if self.state.settings.public_url
            else None
        )
        got = await deliveries.delivered(self.state, request_id) if awaited is not None else None
        async with self.state.followers.joined(
            fal, self.caller.partition, endpoint, request_id, logs=logs, on_change=recorder.remembered
        ) as shared:
            status: QueueStatus | None = None
            if got is None and budget_s > 0:

                def following(left_s: float) -> Awaitable[QueueStatus]:
                    return self._asked(shared.wait(fal, budget_s=left_s, on_status=recorder.told), request_id)

                try:
                    if started_here and listener is not None:
                        await listener.submitted(endpoint, request_id)
                    with calls.interruptible_wait():  # ends early when the server shuts down: answer with the handle
                        if awaited is None:
                            status = await following(budget_s)
                        else:
                            if listener is not None:
                                await listener.awaiting_webhook()
                            outcome = await deliveries.pushed_or_followed(self.state, awaited, budget_s, following)
                            got, status = (outcome, None) if isinstance(outcome, deliveries.Pushed) else (None, outcome)
                except anyio.get_cancelled_exc_class():
                    if started_here:
                        await self._abandon(endpoint, request_id)
                    raise
            if got is not None:
                await recorder.heard(got.status)
                return await self._pushed_result(endpoint, request_id, got)
            if status is None:
                status = await self._asked(fal.status(endpoint, request_id, logs=logs), request_id)
                await recorder.heard(status)
            envelope = RequestResult(
                endpoint_id=str(endpoint),
                request_id=request_id,
                status=status.status,
                metrics=status.metrics or None,
                queue_position=status.queue_position,
                logs=status.logs,
            )
            if not status.is_terminal:
                envelope.next_step = continue_hint(endpoint, request_id, status, anyio.current_time() - started)
                return envelope
            ended = status

            async def settle() -> Any:
                """The output, fetched once for the waits here together, and its history write, once too."""
                try:
                    output = await fetch_output(fal, endpoint, request_id, ended)
                except FalRequestFailed as failed:
                    await self.remember(request_id, ended, error=failed.error, error_type=failed.error_type)
                    raise
                # The reply need not wait for the disk: the request's row (with its id) was written at submit.
                self.state.history.observe_soon(self.caller.partition, request_id, COMPLETED, output=output)
                return output

            envelope.output = await shared.settled(settle)
            envelope.status = COMPLETED
            return envelope

    async def _pushed_result(self, endpoint: EndpointId, request_id: str, got: deliveries.Pushed) -> RequestResult:
        """The answer fal's webhook gave: its output (fetched from fal only when fal could not push it), or its
        failure, as the streaming path would have answered."""
        if got.failure is not None:
            await self.remember(request_id, got.status)
            raise got.failure
        output = got.output if got.has_output else await fetch_output(self.caller.fal, endpoint, request_id, got.status)
        self.state.history.observe_soon(self.caller.partition, request_id, COMPLETED, output=output)
        return RequestResult(endpoint_id=str(endpoint), request_id=request_id, status=COMPLETED, output=output)

    async def _asked(self, asking: Awaitable[QueueStatus], request_id: str) -> QueueStatus:
        """A status from fal; one that says the job ended (or that fal does not know it) is told to the guards, so
        a finished job stops counting against the running-jobs limit without the guards asking fal again. The answer
        does not wait for that write (`Guards.ended_soon`): the output's GET comes next."""
        try:
            status = await asking
        except FalNotFoundError:
            self.state.guards.ended_soon(self.caller.partition, request_id)
            raise
        if status.is_terminal:
            self.state.guards.ended_soon(self.caller.partition, request_id)
        return status

    async def _abandon(self, endpoint: EndpointId, request_id: str) -> None:
        """The caller gave up on the run that started this request: stop it at fal, so nothing bills after a cancel."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_ON_ABORT_S):
            try:
                outcome = await self.caller.fal.cancel(endpoint, request_id)
            except FalError as exc:
                logger.warning("could not cancel abandoned request %s at fal: %s", request_id, exc)
                return
            logger.info("caller went away; cancelled %s at fal (%s)", request_id, outcome)
            if outcome == CANCELLATION_REQUESTED:
                await self.state.history.observe(self.caller.partition, request_id, CANCELLATION_REQUESTED)

    async def remember(
        self, request_id: str, status: QueueStatus, *, error: str | None = None, error_type: str | None = None
    ) -> None:
        await self.state.history.observe(
            self.caller.partition,
            request_id,
            history_state(status),
            error=error or status.error,
            error_type=error_type or status.error_type,
        )

    # -- cancelling and remembering ------------------------------------------------------------------

    async def cancel(self, endpoint: EndpointId, request_id: str) -> CancelResult:
        check_request_id(request_id)
        self.state.guards.check_endpoint(endpoint)
        await self._check_owned(request_id)
        outcome = await self.caller.fal.cancel(endpoint, request_id)
        await self.state.guards.ended(self.caller.partition, request_id)
        if outcome == CANCELLATION_REQUESTED:
            await self.state.history.observe(self.caller.partition, request_id, CANCELLATION_REQUESTED)
        return CancelResult(endpoint_id=str(endpoint), request_id=request_id, status=outcome)

    async def recent(
        self, *, states: tuple[str, ...] = (), endpoint_prefix: str | None = None, limit: int = 20
    ) -> list[RequestRecord]:
        return await self.state.history.recent(
            self.caller.partition, states=states, endpoint_prefix=endpoint_prefix, limit=limit
        )

    async def charge(self, records: list[RequestRecord]) -> bool:
        """Ask fal what the finished ones of these records cost, where not known yet (with the admin key). True when
        any was asked about (the records may then be stale)."""
        due = [r for r in records if r.request_id and r.actual_cost_usd is None and r.state in FINISHED_STATES]
        if not due:
            return False
        since = min(calendar.timegm(time.strptime(r.submitted_at, "%Y-%m-%dT%H:%M:%SZ")) for r in due)
        await self.state.charges.refresh(self.caller.partition, since)
        return True

    async def record(self, request_id: str) -> RequestRecord | None:
        check_request_id(request_id)
        return await self.state.history.get(self.caller.partition, request_id)


class _Recorder:
    """Forwards each status to the listener (`told`) and keeps the history's state in step with it (`remembered`)."""

    def __init__(self, ops: Operations, request_id: str, listener: Listener | None) -> None:
        self._ops = ops
        self._request_id = request_id
        self._listener = listener
        self._recorded: str | None = None

    async def heard(self, status: QueueStatus) -> None:
        await self.remembered(status)
        await self.told(status)

    async def remembered(self, status: QueueStatus) -> None:
        if status.status != self._recorded and not status.is_terminal:
            await self._ops.remember(self._request_id, status)
        self._recorded = status.status

    async def told(self, status: QueueStatus) -> None:
        if self._listener is not None:
            await self._listener.status(status)
