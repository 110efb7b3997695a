"""Builds the MCP server: the lifespan that owns the shared state, and the tool and resource registrations.

`create_server(settings)` is a factory rather than a module global so tests can build as many servers as they
like, each against its own fake fal. The tools and their annotations are declared next to their code
(`fal_mcp.server.tools`), the prompts in `fal_mcp.server.prompts`.

Nothing here waits for what the first `tools/list` does not need: the tools and prompts are registered from their
precomputed listing (`server.listing`) and built on first use, the resources import what serves them on first
read, and the lifespan's state opens the fal client, the history and the rest on first use.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context, RequestStateSecurity

from fal_mcp import __version__
from fal_mcp.jobs.state import AppState, StateSlot
from fal_mcp.server.completions import register_completions
from fal_mcp.server.listing import deferred_prompts, deferred_tools
from fal_mcp.server.redaction import ScrubSecrets
from fal_mcp.server.tasks import TasksExtension
from fal_mcp.server.view import view_extension
from fal_mcp.settings import Settings

if TYPE_CHECKING:
    import httpx

INSTRUCTIONS = (
    "Runs fal.ai generative models (image, video, audio, text). search-models finds one, get-model-schema "
    "lists its input fields, upload-file turns a local file into a URL a model can read. "
    "run-model runs one and returns its output; "
    "for slow models it returns a request_id after wait_s, to continue with get-result. submit queues without "
    "waiting; get-status, get-result and cancel take that request_id and the same endpoint_id."
)
SCHEMA_RESOURCE = "fal://models/{+endpoint_id}/schema"
REQUEST_URI = "fal://requests/{request_id}"


async def model_schema(endpoint_id: str, ctx: Context[Any, Any]) -> str:
    from fal_mcp.server.tools.models import model_schema_resource  # the catalog, on the first read

    return await model_schema_resource(endpoint_id, ctx)


async def request_record(request_id: str, ctx: Context[Any, Any]) -> str:
    from fal_mcp.server.tools.history import request_resource  # the history's tools, on the first read

    return await request_resource(request_id, ctx)


SERVER_NAME = "fal-mcp"
"""Also the audience of sealed request state: replicas that share a secret must share this name too."""


def request_state_security(settings: Settings) -> RequestStateSecurity | None:
    """How multi-round-trip request state (an elicitation's answer on 2026-07-28) is sealed: with
    `FAL_MCP_STATE_SECRET`, the same on every replica, so the answer may reach any of them; without it, the SDK's key
    of this process alone (one process, or sticky routing)."""
    if settings.state_secret is None:
        return None
    return RequestStateSecurity(keys=[settings.state_secret.get_secret_value()])


def create_server(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None, slot: StateSlot | None = None
) -> MCPServer[AppState]:
    """An MCP server exposing the fal tools; `transport` lets tests route fal traffic without sockets.

    `slot`, when given, holds the `AppState` while the lifespan runs (the HTTP app's REST and readiness use it).
    """
    slot = slot if slot is not None else StateSlot()

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncGenerator[AppState]:
        state = AppState(settings, transport=transport)  # opens nothing yet: each part on first use
        try:
            async with anyio.create_task_group() as background:
                tasks.attach(background)
                slot.state = state
                try:
                    yield state
                finally:
                    slot.state = None
                    tasks.attach(None)
                    background.cancel_scope.cancel()  # a running task is stopped, at fal too
        finally:
            with anyio.CancelScope(shield=True):
                await state.aclose()

    tasks = TasksExtension()
    server: MCPServer[AppState] = MCPServer(
        SERVER_NAME,
        title="fal.ai",
        version=__version__,
        instructions=INSTRUCTIONS,
        website_url="https://fal.ai",
        lifespan=lifespan,
        log_level=settings.log_level,
        extensions=[tasks, view_extension(settings)],
        tools=deferred_tools(),
        request_state_security=request_state_security(settings),
    )
    server.middleware.insert(0, ScrubSecrets())  # outermost: the last to touch every answer
    server.resource(
        SCHEMA_RESOURCE,
        name="model-schema",
        title="fal model schema",
        description="Input fields, output fields and price of one fal endpoint, e.g. fal://models/fal-ai/flux/schnell/schema",
        mime_type="application/json",
    )(model_schema)
    for prompt in deferred_prompts():
        server.add_prompt(prompt)
    server.resource(
        REQUEST_URI,
        name="fal request",
        title="A request from the history",
        description="One request this server sent to fal: endpoint, state, error, media URLs, input summary",
        mime_type="application/json",
    )(request_record)
    register_completions(server, slot, request_uri=REQUEST_URI, schema_uri=SCHEMA_RESOURCE)
    return server
