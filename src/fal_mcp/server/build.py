"""Builds the MCP server: the lifespan that owns the fal connection pool, and the tool registrations.

`create_server(settings)` is a factory rather than a module global so tests can build as many servers as they
like, each against its own fake fal. The tools and their annotations are declared next to their code
(`fal_mcp.server.tools`), the prompts in `fal_mcp.server.prompts`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

import anyio
import httpx
from mcp.server import MCPServer

from fal_mcp import __version__
from fal_mcp.fal.client import FalClient
from fal_mcp.jobs.catalog import ModelCatalog
from fal_mcp.jobs.history import Retention, resolve_state_dir
from fal_mcp.jobs.history import opened as opened_history
from fal_mcp.jobs.state import AppState, StateSlot
from fal_mcp.server.completions import register_completions
from fal_mcp.server.prompts import register_prompts
from fal_mcp.server.redaction import ScrubSecrets
from fal_mcp.server.tasks import TasksExtension
from fal_mcp.server.tools import ALL_TOOLS
from fal_mcp.server.tools.history import REQUEST_URI, request_resource
from fal_mcp.server.tools.models import SCHEMA_RESOURCE, register_model_resources
from fal_mcp.server.view import view_extension
from fal_mcp.settings import Settings

INSTRUCTIONS = (
    "Runs fal.ai generative models (image, video, audio, text). search-models finds one, get-model-schema "
    "lists its input fields, upload-file turns a local file into a URL a model can read. "
    "run-model runs one and returns its output; "
    "for slow models it returns a request_id after wait_s, to continue with get-result. submit queues without "
    "waiting; get-status, get-result and cancel take that request_id and the same endpoint_id."
)


def create_server(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None, slot: StateSlot | None = None
) -> MCPServer[AppState]:
    """An MCP server exposing the fal tools; `transport` lets tests route fal traffic without sockets.

    `slot`, when given, holds the `AppState` while the lifespan runs (the HTTP app's REST and readiness use it).
    """
    slot = slot if slot is not None else StateSlot()

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncGenerator[AppState]:
        with opened_history(resolve_state_dir(settings.state_dir), Retention.from_settings(settings)) as history:
            async with FalClient.open(settings, transport=transport) as fal, anyio.create_task_group() as background:
                state = AppState(
                    settings=settings, fal=fal, history=history, catalog=ModelCatalog(settings.models_cache_ttl_s)
                )
                tasks.attach(background)
                slot.state = state
                try:
                    yield state
                finally:
                    slot.state = None
                    tasks.attach(None)
                    background.cancel_scope.cancel()  # a running task is stopped, at fal too

    tasks = TasksExtension()
    server: MCPServer[AppState] = MCPServer(
        "fal-mcp",
        title="fal.ai",
        version=__version__,
        instructions=INSTRUCTIONS,
        website_url="https://fal.ai",
        lifespan=lifespan,
        log_level=settings.log_level,
        extensions=[tasks, view_extension(settings)],
        tools=[spec.tool() for spec in ALL_TOOLS],
    )
    server.middleware.insert(0, ScrubSecrets())  # outermost: the last to touch every answer
    register_model_resources(server)
    register_prompts(server)
    server.resource(
        REQUEST_URI,
        name="fal request",
        title="A request from the history",
        description="One request this server sent to fal: endpoint, state, error, media URLs, input summary",
        mime_type="application/json",
    )(request_resource)
    register_completions(server, slot, request_uri=REQUEST_URI, schema_uri=SCHEMA_RESOURCE)
    return server
