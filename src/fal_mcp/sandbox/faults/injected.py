"""Injected misbehaviour: error statuses, slow answers and dropped connections, on demand.

A fault stands in front of the fake like fal's ingress: it matches a request by route (and
optionally endpoint), may wait, and then either answers with its own status, drops or resets the
connection before the fake handles the request, or lets the fake handle it and then drops or resets
the connection instead of answering, or cuts its answer short. Fault responses carry no
`x-fal-request-id` unless the fault's headers add one: that header is how clients tell a response
from fal itself apart from one made by the ingress in front.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Literal, get_args

from starlette.responses import Response, StreamingResponse

from fal_mcp.sandbox.faults.disconnect import DroppedConnection
from fal_mcp.sandbox.queue.status_stream import cut_inside_first_event, cut_short
from fal_mcp.sandbox.routing import ROUTES

Drop = Literal["before", "after", "reset", "reset-after"]
DROPS: tuple[Drop, ...] = get_args(Drop)

NGINX_503 = "<html><body><h1>503 Service Temporarily Unavailable</h1><hr><center>nginx</center></body></html>"
"""What an ingress 503 looks like: HTML mentioning nginx, no `x-fal-request-id`."""


@dataclass
class Fault:
    """One injected fault; faults apply in injection order and the first match wins.

    `status` answers with that status instead of handling the request (a missing `body` becomes
    `{"detail": <reason phrase>}`; a dict or list is sent as JSON, a str as text or HTML). `drop`
    "before" closes the connection without handling; "after" handles the request fully (a submit
    does create its job) and then closes the connection without answering. "reset" and
    "reset-after" do the same with a TCP RST instead of a clean close (the client reads "connection
    reset by peer"). With `drop` set, `status` is ignored. `truncate` handles the request and sends
    its answer cut off halfway: same status and headers, half the JSON (a status stream ends inside
    its first event). `delay_s` (real seconds, not scaled) is waited first in every case.

    The fake records a request before any fault acts on it, so `FakeFal.requests` shows every attempt
    that reached it, faulted or not.
    """

    route: str = "*"
    status: int | None = None
    body: str | bytes | Mapping[str, object] | Sequence[object] | None = None
    headers: dict[str, str] = field(default_factory=dict[str, str])
    delay_s: float = 0.0
    drop: Drop | None = None
    endpoint_id: str | None = None
    """Only requests addressing an id that starts with this."""
    times: int = 1
    """How many matching requests it affects before it is used up."""
    events: int | None = None
    """Status stream only: stop after this many events, as a stream that fal (or a proxy) cuts short. The
    stream ends cleanly, or with `drop="after"` the connection breaks mid-stream."""
    truncate: bool = False
    """Handle the request, then send only the first half of the answer's body."""

    def __post_init__(self) -> None:
        if self.route != "*" and self.route not in ROUTES:
            raise ValueError(f"unknown route {self.route!r}; expected '*' or one of {', '.join(ROUTES)}")
        if self.drop is not None and self.drop not in DROPS:
            raise ValueError(f"drop must be one of {', '.join(map(repr, DROPS))} or None, not {self.drop!r}")
        if self.times < 1:
            raise ValueError("times must be at least 1")
        if self.events is not None and (self.route != "stream" or self.events < 0):
            raise ValueError("events applies to the stream route only, and cannot be negative")
        if self.events is not None and self.drop not in (None, "after"):
            raise ValueError("a stream cut short ends cleanly or breaks (drop='after'); nothing else")
        if self.truncate and (self.drop is not None or self.status is not None or self.events is not None):
            raise ValueError("truncate cuts the fake's own answer: it excludes drop, status and events")

    @property
    def handles(self) -> bool:
        """Whether the fake handles the request (a submit creates its job) before the fault answers."""
        return self.drop in ("after", "reset-after") or (self.drop is None and self.status is None)

    def instead(self) -> Response | None:
        """The answer given without handling the request (after `delay_s`), or None to handle it."""
        if self.drop in ("before", "reset"):
            return DroppedConnection(reset=self.drop == "reset")
        if self.drop is None and self.status is not None:
            return self.response()
        return None

    def applied_to(self, response: Response) -> Response:
        """The handled request's `response` as this fault delivers it."""
        if self.events is not None and isinstance(response, StreamingResponse):
            response.body_iterator = cut_short(response.body_iterator, self.events, broken=self.drop == "after")
            return response
        if self.drop in ("after", "reset-after"):
            return DroppedConnection(reset=self.drop == "reset-after")
        if self.truncate:
            return _truncated(response)
        return response

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


def _truncated(response: Response) -> Response:
    """Same status and headers, half the body: JSON that cannot be read, in a well-formed HTTP answer."""
    if isinstance(response, StreamingResponse):
        response.body_iterator = cut_inside_first_event(response.body_iterator)
        return response
    body = bytes(response.body)
    headers = {name: value for name, value in response.headers.items() if name != "content-length"}
    return Response(body[: len(body) // 2], status_code=response.status_code, headers=headers)


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
