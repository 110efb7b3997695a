"""A corporate network on loopback: a CONNECT proxy that records what passes through it, and a TLS front with a
company CA of its own in front of the sandbox (so fal's URLs can be https, signed by a CA no bundle knows).

Both are small real servers on asyncio sockets, run in the test's own event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trustme


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: bytearray | None = None) -> None:
    try:
        while chunk := await reader.read(65536):
            if seen is not None:
                seen.extend(chunk)
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class _Connections:
    """Every connection a server accepted or opened, closed when the server stops."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []

    async def stop(self, server: asyncio.Server) -> None:
        server.close()
        for writer in self.writers:
            with contextlib.suppress(Exception):
                writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)


@dataclass
class Proxy:
    """A CONNECT proxy: `connects` lists each tunnel's target, `tunnelled` every byte clients sent through them."""

    url: str = ""
    connects: list[str] = field(default_factory=list[str])
    refused: list[str] = field(default_factory=list[str])
    """Request lines that were not a CONNECT (answered 405)."""
    tunnelled: bytearray = field(default_factory=bytearray)


@asynccontextmanager
async def connect_proxy() -> AsyncIterator[Proxy]:
    proxy = Proxy()
    connections = _Connections()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.writers.append(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        if method != "CONNECT":
            proxy.refused.append(f"{method} {target}")
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            writer.close()
            return
        proxy.connects.append(target)
        host, _, port = target.rpartition(":")
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        connections.writers.append(upstream_writer)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(_pipe(reader, upstream_writer, proxy.tunnelled), _pipe(upstream_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    proxy.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield proxy
    finally:
        await connections.stop(server)


@dataclass
class TlsFront:
    """https in front of a plain-HTTP server; `plaintext` is every byte clients sent, as decrypted here."""

    origin: str = ""
    ca_file: Path = Path()
    plaintext: bytearray = field(default_factory=bytearray)
    handshakes_failed: int = 0


@asynccontextmanager
async def tls_front(target: str, workdir: Path) -> AsyncIterator[TlsFront]:
    """Serve `target` (`http://127.0.0.1:PORT`) over https with a certificate from a fresh CA (in `ca_file`)."""
    ca = trustme.CA(organization_name="Example Corp Inspection CA")
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf.configure_cert(context)
    front = TlsFront(ca_file=workdir / "corporate-ca.pem")
    ca.cert_pem.write_to_path(str(front.ca_file))
    host, _, port = target.removeprefix("http://").partition(":")
    connections = _Connections()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.writers.append(writer)
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port.split("/")[0]))
        connections.writers.append(upstream_writer)
        await asyncio.gather(_pipe(reader, upstream_writer, front.plaintext), _pipe(upstream_reader, writer))

    def on_error(loop: asyncio.AbstractEventLoop, error: dict[str, object]) -> None:
        if isinstance(error.get("exception"), ssl.SSLError | ConnectionError | OSError):
            front.handshakes_failed += 1  # a client that does not trust our CA: expected in some tests
        else:
            loop.default_exception_handler(error)

    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(on_error)
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    front.origin = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield front
    finally:
        await connections.stop(server)
        loop.set_exception_handler(previous)
