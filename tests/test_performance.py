"""What keeps fal-mcp fast, checked by what it does rather than by timing it (the figures are `bench/`'s).

- Connections accepted by the HTTP transport skip Nagle's algorithm (else each answer waits ~40 ms).
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from fal_mcp.transports import bind_socket


@pytest.mark.anyio
async def test_http_connections_skip_nagle() -> None:
    sock = bind_socket("127.0.0.1", 0)
    nodelay: asyncio.Queue[int] = asyncio.Queue()

    async def accepted(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nodelay.put_nowait(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(accepted, sock=sock)
    async with server:
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        assert await asyncio.wait_for(nodelay.get(), 5) != 0
        writer.close()
