"""What a tool reads from its MCP request context: the process's `AppState`, and who is calling.

The HTTP gate leaves the caller's `Identity` in the ASGI scope of the HTTP request that carried the message; a
tool finds that request in its context (over stdio there is none, and the server's own key pays). Reading it per
request, not from a context variable, matters: a stateful MCP session serves every request in a task made by
its first one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcp.server.mcpserver import Context
from pydantic import SecretStr

from fal_mcp.jobs.state import AppState, Caller, Identity, identity_of


def app_state(ctx: Context[Any, Any]) -> AppState:
    state = ctx.request_context.lifespan_context
    if not isinstance(state, AppState):
        raise RuntimeError("fal-mcp's lifespan did not run")
    return state


def caller_identity(ctx: Context[Any, Any]) -> Identity | None:
    """Who sent this MCP request, as the HTTP gate accepted it; None over stdio (and with `--auth none`)."""
    request: Any = ctx.request_context.request  # the HTTP request carrying this message; None over stdio
    scope: Mapping[str, Any] | None = getattr(request, "scope", None)
    return identity_of(scope)


def caller_key(ctx: Context[Any, Any]) -> SecretStr | None:
    """The caller's own fal key for this MCP request (`--auth fal-key`), or None: the server's key pays."""
    identity = caller_identity(ctx)
    return identity.key if identity is not None else None


def caller_of(ctx: Context[Any, Any]) -> Caller:
    """Who pays for this call and whose records it sees: the caller's own key (`--auth fal-key`), else ours, in
    the caller's partition (`--auth token`: its token's)."""
    return app_state(ctx).caller_for(caller_identity(ctx))
