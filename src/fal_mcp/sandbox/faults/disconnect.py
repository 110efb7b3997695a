"""A "response" that hangs up instead of answering, for the `drop` faults: a clean close or a reset.

ASGI has no message for "close this connection now": a server turns an app that returns without
answering into a 500. Under uvicorn the transport sits behind the `receive` callable (its request
cycle object), so we close it and wait for the `http.disconnect` that follows; uvicorn then sees a
gone client and sends nothing. A clean close sends FIN: the client gets a bare end of stream, a
protocol/read error. A reset first sets `SO_LINGER` to zero, so closing the socket sends RST and
discards anything unsent: the client gets "connection reset by peer", as from a crashed proxy.
Under any other server (e.g. httpx's in-memory ASGI transport) we raise instead, which that
client also surfaces as a failed request.
"""

from __future__ import annotations

import asyncio
import socket
import struct

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

_LINGER_ZERO = struct.pack("ii", 1, 0)
"""`struct linger {l_onoff=1, l_linger=0}`: close() aborts the connection with RST."""


class ConnectionDropped(Exception):
    """Raised to the server when the connection could not be closed directly."""


class DroppedConnection(Response):
    """Close the client's connection without sending a status line; with `reset`, abort it with a TCP RST."""

    def __init__(self, *, reset: bool = False) -> None:
        super().__init__(status_code=500)
        self.reset = reset

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        transport = _transport_behind(receive)
        if transport is None:
            raise ConnectionDropped(f"sandbox fault: connection {'reset' if self.reset else 'dropped'}")
        if self.reset:
            sock: socket.socket | None = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
            transport.abort()
        else:
            transport.close()
        with anyio.move_on_after(2.0):
            while (await receive())["type"] != "http.disconnect":
                pass


def _transport_behind(receive: Receive) -> asyncio.Transport | None:
    cycle: object = getattr(receive, "__self__", None)
    transport: object = getattr(cycle, "transport", None)
    return transport if isinstance(transport, asyncio.Transport) else None
