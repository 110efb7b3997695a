"""Argument completion for the resource templates, from the caller's own request history.

A client that offers completion (the Inspector does) can fill `fal://requests/{request_id}` with a recent request
id and `fal://models/{endpoint_id}/schema` with an endpoint already used, by prefix. The SDK's completion hook
is not told who is asking, so wherever the history belongs to each caller (bring-your-own-key, and tokens with a
partition each) it offers nothing rather than risk showing one caller's requests to another.
"""

from __future__ import annotations

from typing import Any

from mcp.server import MCPServer
from mcp.types import Completion, CompletionArgument, CompletionContext, PromptReference, ResourceTemplateReference

from fal_mcp.jobs.state import StateSlot
from fal_mcp.settings import Settings

MAX_VALUES = 100  # the protocol's own cap
SCANNED = 500  # how far back in the history suggestions come from


def _per_caller(settings: Settings) -> bool:
    return settings.auth == "fal-key" or (settings.auth == "token" and settings.token_partition == "per-token")


def register_completions(server: MCPServer[Any], slot: StateSlot, *, request_uri: str, schema_uri: str) -> None:
    @server.completion()
    async def complete(  # pyright: ignore[reportUnusedFunction]
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion | None:
        state = slot.state
        if state is None or not isinstance(ref, ResourceTemplateReference) or _per_caller(state.settings):
            return None
        records = await state.history.recent(state.caller_for(None).partition, limit=SCANNED)
        if ref.uri == request_uri and argument.name == "request_id":
            candidates = [r.request_id for r in records if r.request_id]
        elif ref.uri == schema_uri and argument.name == "endpoint_id":
            candidates = [r.endpoint_id for r in records]
        else:
            return None
        values = [v for v in dict.fromkeys(candidates) if v.startswith(argument.value)]
        return Completion(values=values[:MAX_VALUES], total=len(values), has_more=len(values) > MAX_VALUES)
