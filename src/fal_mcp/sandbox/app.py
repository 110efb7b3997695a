"""`FakeFal`: the sandbox's state (jobs, recorded requests, faults) and its ASGI app.

One catch-all ASGI endpoint reads the body, classifies the URL (`routing`), records the request,
lets a pending fault act, and only then dispatches to the handler for the route. Handlers follow
`reference/fal-api.md`: auth before anything, 202/200 status codes, COMPLETED-with-error instead of
a failed status, result replaying the model's error, 404 for another key's jobs.

Two choices the reference leaves open: the result of a cancelled job answers 499
`{"detail": "Request was cancelled", "error_type": "client_cancelled"}` (fal's request-error table
gives `client_cancelled` the code 499), and jobs made by synchronous runs appear in `jobs` (with
`sync=True`) but are not reachable through the queue routes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount
from starlette.types import Receive, Scope, Send

from fal_mcp.sandbox.auth import (
    ADMIN_ONLY,
    LOCKED,
    LOCKED_KEY,
    NO_USER,
    SANDBOX_ADMIN_KEY,
    SANDBOX_KEY,
    Caller,
    Keyring,
)
from fal_mcp.sandbox.faults.chaos import Chaos
from fal_mcp.sandbox.faults.injected import Fault, FaultQueue
from fal_mcp.sandbox.models.catalog import Catalog, Model, default_models
from fal_mcp.sandbox.models.inputs import Json, parse_body
from fal_mcp.sandbox.platform import billing
from fal_mcp.sandbox.platform import listing as platform
from fal_mcp.sandbox.platform.listing import Answer
from fal_mcp.sandbox.queue.jobs import Job, Outcome
from fal_mcp.sandbox.queue.status_stream import status_events
from fal_mcp.sandbox.recording import RecordedRequest
from fal_mcp.sandbox.routing import Route, Target, classify
from fal_mcp.sandbox.storage.cdn import Storage
from fal_mcp.sandbox.webhooks.delivery import WebhookDelivery, Webhooks, deliver_when_done
from fal_mcp.sandbox.webhooks.signing import WebhookSigner

logger = logging.getLogger("fal_mcp.sandbox")

WAIT_POLL_S = 0.1
"""How often a synchronous run looks at its job and its client while it waits."""
PRIORITIES = ("normal", "low")
NOT_FOUND: Mapping[str, Json] = {"detail": "Not Found"}
REQUEST_NOT_FOUND: Mapping[str, Json] = {"detail": "Request not found"}
BILLING_LAG_S = 2.0
"""How long after a job completes its charge shows in the billing events (before `time_scale`)."""


class FakeFal:
    """A fal.ai stand-in: the queue, synchronous runs, the platform API, storage and a CDN, over real HTTP once served.

        `time_scale` multiplies every model duration when a job is created (0.02 makes the 18 s video
        take 0.36 s; jobs already made keep their timeline). `clock` is the monotonic time source, which
        a test may replace with one it advances by hand. `models` defaults to `default_models()` (see
        `catalog` for overriding durations). `sse_ping_s` is the real-time silence before a stream ping.

        Inspect `requests` (the latest `max_recorded` requests, in arrival order; each body cut to
        `max_recorded_body` bytes), `jobs` (request id -> `Job`, the latest `max_jobs`), `webhook_deliveries`
        (the latest `max_recorded`) and `storage.files` (what was uploaded); steer with `inject(Fault(...))`,
        `chaos = Chaos(...)` (random faults, each recorded), `clear_faults()` and `reset()`. What it keeps is
        bounded, so a sandbox left running (`fal-mcp --sandbox`) does not grow without end. Webhooks go only to
        loopback addresses, and only to `webhook_path` there when it is set, or to one of `webhook_urls` (fal-mcp's own
    public webhook, named by its operator); they are signed by `webhook_signer`, whose keys the fake serves at
    `<rest url>/.well-known/jwks.json` (see `webhooks`). Billing events
        appear `billing_lag_s` (times `time_scale`) after a job completed, less `billing_discount_percent`; only
        `admin_keys` may read them.
    """

    def __init__(
        self,
        time_scale: float = 1.0,
        keys: Iterable[str] = (SANDBOX_KEY,),
        locked_keys: Iterable[str] = (LOCKED_KEY,),
        admin_keys: Iterable[str] = (SANDBOX_ADMIN_KEY,),
        *,
        models: Iterable[Model] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sse_ping_s: float = 5.0,
        max_recorded: int = 10_000,
        max_recorded_body: int = 64 * 1024,
        max_jobs: int = 10_000,
        webhook_path: str | None = None,
        webhook_urls: Iterable[str] = (),
    ) -> None:
        self.time_scale = time_scale
        self.catalog = Catalog(default_models() if models is None else models)
        self.clock = clock
        self.sse_ping_s = sse_ping_s
        self.max_recorded = max_recorded
        self.max_recorded_body = max_recorded_body
        self.max_jobs = max_jobs
        self.webhook_path = webhook_path
        self.webhook_urls = frozenset(webhook_urls)
        self.webhook_signer = WebhookSigner()
        self.requests: list[RecordedRequest] = []
        self.jobs: dict[str, Job] = {}
        self.webhook_deliveries: list[WebhookDelivery] = []
        self.storage = Storage()
        self._keyring = Keyring(keys, locked_keys, admin_keys)
        self.billing_lag_s = BILLING_LAG_S
        self.billing_discount_percent = 0.0
        self._faults = FaultQueue()
        self.chaos: Chaos | None = None
        """While set, a random fraction of requests meets a random fault (see `chaos`)."""
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self.app = Starlette(routes=[Mount("/", app=self._asgi)], lifespan=self._lifespan)

    # -- test-facing controls ---------------------------------------------------------------------

    def inject(self, fault: Fault) -> None:
        """Queue a fault; it acts on the next matching request(s)."""
        self._faults.add(fault)

    def clear_faults(self) -> None:
        """Drop every pending fault, and end chaos."""
        self._faults.clear()
        self.chaos = None

    def requests_for(self, route: str) -> list[RecordedRequest]:
        """Recorded requests on one route, in arrival order."""
        with self._lock:
            return [recorded for recorded in self.requests if recorded.route == route]

    def reset(self) -> None:
        """Forget requests, jobs, webhook deliveries and faults; billing back to its defaults, signing back to the
        first key alone."""
        self.webhook_signer.reset()
        self.billing_lag_s = BILLING_LAG_S
        self.billing_discount_percent = 0.0
        with self._lock:
            self.requests.clear()
            self.jobs.clear()
            self.webhook_deliveries.clear()
        self.storage.reset()
        self.clear_faults()

    def interrupt_waits(self) -> None:
        """End open status streams and synchronous waits, so the server can stop promptly."""
        self._closing = True

    # -- ASGI -------------------------------------------------------------------------------------

    @asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncGenerator[None]:
        self._closing = False
        try:
            yield
        finally:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await self._respond(request)
        await response(scope, receive, send)

    async def _respond(self, request: Request) -> Response:
        body = await request.body()
        target = classify(request.method, request.url.path)
        recorded = self._record(target, request, body)
        fault = self._faults.take(target.route, target.endpoint_id)
        chaos = self.chaos
        if fault is None and chaos is not None:
            fault = chaos.draw(recorded)
        if fault is None:
            return await self._handle(target, request, body)
        if fault.delay_s > 0:
            await asyncio.sleep(fault.delay_s)
        instead = fault.instead()
        if instead is not None:
            return instead
        return fault.applied_to(await self._handle(target, request, body))

    def _record(self, target: Target, request: Request, body: bytes) -> RecordedRequest:
        recorded = RecordedRequest(
            route=target.route,
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params.items()),
            headers={name.lower(): value for name, value in request.headers.items()},
            body=body[: self.max_recorded_body],
            endpoint_id=target.endpoint_id,
            request_id=target.request_id,
            size=len(body),
        )
        with self._lock:
            self.requests.append(recorded)
            _keep_latest(self.requests, self.max_recorded)
        return recorded

    async def _handle(self, target: Target, request: Request, body: bytes) -> Response:
        origin = f"{request.url.scheme}://{request.url.netloc}"
        authorization = request.headers.get("authorization")
        if target.route == "cdn":
            return self._cdn(target.file_name or "")
        if target.route == "cdn-upload":
            file_name = request.headers.get("x-fal-file-name")
            content_type = request.headers.get("content-type")
            return _answer(self.storage.cdn_upload(authorization, content_type, file_name, body, origin))
        if target.route == "signed-upload":
            content_type = request.headers.get("content-type")
            return _answer(self.storage.signed_put(target.file_name or "", authorization, content_type, body))
        if target.route == "other":
            return _json(404, NOT_FOUND, str(uuid.uuid4()))
        if target.route == "jwks":  # public, as fal's keys are
            return _json(200, self.webhook_signer.jwks(), str(uuid.uuid4()))
        if target.route == "models" and authorization is None:
            return self._platform(target.route, request)  # listing models works without a key
        caller = self._keyring.identify(authorization)
        if caller is None:
            return _json(401, NO_USER, target.request_id or str(uuid.uuid4()))
        if target.route in ("models", "pricing"):
            return self._platform(target.route, request)
        if target.route == "pricing-estimate":
            parsed = parse_body(body)
            if isinstance(parsed, list):
                return _json(422, {"detail": list[Json](parsed)}, str(uuid.uuid4()))
            return _answer(billing.estimate(self.catalog, parsed))
        if target.route == "billing-events":
            return self._billing_events(caller, request)
        if target.route == "cdn-token":
            return _answer(self.storage.token(origin))
        if target.route == "upload-initiate":
            parsed = parse_body(body)
            if isinstance(parsed, list):
                return _json(422, {"detail": list[Json](parsed)}, str(uuid.uuid4()))
            return _answer(self.storage.initiate(parsed, origin))
        if target.route in ("run", "submit"):
            return await self._start(target.route, target.endpoint_id or "", caller, request, body)
        return self._follow(target.route, target, caller, request)

    def _platform(self, route: Route, request: Request) -> Response:
        """The platform API: the model listing (which works without a key) and pricing."""
        params = request.query_params
        if route == "pricing":
            return _answer(platform.pricing(self.catalog, params.getlist("endpoint_id")))
        return _answer(
            platform.models(
                self.catalog,
                endpoint_ids=params.getlist("endpoint_id"),
                query=params.get("q"),
                category=params.get("category"),
                status=params.get("status"),
                limit=params.get("limit"),
                cursor=params.get("cursor"),
                expand=params.getlist("expand"),
            )
        )

    def _billing_events(self, caller: Caller, request: Request) -> Response:
        if not caller.admin:
            return _json(403, ADMIN_ONLY, str(uuid.uuid4()))
        with self._lock:
            jobs = list(self.jobs.values())
        terms = billing.Billing(self.billing_lag_s * self.time_scale, self.billing_discount_percent)
        return _answer(billing.billing_events(jobs, request.query_params, self.clock(), terms))

    # -- run and submit ---------------------------------------------------------------------------

    async def _start(self, route: Route, endpoint_id: str, caller: Caller, request: Request, body: bytes) -> Response:
        request_id = str(uuid.uuid4())
        if caller.locked:
            return _json(403, LOCKED, request_id)
        model = self.catalog.find(endpoint_id)
        if model is None:
            return _json(404, {"detail": f"Endpoint '{endpoint_id}' not found"}, request_id)
        start_timeout = request.headers.get("x-fal-request-timeout")
        deadline = _parse_timeout(start_timeout)
        if start_timeout is not None and deadline is None:
            return _bad_request(f"Invalid X-Fal-Request-Timeout header: {start_timeout!r}", request_id)
        priority = request.headers.get("x-fal-queue-priority", "normal")
        if route == "submit" and priority not in PRIORITIES:
            return _bad_request(f"Invalid X-Fal-Queue-Priority {priority!r}: expected 'normal' or 'low'", request_id)
        parsed = parse_body(body)
        if isinstance(parsed, list):
            return _json(422, {"detail": list[Json](parsed)}, request_id)
        job = Job(
            request_id=request_id,
            endpoint_id=endpoint_id,
            model=model,
            input=parsed,
            owner_key=caller.key,
            origin=f"{request.url.scheme}://{request.url.netloc}",
            clock=self.clock,
            time_scale=self.time_scale,
            start_timeout=deadline,
            sync=route == "run",
            runner_hint=request.headers.get("x-fal-runner-hint"),
            priority=priority,
            webhook_url=request.query_params.get("fal_webhook") if route == "submit" else None,
        )
        if job.sync and job.problems:
            return _json(422, {"detail": list[Json](job.problems)}, request_id)
        with self._lock:
            self.jobs[request_id] = job
            while len(self.jobs) > self.max_jobs:  # the oldest goes first, as fal expires old requests
                del self.jobs[next(iter(self.jobs))]
        self._spawn(asyncio.to_thread(job.prepare))  # the output exists before the job reports completion
        if job.sync:
            return await self._run(job, request)
        if job.webhook_url:
            webhooks = Webhooks(
                self.webhook_signer,
                self._record_delivery,
                self.webhook_path,
                self.webhook_urls,
                time_scale=lambda: self.time_scale,
            )
            self._spawn(deliver_when_done(job, job.webhook_url, self.clock, webhooks))
        return _json(200, job.submit_body(), request_id)

    async def _run(self, job: Job, request: Request) -> Response:
        """Hold the synchronous caller until the job ends; a caller that hangs up stops the job."""
        while (now := self.clock()) < job.end:
            if self._closing:
                return _json(503, {"detail": "Sandbox is shutting down"}, job.request_id)
            if await request.is_disconnected():
                job.abandon()
                break
            await asyncio.sleep(min(job.end - now, WAIT_POLL_S))
        outcome = job.outcome()
        assert outcome is not None
        return _outcome_response(outcome, job.request_id)

    def _spawn(self, work: Coroutine[None, None, None]) -> None:
        """Run `work` off the request path; the app's shutdown cancels whatever is left."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _record_delivery(self, delivery: WebhookDelivery) -> None:
        with self._lock:
            self.webhook_deliveries.append(delivery)
            _keep_latest(self.webhook_deliveries, self.max_recorded)

    # -- status, stream, result, cancel -----------------------------------------------------------

    def _follow(self, route: Route, target: Target, caller: Caller, request: Request) -> Response:
        rid = target.request_id or ""
        job = self._find(rid, target.endpoint_id or "", caller)
        if job is None:
            missing = {"status": "NOT_FOUND"} if route == "cancel" else REQUEST_NOT_FOUND
            return _json(404, missing, rid)
        with_logs = request.query_params.get("logs", "").lower() in ("1", "true")
        if route == "status":
            now = self.clock()
            status_code = 200 if job.phase(now) == "COMPLETED" else 202
            return _json(status_code, job.status_body(now, with_logs), rid)
        if route == "stream":
            events = status_events(job, with_logs, self.clock, lambda: self._closing, self.sse_ping_s)
            headers = {"x-fal-request-id": rid, "cache-control": "no-cache"}
            return StreamingResponse(events, media_type="text/event-stream", headers=headers)
        if route == "cancel":
            if job.request_cancel():
                return _json(202, {"status": "CANCELLATION_REQUESTED"}, rid)
            return _json(400, {"status": "ALREADY_COMPLETED"}, rid)
        outcome = job.outcome()
        if outcome is None:
            return _json(400, {"detail": "Request is still in progress"}, rid)
        return _outcome_response(outcome, rid)

    def _find(self, request_id: str, base_id: str, caller: Caller) -> Job | None:
        """The caller's queued job under that base app id; anything else is indistinguishable from absent."""
        with self._lock:
            job = self.jobs.get(request_id)
        if job is None or job.sync or job.base_id != base_id or job.owner_key != caller.key:
            return None
        return job

    # -- CDN --------------------------------------------------------------------------------------

    def _cdn(self, name: str) -> Response:
        """Public media: uploads, `<request_id>-<n>.png` or `<request_id>.mp4` (rendered when the job completed)."""
        uploaded = self.storage.files.get(name)
        if uploaded is not None:
            return Response(uploaded.data, media_type=uploaded.content_type)
        with self._lock:
            job = self.jobs.get(name[:36])
        outcome = None if job is None else job.outcome()
        media = None if outcome is None else outcome.files.get(name)
        if media is None:
            return JSONResponse(dict(NOT_FOUND), status_code=404)
        return Response(media.data, media_type=media.content_type)


def _keep_latest(items: list[Any], limit: int) -> None:
    """Drop the oldest entries beyond `limit` (in batches, so a full list does not shift on every append)."""
    if len(items) > limit + max(1, limit // 10):
        del items[: len(items) - limit]


def _json(status_code: int, body: Mapping[str, Json], request_id: str) -> Response:
    return JSONResponse(dict(body), status_code=status_code, headers={"x-fal-request-id": request_id})


def _answer(answer: Answer) -> Response:
    return _json(answer.status_code, answer.body, str(uuid.uuid4()))


def _bad_request(detail: str, request_id: str) -> Response:
    response = _json(400, {"detail": detail, "error_type": "bad_request"}, request_id)
    response.headers["X-Fal-Error-Type"] = "bad_request"
    return response


def _outcome_response(outcome: Outcome, request_id: str) -> Response:
    headers = {**outcome.headers, "x-fal-request-id": request_id}
    return JSONResponse(outcome.body, status_code=outcome.status_code, headers=headers)


def _parse_timeout(value: str | None) -> float | None:
    """`X-Fal-Request-Timeout` as positive finite seconds, or None when absent or unusable."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None
