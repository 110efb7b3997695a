"""A "response" that hangs up instead of answering, for the `drop` faults.

ASGI has no message for "close this connection now": a server turns an app that returns without
answering into a 500. Under uvicorn the transport sits behind the `receive` callable (its request
cycle object), so we close it and wait for the `http.disconnect` that follows; uvicorn then sees a
gone client and sends nothing. The client gets a bare connection close: a protocol/read error.
Under any other server (e.g. httpx's in-memory ASGI transport) we raise instead, which that
client also surfaces as a failed request.
"""

from __future__ import annotations

import asyncio

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send


class ConnectionDropped(Exception):
    """Raised to the server when the connection could not be closed directly."""


class DroppedConnection(Response):
    """Close the client's connection without sending a status line."""

    def __init__(self) -> None:
        super().__init__(status_code=500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        transport = _transport_behind(receive)
        if transport is None:
            raise ConnectionDropped("sandbox fault: connection dropped")
        transport.close()
        with anyio.move_on_after(2.0):
            while (await receive())["type"] != "http.disconnect":
                pass


def _transport_behind(receive: Receive) -> asyncio.Transport | None:
    cycle: object = getattr(receive, "__self__", None)
    transport: object = getattr(cycle, "transport", None)
    return transport if isinstance(transport, asyncio.Transport) else None
