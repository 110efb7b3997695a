"""Builds the MCP server: the lifespan that owns the fal connection pool, and the tool registrations.

`create_server(settings)` is a factory rather than a module global so tests can build as many servers as they
like, each against its own fake fal. Tool annotations follow the contract: only get-status and get-result are
read-only; cancel is destructive; every tool reaches the open world (fal).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

import httpx
from mcp.server import MCPServer
from mcp.types import ToolAnnotations

from fal_mcp import __version__, tools
from fal_mcp.client import FalClient
from fal_mcp.settings import Settings
from fal_mcp.tools import AppState

INSTRUCTIONS = (
    "Runs fal.ai generative models (image, video, audio, text). run-model runs one and returns its output; "
    "for slow models it returns a request_id after wait_s, to continue with get-result. submit queues without "
    "waiting; get-status, get-result and cancel take that request_id and the same endpoint_id."
)


def _hints(*, read_only: bool, destructive: bool, idempotent: bool, title: str) -> ToolAnnotations:
    return ToolAnnotations(
        title=title,
        read_only_hint=read_only,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        open_world_hint=True,
    )


def create_server(settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> MCPServer[AppState]:
    """An MCP server exposing the fal tools; `transport` lets tests route fal traffic without sockets."""

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncGenerator[AppState]:
        async with FalClient.open(settings, transport=transport) as fal:
            yield AppState(settings=settings, fal=fal)

    server: MCPServer[AppState] = MCPServer(
        "fal-mcp",
        title="fal.ai",
        version=__version__,
        instructions=INSTRUCTIONS,
        website_url="https://fal.ai",
        lifespan=lifespan,
        log_level=settings.log_level,
    )
    registrations = [
        (tools.run_model, "run-model", "Run a fal model", False, False, False),
        (tools.submit, "submit", "Queue a fal request", False, False, False),
        (tools.get_status, "get-status", "Status of a fal request", True, False, True),
        (tools.get_result, "get-result", "Result of a fal request", True, False, True),
        (tools.cancel, "cancel", "Cancel a fal request", False, True, True),
    ]
    for fn, name, title, read_only, destructive, idempotent in registrations:
        server.add_tool(
            fn,
            name=name,
            title=title,
            annotations=_hints(read_only=read_only, destructive=destructive, idempotent=idempotent, title=title),
        )
    return server
