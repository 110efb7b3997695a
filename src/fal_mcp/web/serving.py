"""Serving the HTTP app (MCP over streamable HTTP, REST, health) with uvicorn, and draining it at shutdown.

HTTP binds 127.0.0.1 unless told otherwise and keeps the SDK's DNS-rebinding protection on: the Host and
Origin headers must name this server, so a web page the user visits cannot drive it through their browser.
Connections are limited in number and in the time a request may take to arrive (`web.connections`).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import socket
import sys
from types import FrameType
from urllib.parse import urlsplit

import uvicorn
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp

from fal_mcp.calls import calls
from fal_mcp.logs import announce
from fal_mcp.settings import Settings, split_list
from fal_mcp.web.connections import ConnectionGuard, fit_open_files

logger = logging.getLogger(__name__)

MCP_PATH = "/mcp"
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
# Each with and without a port: on port 80 a client sends `Host: localhost`, with no port at all.
_LOOPBACK_HOSTS = [pattern for name in _LOOPBACK_NAMES for pattern in (name, f"{name}:*")]
_LOOPBACK_ORIGINS = [pattern for name in _LOOPBACK_NAMES for pattern in (f"http://{name}", f"http://{name}:*")]
_WILDCARD_BINDS = {"0.0.0.0", "::", ""}
_PORT = re.compile(r"(?<!:):[0-9]+$")


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """Host/Origin checking that stays on whatever the bind address: loopback names plus the bound host, plus
    `FAL_MCP_ALLOWED_HOSTS` / `FAL_MCP_ALLOWED_ORIGINS` (the names a reverse proxy passes on) and the host of
    `FAL_MCP_PUBLIC_URL`."""
    hosts = list(_LOOPBACK_HOSTS)
    origins = list(_LOOPBACK_ORIGINS)
    if settings.host not in _WILDCARD_BINDS and settings.host not in ("127.0.0.1", "localhost", "::1"):
        shown = f"[{settings.host}]" if ":" in settings.host else settings.host
        hosts += [shown, f"{shown}:*"]
        origins += [f"{scheme}://{shown}{port}" for scheme in ("http", "https") for port in ("", ":*")]
    hosts += [pattern for host in split_list(settings.allowed_hosts) for pattern in _any_port(host)]
    origins += [pattern for origin in split_list(settings.allowed_origins) for pattern in _any_port(origin)]
    if settings.public_url:  # the name the operator says clients reach us by is ours
        public = urlsplit(settings.public_url)
        hosts += _any_port(public.netloc)
        origins += _any_port(f"{public.scheme}://{public.netloc}")
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


def _any_port(value: str) -> list[str]:
    """`mcp.example.com` (no port given) matches that name with and without a port; a given port stays exact."""
    value = value.rstrip("/")
    if value.endswith(":*") or _PORT.search(value):
        return [value]
    return [value, f"{value}:*"]


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before serving, so port 0 yields a real port we can announce."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio sets TCP_NODELAY only on such sockets (and the connections they accept); without
    # it each SSE answer waits ~40 ms on Nagle + delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)  # listening before we announce the address: an early client waits in the backlog
    sock.set_inheritable(True)
    return sock


class DrainingServer(uvicorn.Server):
    """uvicorn, plus: the drain begins the moment SIGTERM (or Ctrl+C) arrives, before uvicorn waits for the calls
    in flight, so the calls waiting on a fal job answer with its handle within the grace period."""

    _loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(calls.begin_drain)
        super().handle_exit(sig, frame)


def _bind_problem(host: str, port: int, error: OSError) -> str:
    """One line saying why the address cannot be served, naming the flag that changes it."""
    if error.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is already in use: stop what holds it, or choose another port with --port "
            "(FAL_MCP_PORT; --port 0 picks a free one)"
        )
    if error.errno == errno.EACCES:
        return (
            f"not allowed to listen on port {port} on {host} (ports below 1024 need privileges): choose another "
            "with --port (FAL_MCP_PORT)"
        )
    if error.errno == errno.EADDRNOTAVAIL or isinstance(error, socket.gaierror):
        return f"cannot listen on {host}: no such address on this machine; check --host (FAL_MCP_HOST)"
    return f"cannot listen on {host} port {port} ({error.strerror or error}): check --host and --port"


def serve_http(app: ASGIApp, settings: Settings) -> None:
    """Serve `app` (see `fal_mcp.web.app`) until SIGTERM, then drain for at most `shutdown_grace_s`."""
    try:
        sock = bind_socket(settings.host, settings.port)
    except OSError as error:
        print(f"fal-mcp: {_bind_problem(settings.host, settings.port, error)}", file=sys.stderr)
        raise SystemExit(1) from None
    max_connections, backlog = fit_open_files(settings.max_connections)
    guard = ConnectionGuard(max_connections=max_connections, read_timeout_s=settings.request_read_timeout_s)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    # One line on stderr, always: how to reach the server (tests with --port 0 read the port from it).
    announce(f"fal-mcp: streamable HTTP on http://{shown}:{port}{MCP_PATH}", settings.log_format)
    if settings.rest:
        announce(f"fal-mcp: REST on http://{shown}:{port}/v1/models (OpenAPI at /openapi.json)", settings.log_format)
    config = uvicorn.Config(
        app,
        http=guard.protocol(),
        backlog=backlog,
        ws="none",  # nothing here speaks websocket; an upgrade stays a plain HTTP request, refused by the gate
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=settings.shutdown_grace_s,
        server_header=False,
    )
    DrainingServer(config).run(sockets=[sock])
