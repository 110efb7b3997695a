"""Serving the MCP server over stdio or streamable HTTP.

HTTP binds 127.0.0.1 unless told otherwise and keeps the SDK's DNS-rebinding protection on: the Host and
Origin headers must name this server, so a web page the user visits cannot drive it through their browser.
"""

from __future__ import annotations

import logging
import socket
import sys
from typing import Any

import uvicorn
from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette

from fal_mcp.settings import Settings

logger = logging.getLogger(__name__)

MCP_PATH = "/mcp"
_LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
_LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
_WILDCARD_BINDS = {"0.0.0.0", "::", ""}


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """Host/Origin checking that stays on whatever the bind address: loopback names plus the bound host."""
    hosts = list(_LOOPBACK_HOSTS)
    origins = list(_LOOPBACK_ORIGINS)
    if settings.host not in _WILDCARD_BINDS and settings.host not in ("127.0.0.1", "localhost", "::1"):
        shown = f"[{settings.host}]" if ":" in settings.host else settings.host
        hosts.append(f"{shown}:*")
        origins += [f"http://{shown}:*", f"https://{shown}:*"]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


def build_http_app(server: MCPServer[Any], settings: Settings) -> Starlette:
    """The ASGI app serving streamable HTTP at /mcp (SSE responses, so progress reaches the client)."""
    return server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=settings.stateless,
        json_response=False,
        transport_security=transport_security(settings),
        host=settings.host,
    )


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before serving, so port 0 yields a real port we can announce."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)  # listening before we announce the address: an early client waits in the backlog
    sock.set_inheritable(True)
    return sock


def serve_stdio(server: MCPServer[Any]) -> None:
    server.run("stdio")


def serve_http(server: MCPServer[Any], settings: Settings) -> None:
    app = build_http_app(server, settings)
    sock = bind_socket(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    # One line on stderr, always: how to reach the server (tests with --port 0 read the port from it).
    print(f"fal-mcp: streamable HTTP on http://{shown}:{port}{MCP_PATH}", file=sys.stderr, flush=True)
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
        server_header=False,
    )
    uvicorn.Server(config).run(sockets=[sock])
