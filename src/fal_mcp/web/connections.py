"""HTTP connections: how many may be open, and how long a client may take to send its request.

uvicorn by itself waits forever for a request's headers and body, and accepts connections until the process runs
out of file descriptors; then nothing is accepted at all, `/healthz` included. So every connection is watched:

- `FAL_MCP_REQUEST_READ_TIMEOUT_S`: from its first byte (or from the moment it opens), a request must have arrived
  whole, headers and body, within this time. A client that is still sending gets `408` (if it has not finished
  its headers) and is disconnected; one that opened a connection and sent nothing is disconnected.
- `FAL_MCP_MAX_CONNECTIONS`: at most this many connections at once. A new one beyond the limit pushes out the
  connection that has waited longest without a request being served on it (still sending, or idle between
  requests); connections serving a request (a call, a stream) are never pushed out. Only when every connection is
  serving is the newcomer turned away. So slow or idle sockets can hold no room a real request needs.

The open-file limit of the process is raised to fit (`fit_open_files`), or the connection limit lowered to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any, cast

from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

logger = logging.getLogger(__name__)

OTHER_FILES = 264
"""Descriptors kept for everything but inbound connections: the fal connection pool (200), the history, logs."""
BACKLOG = 2048
"""Connections waiting to be accepted; fewer when the open-file limit is tight (see `fit_open_files`)."""
_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
    b"content-length: 40\r\n\r\nthe request did not arrive in time (408)\n"
)


class ConnectionGuard:
    """The connections of one server, and which of them may be pushed out, longest waiting first."""

    def __init__(self, *, max_connections: int, read_timeout_s: float) -> None:
        self.max_connections = max_connections
        self.read_timeout_s = read_timeout_s
        self.open = 0
        self._waiting: OrderedDict[GuardedProtocol, None] = OrderedDict()
        self.pushed_out = 0
        self.timed_out = 0

    def protocol(self) -> type[GuardedProtocol]:
        """The uvicorn HTTP protocol class bound to this guard (uvicorn makes one instance per connection)."""
        guard = self

        class Bound(GuardedProtocol):
            _guard = guard

        return Bound

    def opened(self, connection: GuardedProtocol) -> bool:
        """Count a new connection; False when it must be turned away (every other one is serving a request)."""
        self.open += 1
        if self.open <= self.max_connections:
            return True
        if self._waiting:
            oldest, _ = self._waiting.popitem(last=False)
            self.pushed_out += 1
            oldest.push_out()
            return True
        return False

    def closed(self, connection: GuardedProtocol) -> None:
        self.open -= 1
        self._waiting.pop(connection, None)

    def waiting(self, connection: GuardedProtocol) -> None:
        """`connection` serves no request now: it may be pushed out (the longest waiting first)."""
        if connection not in self._waiting:
            self._waiting[connection] = None

    def serving(self, connection: GuardedProtocol) -> None:
        self._waiting.pop(connection, None)


class GuardedProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on reading each request, under a `ConnectionGuard`."""

    _guard: ConnectionGuard

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._received = False
        self._counted = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # pyright: ignore[reportIncompatibleMethodOverride]
        super().connection_made(transport)
        self._counted = True
        if not self._guard.opened(self):
            logger.warning("refused a connection: all %d are serving requests", self._guard.max_connections)
            transport.abort()
            return
        self._guard.waiting(self)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._counted:
            self._counted = False
            self._guard.closed(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._serving():
            self._received = True
            self._arm()  # a request begins (or goes on): it has until the deadline to arrive whole
        super().data_received(data)
        self._settle()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._received = False
        self._settle()

    def _serving(self) -> bool:
        """A request has arrived whole and its answer is not finished."""
        cycle = cast("RequestResponseCycle | None", self.cycle)  # None until the first request's headers are in
        return cycle is not None and not cycle.response_complete and not cycle.more_body

    def _settle(self) -> None:
        if self._serving():
            self._disarm()
            self._guard.serving(self)
        elif self._counted:
            self._guard.waiting(self)

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self._guard.read_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self._serving() or self.transport.is_closing():
            return
        self._guard.timed_out += 1
        cycle = cast("RequestResponseCycle | None", self.cycle)
        headers_done = cycle is not None and not cycle.response_complete
        if self._received and not headers_done:
            self.transport.write(_REQUEST_TIMEOUT)
        self.transport.close()

    def push_out(self) -> None:
        """Make room for a newer connection: this one serves nothing now."""
        self._disarm()
        if not self.transport.is_closing():
            self.transport.abort()


def fit_open_files(max_connections: int) -> tuple[int, int]:
    """Raise the process's open-file limit to fit `max_connections` (as far as the hard limit allows).

    Returns the connections that fit and the listen backlog to use: asyncio accepts up to a backlog's worth of
    connections at once, before any of them can be counted, so that many descriptors must be free as well.
    """
    wanted = max_connections + OTHER_FILES + BACKLOG
    try:
        import resource
    except ImportError:  # Windows: no such limit to raise
        return max_connections, BACKLOG
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return max_connections, BACKLOG
    available = max(0, soft - OTHER_FILES)
    backlog = max(16, min(BACKLOG, available // 4))
    fitting = min(max_connections, max(8, available - backlog))
    if fitting < max_connections:
        logger.warning(
            "FAL_MCP_MAX_CONNECTIONS lowered from %d to %d: this process may open only %d files (ulimit -n)",
            max_connections,
            fitting,
            soft,
        )
    return fitting, backlog
