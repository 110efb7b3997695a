"""What can go wrong talking to fal, decoded from fal's answers in exactly one place.

Our exception hierarchy:

    FalError                      anything that kept a fal operation from succeeding
    ├── MissingKeyError           no fal key is configured (or, over HTTP, none was sent)
    ├── FalAPIError               fal answered with an HTTP error status
    │   ├── FalAuthError          401 / 403: the key is unknown, or the account is locked
    │   ├── FalNotFoundError      404: no such endpoint or request
    │   ├── FalValidationError    422: the input does not fit the model (field errors)
    │   ├── FalRateLimitError     429: too many requests or a full queue
    │   └── FalServerError        5xx / 499: fal or the model's runner failed
    ├── FalRequestFailed          the request ran and fal completed it with an `error`
    ├── FalTransportError         no usable answer: could not connect, timed out, connection dropped
    └── FalProtocolError          fal answered 2xx with a body we cannot read

fal's error bodies come in a few shapes: `{"detail": "text"}`, the 422 list
`{"detail": [{"loc": [...], "msg": ..., "type": ...}]}`, `{"detail": ..., "error_type": ...}` with the same
type in the `X-Fal-Error-Type` header, `{"status": "ALREADY_COMPLETED"}` from cancel, and plain text or HTML
from the ingress. `decode_response_error` turns any of them into one of the classes above. None of these
messages ever contains the key: nothing here sees it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import httpx


class FalError(Exception):
    """Base of every failure of a fal operation."""


class MissingKeyError(FalError):
    """No fal key to authenticate with."""


@dataclass(frozen=True, slots=True)
class FieldError:
    """One complaint of a 422: where in the input (`loc` without fal's leading "body") and what is wrong."""

    loc: tuple[str, ...]
    msg: str
    type: str | None = None

    @property
    def field(self) -> str:
        return ".".join(self.loc) or "input"

    def __str__(self) -> str:
        return f"{self.field}: {self.msg}"


class FalAPIError(FalError):
    """fal answered with an HTTP error status."""

    def __init__(
        self,
        status_code: int,
        detail: str,
        *,
        error_type: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        timeout_type: str | None = None,
        field_errors: tuple[FieldError, ...] = (),
        body: Any = None,
    ) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail
        self.error_type = error_type
        self.request_id = request_id
        self.retry_after = retry_after
        self.timeout_type = timeout_type
        self.field_errors = field_errors
        self.body = body

    @property
    def from_ingress(self) -> bool:
        """A 502/503/504 that never reached a fal app carries no `x-fal-request-id` (fal's own client rule)."""
        return self.status_code in (502, 503, 504) and self.request_id is None and self.timeout_type is None

    @property
    def ran(self) -> bool:
        """The request reached fal's app, which failed it (5xx or 499): unlike a refusal, it happened."""
        return (self.status_code >= 500 or self.status_code == 499) and not self.from_ingress


class FalAuthError(FalAPIError):
    """401 / 403: the key is unknown, or the account is locked (e.g. out of balance)."""


class FalNotFoundError(FalAPIError):
    """404: no such endpoint, or no such request for this key and app."""


class FalValidationError(FalAPIError):
    """422: the input does not fit the model's schema; `field_errors` lists each complaint."""


class FalRateLimitError(FalAPIError):
    """429: fal's concurrency limit or the endpoint's queue length was hit."""


class FalServerError(FalAPIError):
    """5xx (and 499): fal's gateway or the model's runner failed."""


class FalRequestFailed(FalError):
    """fal ran the request and completed it with an `error` (a failed generation)."""

    def __init__(
        self,
        error: str,
        *,
        error_type: str | None = None,
        request_id: str | None = None,
        cause: FalAPIError | None = None,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.error_type = error_type
        self.request_id = request_id
        self.cause = cause


class FalTransportError(FalError):
    """No usable HTTP answer. `maybe_sent` says whether fal may have received (and acted on) the request."""

    def __init__(self, message: str, *, maybe_sent: bool, timed_out: bool = False) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent
        self.timed_out = timed_out


class FalProtocolError(FalError):
    """fal answered 2xx with a body that is not the JSON we expect."""


def answer_lost(error: BaseException) -> bool:
    """Whether fal may have acted on a request although no answer was read: the connection failed after the
    request may have arrived, or fal answered 2xx with a body that could not be read (it did take the request)."""
    return isinstance(error, FalProtocolError) or (isinstance(error, FalTransportError) and error.maybe_sent)


_STATUS_CLASSES: dict[int, type[FalAPIError]] = {
    401: FalAuthError,
    403: FalAuthError,
    404: FalNotFoundError,
    422: FalValidationError,
    429: FalRateLimitError,
}

_TAGS = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"\s+")
MAX_DETAIL = 600


def _plain_text(text: str) -> str:
    """Shorten an HTML or text body to one readable line."""
    flat = _SPACES.sub(" ", _TAGS.sub(" ", text)).strip()
    return flat[:MAX_DETAIL] + ("..." if len(flat) > MAX_DETAIL else "")


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds (fal sends seconds; an HTTP date is read as "soon", not trusted)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return 1.0
    return max(0.0, seconds) if seconds == seconds else None  # NaN guard


def json_field(body: Any, name: str) -> Any:
    """`body[name]` when `body` is a JSON object, else None: fal's bodies are not always objects."""
    return cast(dict[str, Any], body).get(name) if isinstance(body, dict) else None


def decode_field_errors(detail: list[Any]) -> tuple[FieldError, ...]:
    """Read FastAPI/pydantic style 422 items, dropping fal's leading "body" from each location."""
    errors: list[FieldError] = []
    for item in detail:
        if not isinstance(item, dict):
            errors.append(FieldError(loc=(), msg=_plain_text(str(item))))
            continue
        raw_loc = json_field(item, "loc")
        loc_items = cast(list[Any], raw_loc) if isinstance(raw_loc, list) else []
        loc = tuple(str(part) for part in loc_items)
        if loc and loc[0] == "body":
            loc = loc[1:]
        msg = json_field(item, "msg") or json_field(item, "message") or "invalid value"
        kind = json_field(item, "type")
        errors.append(FieldError(loc=loc, msg=_plain_text(str(msg)), type=str(kind) if kind is not None else None))
    return tuple(errors)


def _detail_text(body: Any, field_errors: tuple[FieldError, ...], fallback: str) -> str:
    if field_errors:
        return "; ".join(str(error) for error in field_errors)
    if isinstance(body, dict):
        for key in ("detail", "error", "message", "status"):
            value = json_field(body, key)
            if value:
                return _plain_text(value if isinstance(value, str) else json.dumps(value))
    if isinstance(body, str) and body.strip():
        return _plain_text(body)
    return fallback


def decode_response_error(response: httpx.Response) -> FalAPIError:
    """Turn a non-2xx answer from fal into the matching `FalAPIError` subclass."""
    try:
        body: Any = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = response.text
    return api_error(
        response.status_code,
        body,
        reason=response.reason_phrase or "no detail",
        error_type=response.headers.get("x-fal-error-type"),
        request_id=response.headers.get("x-fal-request-id"),
        retry_after=parse_retry_after(response.headers.get("retry-after")),
        timeout_type=response.headers.get("x-fal-request-timeout-type"),
    )


def api_error(
    status: int,
    body: Any,
    *,
    reason: str,
    error_type: str | None = None,
    request_id: str | None = None,
    retry_after: float | None = None,
    timeout_type: str | None = None,
) -> FalAPIError:
    """The `FalAPIError` subclass for an error status and its body, wherever fal told it (an HTTP answer, or the
    status code a webhook names); the body's `error_type` wins over the one given."""
    detail_value = json_field(body, "detail")
    field_errors = decode_field_errors(cast(list[Any], detail_value)) if isinstance(detail_value, list) else ()
    raw_type = json_field(body, "error_type")
    cls = _STATUS_CLASSES.get(status) or (FalServerError if status >= 500 or status == 499 else FalAPIError)
    return cls(
        status,
        _detail_text(body, field_errors, reason),
        error_type=str(raw_type) if raw_type else error_type,
        request_id=request_id,
        retry_after=retry_after,
        timeout_type=timeout_type,
        field_errors=field_errors,
        body=body,
    )
