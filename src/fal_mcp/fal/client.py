"""fal's run and queue APIs over one shared httpx client. Knows nothing about MCP.

One `httpx.AsyncClient` lives for the whole process (made on first use, closed when the server stops). The key is
not baked into it: each request carries the `Authorization` header of the `FalClient` view that sent it, so
views made with `with_key()` share the pools while each pays with its own key. Every URL comes from `FalUrls`,
built from the configured fal bases, so a credential can only ever travel to fal. Redirects are not followed
(a redirect would carry the key to wherever it points). How requests travel (lanes, proxies, the CA bundle, stream
slots) is `fal_mcp.fal.network`'s.

Requests to fal go straight to the client's transport (`Network`), past the client's cookie jar, auth and redirect
steps: fal's APIs use none of them, a jar shared by every key's view would carry one caller's cookie on another's
requests, and those steps cost about 0.2 ms of CPU per request, most of a tool call's own overhead
(`bench/overhead.py`). The client itself still serves what carries no fal key (`public_http`).

Every request that is not a wait is bounded in total, retries included, by `FAL_MCP_CALL_DEADLINE_S` (45 s by
default, under the ~60 s after which clients give up on a call); the error then says so. Not bounded by it: status
streams (a wait the caller asked for, bounded by its budget) and synchronous runs (`FAL_MCP_RUN_TIMEOUT_S`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from fal_mcp import __version__
from fal_mcp.fal.endpoint import EndpointId, FalUrls
from fal_mcp.fal.errors import (
    FalAPIError,
    FalError,
    FalProtocolError,
    FalTransportError,
    MissingKeyError,
    decode_response_error,
    json_field,
)
from fal_mcp.fal.eventstream import sse_data
from fal_mcp.fal.network import LANE, Lane, Network, StreamSlots
from fal_mcp.fal.queue_status import QueueStatus, RunResponse, SubmitResponse
from fal_mcp.fal.retry import RetryPolicy
from fal_mcp.logs import redactor
from fal_mcp.settings import Settings

logger = logging.getLogger(__name__)

USER_AGENT = f"fal-mcp/{__version__}"
CANCELLATION_REQUESTED = "CANCELLATION_REQUESTED"
ALREADY_COMPLETED = "ALREADY_COMPLETED"


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Explicit limits: an unanswered socket never hangs a tool call forever."""

    connect_s: float = 10.0
    request_s: float = 30.0
    run_s: float = 600.0
    call_s: float = 45.0
    """The whole of one request that is not a wait, retries included."""
    stream_idle_s: float = 20.0
    """Silence after which a status stream counts as broken (fal pings well within it)."""

    def queue(self) -> httpx.Timeout:
        return httpx.Timeout(self.request_s, connect=self.connect_s)

    def run(self) -> httpx.Timeout:
        return httpx.Timeout(self.run_s, connect=self.connect_s)


@dataclass(frozen=True, slots=True)
class RequestOptions:
    """fal's per-request knobs for run and submit (sent as `X-Fal-*` headers)."""

    priority: str | None = None
    hint: str | None = None
    start_timeout_s: float | None = None

    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.priority:
            headers["X-Fal-Queue-Priority"] = self.priority
        if self.hint:
            headers["X-Fal-Runner-Hint"] = self.hint
        if self.start_timeout_s is not None:
            headers["X-Fal-Request-Timeout"] = f"{self.start_timeout_s:g}"
        return headers


def _transport_error(exc: httpx.TransportError, what: str) -> FalTransportError:
    """Classify an httpx failure by whether the request may have reached fal."""
    host = exc.request.url.host if _has_request(exc) else "fal"
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return FalTransportError(f"{what}: timed out connecting to {host}", maybe_sent=False, timed_out=True)
    if isinstance(exc, httpx.ConnectError):
        return FalTransportError(f"{what}: could not connect to {host}", maybe_sent=False)
    if isinstance(exc, httpx.TimeoutException):
        return FalTransportError(f"{what}: {host} did not answer in time", maybe_sent=True, timed_out=True)
    return FalTransportError(f"{what}: the connection to {host} broke before fal answered", maybe_sent=True)


def _has_request(exc: httpx.TransportError) -> bool:
    try:
        exc.request  # noqa: B018 - the property raises when the error was made without a request
    except RuntimeError:
        return False
    return True


class StreamsBusy(FalError):
    """No status stream slot is free (for this key, or in all): the caller polls instead."""


class FalClient:
    """run, submit, status, result and cancel against fal, with the retry rules of `fal_mcp.fal.retry`."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        transport: httpx.AsyncBaseTransport,
        urls: FalUrls,
        *,
        key: SecretStr | None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        streams: StreamSlots | None = None,
    ) -> None:
        self._http = http
        self._transport = transport
        """`http`'s own transport: what requests to fal are sent through (see the module docstring)."""
        self.urls = urls
        self._key = key
        self._retry = retry or RetryPolicy()
        self._timeouts = timeouts or Timeouts()
        self.streams = streams if streams is not None else StreamSlots(total=64, per_key=8)
        self._stream_holder = StreamSlots.holder(key.get_secret_value() if key is not None else None)
        self._queue_timeout = self._timeouts.queue().as_dict()
        self._headers: dict[str, str] | None = None

    @classmethod
    def create(cls, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> FalClient:
        """The process's one client (its pools open on first use); `aclose()` closes them."""
        timeouts = Timeouts(
            connect_s=settings.connect_timeout_s,
            request_s=settings.request_timeout_s,
            run_s=settings.run_timeout_s,
            call_s=settings.call_deadline_s,
        )
        transport = transport if transport is not None else Network(settings)
        http = httpx.AsyncClient(
            transport=transport,
            timeout=timeouts.queue(),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            follow_redirects=False,
            trust_env=False,  # the proxy and CA variables are applied by `Network`, from the real environment only
        )
        return cls(
            http,
            transport,
            FalUrls(
                run_base=settings.run_url,
                queue_base=settings.queue_url,
                api_base=settings.api_url,
                rest_base=settings.rest_url,
            ),
            key=settings.key,
            retry=RetryPolicy(retries=settings.retries, max_retry_after_s=settings.max_retry_after_s),
            timeouts=timeouts,
            streams=StreamSlots(total=settings.max_streams, per_key=settings.streams_per_key),
        )

    @classmethod
    @asynccontextmanager
    async def open(
        cls, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> AsyncGenerator[FalClient]:
        """The process's one client, closed when the block ends."""
        client = cls.create(settings, transport=transport)
        try:
            yield client
        finally:
            await client.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def with_key(self, key: SecretStr | None) -> FalClient:
        """A view that pays with another key over the same connection pools."""
        return FalClient(
            self._http,
            self._transport,
            self.urls,
            key=key,
            retry=self._retry,
            timeouts=self._timeouts,
            streams=self.streams,
        )

    @property
    def credential(self) -> str:
        """A digest naming the key this client pays with (never the key): waits on a request are shared only
        between calls that pay with the same key."""
        return self._stream_holder

    @property
    def public_http(self) -> httpx.AsyncClient:
        """The shared pool for requests that must carry no fal credential (CDN uploads, signed URLs, media).

        The pool itself holds no key (each fal request adds its own header), so whatever is sent through it
        directly goes out without one.
        """
        return self._http

    async def call_api(self, method: str, url: str, what: str, *, json_body: Mapping[str, Any] | None = None) -> Any:
        """An authenticated JSON call to fal's platform or storage API, at a URL built by `self.urls`.

        Retried like a status call: none of these starts (or bills) a generation.
        """
        if not self.urls.owns(url):
            raise ValueError(f"{what}: refusing to send the fal key outside the configured fal URLs")
        return _json(await self._send(method, url, what, json_body=json_body), what)

    # -- the five operations -------------------------------------------------------------------------

    async def run(self, endpoint: EndpointId, payload: Mapping[str, Any], options: RequestOptions) -> RunResponse:
        """POST to the run host and wait for the model's answer. Never re-sent once it may have reached fal."""
        response = await self._send(
            "POST",
            self.urls.run(endpoint),
            f"run {endpoint}",
            json_body=payload,
            headers=options.headers(),
            http_timeout=self._timeouts.run(),
            idempotent=False,
            lane="run",
            bounded=False,  # a sync run takes as long as the model: FAL_MCP_RUN_TIMEOUT_S bounds it
        )
        return RunResponse(
            output=_json(response, f"run {endpoint}"), request_id=response.headers.get("x-fal-request-id")
        )

    async def submit(
        self,
        endpoint: EndpointId,
        payload: Mapping[str, Any],
        options: RequestOptions,
        *,
        webhook_url: str | None = None,
    ) -> SubmitResponse:
        """Enqueue a request. Never re-sent once it may have reached fal (that would bill twice)."""
        what = f"submit to {endpoint}"
        response = await self._send(
            "POST",
            self.urls.submit(endpoint),
            what,
            json_body=payload,
            headers=options.headers(),
            params={"fal_webhook": webhook_url} if webhook_url else None,
            idempotent=False,
        )
        return read_answer(SubmitResponse, _json(response, what), what)

    async def status(self, endpoint: EndpointId, request_id: str, *, logs: bool = False) -> QueueStatus:
        what = f"status of {request_id}"
        response = await self._send(
            "GET", self.urls.status(endpoint, request_id), what, params={"logs": "1" if logs else "0"}
        )
        return read_answer(QueueStatus, _json(response, what), what)

    @asynccontextmanager
    async def status_stream(
        self, endpoint: EndpointId, request_id: str, *, logs: bool = False
    ) -> AsyncGenerator[AsyncIterator[QueueStatus]]:
        """fal's status stream: one status per change, ending after COMPLETED.

        Not retried: a refused or broken stream, or no free stream slot (`StreamsBusy`), is the caller's cue to
        fall back to polling, which is.
        """
        what = f"status stream of {request_id}"
        if not self.streams.take(self._stream_holder):
            raise StreamsBusy(
                f"{what}: every status stream slot is in use (FAL_MCP_STREAMS_PER_KEY, FAL_MCP_MAX_STREAMS)"
            )
        try:
            timeout = httpx.Timeout(self._timeouts.stream_idle_s, connect=self._timeouts.connect_s)
            request = self._request(
                "GET",
                self.urls.status_stream(endpoint, request_id),
                params={"logs": "1" if logs else "0"},
                headers={"Accept": "text/event-stream"},
                timeout=timeout.as_dict(),
                lane="stream",
            )
            try:
                response = await self._open(request)
            except httpx.TransportError as exc:
                raise _transport_error(exc, what) from exc
            try:
                if not response.is_success:
                    await response.aread()
                    raise decode_response_error(response)
                self._accepted()
                if not response.headers.get("content-type", "").startswith("text/event-stream"):
                    raise FalProtocolError(f"{what}: fal answered without an event stream")
                yield _statuses(response, what)
            finally:
                with anyio.CancelScope(shield=True):  # hand the connection back even when the wait was cut short
                    await response.aclose()
        finally:
            self.streams.give_back(self._stream_holder)

    async def result(self, endpoint: EndpointId, request_id: str) -> Any:
        """The output of a completed request (fal answers the model's own error for a failed one)."""
        what = f"result of {request_id}"
        response = await self._send("GET", self.urls.request(endpoint, request_id), what)
        return _json(response, what)

    async def cancel(self, endpoint: EndpointId, request_id: str) -> str:
        """`CANCELLATION_REQUESTED`, or `ALREADY_COMPLETED` when there was nothing left to stop."""
        what = f"cancel of {request_id}"
        try:
            response = await self._send("PUT", self.urls.cancel(endpoint, request_id), what)
        except FalAPIError as error:
            if error.status_code == 400 and json_field(error.body, "status") == ALREADY_COMPLETED:
                return ALREADY_COMPLETED
            raise
        try:
            status = json_field(response.json(), "status")
        except (json.JSONDecodeError, UnicodeDecodeError):
            status = None
        if isinstance(status, str) and status:
            return status
        if response.status_code == 202:  # fal's code for "accepted", whatever the body says
            return CANCELLATION_REQUESTED
        raise FalProtocolError(
            f"{what}: fal answered {response.status_code} with a body that does not say whether the cancel took; "
            "check with get-status"
        )

    # -- plumbing ------------------------------------------------------------------------------------

    def _accepted(self) -> None:
        """fal answered a request this key paid for: it is a real key, so no log line may show it from now on."""
        if self._key is not None:
            redactor.accept(self._key.get_secret_value())

    def _request_headers(self) -> dict[str, str]:
        """The client's headers (user agent, accepted types and encodings) and this view's key, names in lower case
        (as `httpx.Headers` gives them), so that a request's own header replaces one of these instead of doubling it."""
        if self._key is None:
            raise MissingKeyError(
                "no fal key: set FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET) in the server's environment or .env, "
                "or start it with --sandbox to try it without a key"
            )
        if self._headers is None:
            self._headers = {**self._http.headers, "authorization": f"Key {self._key.get_secret_value()}"}
        return self._headers

    def _request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        timeout: dict[str, float | None],
        lane: Lane,
        content: bytes | None = None,
    ) -> httpx.Request:
        base = self._request_headers()
        return httpx.Request(
            method,
            url,
            params=params,
            headers={**base, **{name.lower(): value for name, value in headers.items()}} if headers else base,
            content=content,
            extensions={"timeout": timeout, LANE: lane},
        )

    async def _open(self, request: httpx.Request) -> httpx.Response:
        """`request` sent through the transport; the body is left to read (or close)."""
        if self._http.is_closed:
            raise RuntimeError("the fal client is closed")
        try:
            response = await self._transport.handle_async_request(request)
        except httpx.RequestError as exc:
            exc.request = request  # for the error's wording: which host did not answer
            raise
        response.request = request
        if logger.isEnabledFor(logging.INFO):  # the line httpx's client logs for each request, as it words it
            reason = f"{response.http_version} {response.status_code} {response.reason_phrase}"
            logger.info('HTTP Request: %s %s "%s"', request.method, request.url, reason)
        return response

    async def _read(self, request: httpx.Request) -> httpx.Response:
        """`request` sent through the transport, its whole body read (and the connection handed back)."""
        response = await self._open(request)
        try:
            await response.aread()
        except BaseException:
            await response.aclose()
            raise
        return response

    async def _send(
        self,
        method: str,
        url: str,
        what: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        http_timeout: httpx.Timeout | None = None,
        idempotent: bool = True,
        lane: Lane = "short",
        bounded: bool = True,
    ) -> httpx.Response:
        """Send one request, retrying as `RetryPolicy` allows, within the call deadline unless not `bounded`;
        return a 2xx response or raise a `FalError`."""
        content = None
        if json_body is not None:
            content = json.dumps(json_body, separators=(",", ":"), ensure_ascii=False).encode()
            headers = {**(headers or {}), "Content-Type": "application/json"}
        elif method in ("PUT", "POST"):
            content = b""
        timeout = http_timeout.as_dict() if http_timeout is not None else self._queue_timeout
        attempt = 0
        may_have_arrived = False
        sending = False
        deadline_s = self._timeouts.call_s if bounded else math.inf
        with anyio.move_on_after(deadline_s):
            while True:
                error: FalError
                sending = True
                try:
                    response = await self._read(
                        self._request(
                            method, url, params=params, headers=headers, content=content, timeout=timeout, lane=lane
                        )
                    )
                except httpx.TransportError as exc:
                    error = _transport_error(exc, what)
                    may_have_arrived |= error.maybe_sent
                else:
                    if response.is_success:
                        if not url.startswith(self.urls.api_base + "/"):  # the listing answers even a made-up key
                            self._accepted()
                        return response
                    error = decode_response_error(response)
                sending = False
                attempt += 1
                delay = self._retry.delay_before_retry(error, attempt, idempotent=idempotent)
                if delay is None:
                    raise error
                logger.info("%s failed (%s); retry %d in %.2fs", what, error, attempt, delay)
                await anyio.sleep(delay)
        tries = attempt + (1 if sending else 0)
        raise FalTransportError(
            f"{what}: {httpx.URL(url).host} did not answer within {deadline_s:g}s ({tries} attempt(s); FAL_MCP_CALL_DEADLINE_S "
            "bounds one request to fal, retries included)",
            maybe_sent=may_have_arrived or sending,
            timed_out=True,
        )


async def _statuses(response: httpx.Response, what: str) -> AsyncIterator[QueueStatus]:
    try:
        async for data in sse_data(response.aiter_lines()):
            try:
                yield QueueStatus.model_validate_json(data)
            except ValidationError as exc:
                raise FalProtocolError(f"{what}: an event was not a status ({exc.error_count()} problems)") from exc
    except httpx.TransportError as exc:
        raise _transport_error(exc, what) from exc


def _json(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FalProtocolError(f"{what}: fal answered {response.status_code} with a body that is not JSON") from exc


_ModelT = TypeVar("_ModelT", bound=BaseModel)


def read_answer(model: type[_ModelT], data: Any, what: str) -> _ModelT:
    """Read a decoded fal answer into `model`; an answer we cannot read is a `FalProtocolError`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise FalProtocolError(f"{what}: fal's answer was not understood ({exc.error_count()} problems)") from exc
