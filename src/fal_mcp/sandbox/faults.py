"""Injected misbehaviour: error statuses, slow answers and dropped connections, on demand.

A fault stands in front of the fake like fal's ingress: it matches a request by route (and
optionally endpoint), may wait, and then either answers with its own status, drops the connection
before the fake sees the request, or lets the fake handle it and drops the connection instead of
answering. Fault responses carry no `x-fal-request-id` unless the fault's headers add one: that
header is how clients tell a response from fal itself apart from one made by the ingress in front.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Literal

from starlette.responses import Response

from fal_mcp.sandbox.routing import ROUTES

NGINX_503 = "<html><body><h1>503 Service Temporarily Unavailable</h1><hr><center>nginx</center></body></html>"
"""What an ingress 503 looks like: HTML mentioning nginx, no `x-fal-request-id`."""


@dataclass
class Fault:
    """One injected fault; faults apply in injection order and the first match wins.

    `status` answers with that status instead of handling the request (a missing `body` becomes
    `{"detail": <reason phrase>}`; a dict or list is sent as JSON, a str as text or HTML). `drop`
    "before" closes the connection without handling; "after" handles the request fully (a submit
    does create its job) and then closes the connection without answering. With `drop` set,
    `status` is ignored. `delay_s` (real seconds, not scaled) is waited first in every case.
    """

    route: str = "*"
    status: int | None = None
    body: str | bytes | Mapping[str, object] | Sequence[object] | None = None
    headers: dict[str, str] = field(default_factory=dict[str, str])
    delay_s: float = 0.0
    drop: Literal["before", "after"] | None = None
    endpoint_id: str | None = None
    """Only requests addressing an id that starts with this."""
    times: int = 1
    """How many matching requests it affects before it is used up."""
    events: int | None = None
    """Status stream only: stop after this many events, as a stream that fal (or a proxy) cuts short. The
    stream ends cleanly, or with `drop="after"` the connection breaks mid-stream."""

    def __post_init__(self) -> None:
        if self.route != "*" and self.route not in ROUTES:
            raise ValueError(f"unknown route {self.route!r}; expected '*' or one of {', '.join(ROUTES)}")
        if self.drop not in (None, "before", "after"):
            raise ValueError(f"drop must be 'before', 'after' or None, not {self.drop!r}")
        if self.times < 1:
            raise ValueError("times must be at least 1")
        if self.events is not None and (self.route != "stream" or self.events < 0):
            raise ValueError("events applies to the stream route only, and cannot be negative")

    def matches(self, route: str, endpoint_id: str | None) -> bool:
        """Whether this fault applies to a request on `route` addressing `endpoint_id`."""
        if self.route not in ("*", route):
            return False
        if self.endpoint_id is None:
            return True
        return endpoint_id is not None and endpoint_id.startswith(self.endpoint_id)

    def response(self) -> Response:
        """The answer for a `status` fault."""
        status = self.status if self.status is not None else 500
        content, content_type = self._content(status)
        headers = {"content-type": content_type, **{name.lower(): value for name, value in self.headers.items()}}
        return Response(content, status_code=status, headers=headers)

    def _content(self, status: int) -> tuple[bytes, str]:
        body = self.body
        if body is None:
            try:
                phrase = HTTPStatus(status).phrase
            except ValueError:
                phrase = "Error"
            return json.dumps({"detail": phrase}).encode(), "application/json"
        if isinstance(body, bytes):
            return body, "application/octet-stream"
        if isinstance(body, str):
            kind = "text/html" if body.lstrip().startswith("<") else "text/plain"
            return body.encode(), f"{kind}; charset=utf-8"
        return json.dumps(body).encode(), "application/json"


@dataclass
class _Pending:
    fault: Fault
    left: int


class FaultQueue:
    """Thread-safe list of pending faults, each with its remaining uses."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[_Pending] = []

    def add(self, fault: Fault) -> None:
        """Queue `fault` behind those already injected."""
        with self._lock:
            self._pending.append(_Pending(fault, fault.times))

    def clear(self) -> None:
        """Forget every pending fault."""
        with self._lock:
            self._pending.clear()

    def take(self, route: str, endpoint_id: str | None) -> Fault | None:
        """The first fault matching this request, using up one of its `times`."""
        with self._lock:
            for entry in self._pending:
                if entry.fault.matches(route, endpoint_id):
                    entry.left -= 1
                    if entry.left == 0:
                        self._pending.remove(entry)
                    return entry.fault
        return None
