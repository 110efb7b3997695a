"""The REST surface of fal's queue capability (`--rest`): the same `Operations` as the tools, over JSON.

    POST /v1/models/{model_owner}/{model_name}[/{subpath}]/requests       submit (body: the model input)
    GET  /v1/models/{model_owner}/{model_name}/requests/{request_id}/status
    GET  /v1/models/{model_owner}/{model_name}/requests/{request_id}      result
    PUT  /v1/models/{model_owner}/{model_name}/requests/{request_id}/cancel

Ids are read from the raw request path and go through the same parsers as the tools' arguments, so an id the
tools refuse (`..`, `%2F`, unicode, ...) is refused here the same way, before anything is sent. Successes answer
the tools' output models (`fal_mcp.jobs.results`) as JSON; a request still running answers 202, as fal does. Every
failure answers one JSON body, worded by `jobs.failures.explain` exactly as the tool's error would be:

    {"error": {"message": "...", "status": 404, "fal_status": 404, "error_type": "...", "request_id": "..."}}

`fal_status` is fal's own answer when fal gave one; a 422 also lists `fields` (`loc`, `msg`). The status is ours:
fal's 4xx pass through (its 401/403 only when the caller's own key was refused, else 502), fal's 5xx become 502
(504 on timeouts), a guard answers 403, 413 or 429 (with `Retry-After`), a bad argument 400.

Submit answers with the call's `estimated_cost_usd`, and takes `?max_cost_usd=`: the caller's ceiling, and, since
REST has nobody to ask, the consent a call above `FAL_MCP_CONFIRM_ABOVE_USD` needs. A cost refusal is a guard's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import Headers, QueryParams
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from fal_mcp.calls import calls
from fal_mcp.fal.client import CANCELLATION_REQUESTED, RequestOptions
from fal_mcp.fal.endpoint import EndpointId, InvalidIdError, check_request_id
from fal_mcp.fal.errors import (
    FalAPIError,
    FalError,
    FalRequestFailed,
    FalTransportError,
    FalValidationError,
    MissingKeyError,
)
from fal_mcp.fal.queue_status import COMPLETED
from fal_mcp.jobs.cost.limits import Spend
from fal_mcp.jobs.failures import AfterSubmit, NotYours, ToolFailure, explain
from fal_mcp.jobs.guards import MalformedInput, Refused, nested_deeper_than
from fal_mcp.jobs.operations import Operations
from fal_mcp.jobs.preflight import InputRefused
from fal_mcp.jobs.results import RequestResult, ToolOutput
from fal_mcp.jobs.state import StateSlot, identity_of
from fal_mcp.logs import redactor
from fal_mcp.media.fence import UploadRefused
from fal_mcp.server.tools.arguments import HintArg, MaxCostArg, PriorityArg, StartTimeoutArg, WebhookArg
from fal_mcp.store.database import StoreUnavailable

logger = logging.getLogger(__name__)

PREFIX = "/v1/models/"
CALL_ID_HEADER = "x-fal-mcp-call-id"
OUTPUT_MODEL_MAX_DEPTH = 200
"""Past this depth a model's output is not passed through pydantic (which refuses 255 levels) on its way out."""

Operation = Literal["submit", "status", "result", "cancel"]
ACTIONS: dict[Operation, str] = {"submit": "submit", "status": "get-status", "result": "get-result", "cancel": "cancel"}
"""The tool each operation mirrors: errors are worded as that tool's."""

_priority = TypeAdapter[Any](PriorityArg)
_hint = TypeAdapter[Any](HintArg)
_start_timeout = TypeAdapter[Any](StartTimeoutArg)
_webhook = TypeAdapter[Any](WebhookArg)
_max_cost = TypeAdapter[Any](MaxCostArg)


@dataclass(frozen=True, slots=True)
class Target:
    """What a REST path addresses."""

    operation: Operation
    endpoint_id: str
    request_id: str | None = None


_METHODS: dict[Operation, str] = {"submit": "POST", "status": "GET", "result": "GET", "cancel": "PUT"}


def parse_target(path: str) -> Target | None:
    """The operation a raw path (`/v1/models/...`, still percent-encoded) names by its shape, or None."""
    segments = path.removeprefix(PREFIX).split("/")
    if len(segments) >= 2 and segments[-1] == "requests":
        return Target("submit", "/".join(segments[:-1]))
    if len(segments) >= 4 and segments[-3] == "requests" and segments[-1] in ("status", "cancel"):
        operation: Operation = "status" if segments[-1] == "status" else "cancel"
        return Target(operation, "/".join(segments[:-3]), segments[-2])
    if len(segments) >= 3 and segments[-2] == "requests":
        return Target("result", "/".join(segments[:-2]), segments[-1])
    return None


def error_body(status: int, message: str, *, error_type: str | None = None, **extra: Any) -> dict[str, dict[str, Any]]:
    fields = {"message": message, "status": status, "error_type": error_type, **extra}
    return {"error": {name: value for name, value in fields.items() if value is not None}}


class ScrubbedJSON(JSONResponse):
    """Every body this surface sends (answers, errors, the gate's refusals) leaves through here, with every key
    replaced by `[REDACTED]` (what a key is: `fal_mcp.logs`)."""

    def render(self, content: Any) -> bytes:
        return super().render(redactor.scrub_data(content))


def error_response(
    status: int, message: str, *, error_type: str | None = None, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return ScrubbedJSON(error_body(status, message, error_type=error_type, **extra), status, headers=headers)


def http_status(error: Exception, *, own_key: bool) -> tuple[int, int | None, str | None]:
    """(our status, fal's status, error_type) for a failure; `own_key` when the caller's key paid."""
    if isinstance(error, AfterSubmit):
        return http_status(error.cause, own_key=own_key)
    if isinstance(error, Refused):
        return error.status_code, None, "refused"
    if isinstance(error, InputRefused):  # the same code fal gives an input its model refuses
        return 422, None, "invalid_input"
    if isinstance(error, NotYours):  # as for a request nobody sent
        return 404, None, "unknown_request"
    if isinstance(error, InvalidIdError | ToolFailure | UploadRefused):
        return 400, None, "invalid_request"
    if isinstance(error, MissingKeyError):
        return 503, None, "no_key"
    if isinstance(error, StoreUnavailable):
        return 503, None, "store_unavailable"
    if isinstance(error, FalRequestFailed):
        cause = error.cause
        status = 422 if isinstance(cause, FalValidationError) else 502
        return status, cause.status_code if cause is not None else None, error.error_type
    if isinstance(error, FalAPIError):
        fal = error.status_code
        if fal in (401, 403) and not own_key:
            return 502, fal, error.error_type  # the server's own key was refused: not the caller's doing
        if fal >= 500 or fal == 499:
            return (504 if fal == 504 else 502), fal, error.error_type
        return fal, fal, error.error_type
    if isinstance(error, FalTransportError):
        return (504 if error.timed_out else 502), None, None
    if isinstance(error, FalError):
        return 502, None, None
    return 500, None, None


class BadRequest(ToolFailure):
    """A REST argument outside the path that the tools would have refused too."""


def _option(adapter: TypeAdapter[Any], value: str | None, name: str) -> Any:
    if value is None:
        return None
    try:
        return adapter.validate_python(value)  # lax: "30" is a number, as in a JSON tool argument it would be
    except ValidationError as exc:
        reasons = "; ".join(error["msg"] for error in exc.errors())
        raise BadRequest(f"invalid {name}: {reasons}") from None


def _number(value: str, name: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise BadRequest(f"invalid {name}: expected a number, got {value[:40]!r}") from None


def _flag(query: QueryParams, name: str, *, default: bool = False) -> bool:
    value = query.get(name, "1" if default else "0").lower()
    if value not in ("0", "1", "true", "false"):
        raise BadRequest(f"invalid {name}: expected 1, 0, true or false")
    return value in ("1", "true")


class BodyTooLarge(Exception):
    """A request body over the limit (declared or as it arrives): nothing of it is kept."""


async def read_body(receive: Receive, headers: Headers, limit: int) -> bytes:
    """The whole body, or `BodyTooLarge` as soon as it is known to exceed `limit` bytes."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        if len(body) > limit:
            raise BodyTooLarge
        if not message.get("more_body", False):
            break
    return bytes(body)


def _rest_path(endpoint: EndpointId, request_id: str, tail: str = "") -> str:
    """This server's URL for a request, under the endpoint id the caller submitted to: the queue is addressed by
    the base id either way, and the id the caller was allowed to submit to passes the allow-list again."""
    return f"{PREFIX}{endpoint}/requests/{request_id}{tail}"


class RestApi:
    """The ASGI app of `/v1/models/...`; the gate in front of it has checked Host, Origin and credentials."""

    def __init__(self, slot: StateSlot, *, max_body_bytes: int, sandbox: bool = False) -> None:
        self._slot = slot
        self._max_body_bytes = max_body_bytes
        self._sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        target = parse_target(raw.decode("latin-1").split("?", 1)[0])
        if target is None:
            response = error_response(404, "no such REST path; see /openapi.json", error_type="not_found")
        elif scope["method"] != _METHODS[target.operation]:
            allowed = _METHODS[target.operation]
            response = error_response(
                405, f"{target.operation} takes {allowed}", error_type="method_not_allowed", headers={"Allow": allowed}
            )
        else:
            with calls.call(f"rest {ACTIONS[target.operation]}") as call:
                response = await self._serve(target, scope, receive)
                if response.status_code >= 400:
                    call.outcome = f"failed ({response.status_code})"
                response.headers[CALL_ID_HEADER] = call.id
        await response(scope, receive, send)

    async def _serve(self, target: Target, scope: Scope, receive: Receive) -> JSONResponse:
        identity = identity_of(scope)
        own_key = identity is not None and identity.key is not None
        action = ACTIONS[target.operation]
        try:
            state = self._slot.state
            if state is None:
                return error_response(503, "the server is starting or stopping; retry shortly", error_type="not_ready")
            ops = Operations(state=state, caller=state.caller_for(identity))
            return await self._operate(ops, target, scope, receive)
        except BodyTooLarge:
            return error_response(
                413,
                f"{action}: the request body is larger than this server accepts "
                f"({self._max_body_bytes} bytes, FAL_MCP_MAX_BODY_BYTES)",
                error_type="refused",
            )
        except Exception as exc:
            status, fal_status, error_type = http_status(exc, own_key=own_key)
            if status == 500:
                logger.exception("%s failed unexpectedly", action)
            else:
                logger.info("%s failed: %s", action, exc)
            message = explain(exc, action=action, endpoint=target.endpoint_id, request_id=target.request_id)
            return self._failure(exc, status, message, fal_status=fal_status, error_type=error_type)

    def _failure(
        self, error: Exception, status: int, message: str, *, fal_status: int | None, error_type: str | None
    ) -> JSONResponse:
        cause = error.cause if isinstance(error, AfterSubmit) else error
        if isinstance(cause, FalRequestFailed) and cause.cause is not None:
            cause = cause.cause
        extra: dict[str, Any] = {"fal_status": fal_status}
        if isinstance(error, AfterSubmit):
            extra["request_id"] = error.request_id
        if isinstance(cause, FalValidationError) and cause.field_errors:
            extra["fields"] = [{"loc": list(field.loc), "msg": field.msg} for field in cause.field_errors]
        headers: dict[str, str] = {}
        retry_after = cause.retry_after_s if isinstance(cause, Refused) else None
        if isinstance(cause, FalAPIError) and cause.retry_after is not None:
            retry_after = cause.retry_after
        if retry_after is not None:
            headers["Retry-After"] = str(max(1, round(retry_after)))
        return error_response(status, message, error_type=error_type, headers=headers, **extra)

    async def _operate(self, ops: Operations, target: Target, scope: Scope, receive: Receive) -> JSONResponse:
        endpoint = EndpointId.parse(target.endpoint_id)
        query = QueryParams(scope.get("query_string", b""))
        headers = Headers(scope=scope)
        if target.operation == "submit":
            return await self._submit(ops, endpoint, query, headers, receive)
        request_id = check_request_id(target.request_id or "")
        if target.operation == "status":
            status = await ops.status(endpoint, request_id, logs=_flag(query, "logs"))
            return self._answer(status, 200 if status.status == COMPLETED else 202)
        if target.operation == "result":
            wait_s = _number(query["wait_s"], "wait_s") if "wait_s" in query else 0.0
            if not wait_s >= 0:
                raise BadRequest("invalid wait_s: must be 0 or more")
            budget = ops.wait_budget(wait_s)
            result = await ops.result(endpoint, request_id, budget_s=budget, logs=_flag(query, "logs"))
            return self._answer(result, 200 if result.next_step is None else 202)
        cancelled = await ops.cancel(endpoint, request_id)
        return self._answer(cancelled, 202 if cancelled.status == CANCELLATION_REQUESTED else 200)

    async def _submit(
        self, ops: Operations, endpoint: EndpointId, query: QueryParams, headers: Headers, receive: Receive
    ) -> JSONResponse:
        content_type = headers.get("content-type", "")
        if not content_type.lower().startswith("application/json"):
            return error_response(415, "submit: send the model input as Content-Type: application/json")
        options = RequestOptions(
            priority=_option(_priority, headers.get("x-fal-queue-priority"), "X-Fal-Queue-Priority"),
            hint=_option(_hint, headers.get("x-fal-runner-hint"), "X-Fal-Runner-Hint"),
            start_timeout_s=_option(_start_timeout, headers.get("x-fal-request-timeout"), "X-Fal-Request-Timeout"),
        )
        webhook = _option(_webhook, query.get("fal_webhook"), "fal_webhook")
        max_cost = _option(_max_cost, query.get("max_cost_usd"), "max_cost_usd")
        body = await read_body(receive, headers, self._max_body_bytes)
        try:
            payload: Any = json.loads(body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BadRequest("the body is not JSON: send the model input as a JSON object") from None
        except RecursionError:  # deeper than the parser goes; the guards refuse far shallower input anyway
            raise MalformedInput.too_deep() from None
        if not isinstance(payload, dict):
            raise BadRequest('the body must be a JSON object: the model input, e.g. {"prompt": "a red fox"}')
        submitted = await ops.submit(
            endpoint,
            cast(dict[str, Any], payload),
            options,
            webhook_url=webhook,
            origin="REST submit",
            validate=_flag(query, "validate", default=True),  # as the submit tool: checked against the schema
            spend=Spend(max_cost),  # no one to ask here: max_cost_usd is the consent a costly call needs
        )
        rid = submitted.request_id
        linked = submitted.model_copy(  # this server's own URLs, which a REST client can follow with its credentials
            update={
                "status_url": _rest_path(endpoint, rid, "/status"),
                "response_url": _rest_path(endpoint, rid),
                "cancel_url": _rest_path(endpoint, rid, "/cancel"),
            }
        )
        return self._answer(linked, 200)

    def _answer(self, result: ToolOutput, status: int) -> JSONResponse:
        if self._sandbox:
            result.sandbox = True
        if isinstance(result, RequestResult) and nested_deeper_than(result.output, OUTPUT_MODEL_MAX_DEPTH):
            # deeper than pydantic serializes: the model's JSON goes out as fal sent it, beside the envelope
            envelope = result.model_copy(update={"output": None}).structured()
            return ScrubbedJSON({**envelope, "output": result.output}, status)
        return ScrubbedJSON(result.structured(), status)
