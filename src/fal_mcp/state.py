"""What the server opens once per process, and who is calling.

`AppState` is what the MCP lifespan yields: the settings and the one fal connection pool. `Caller` is the
identity a tool call acts as: the `FalClient` view that pays for it and the partition its records live in.
A partition is a hash of the key, never the key itself, so records of one key are never shown to another.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from mcp.server.mcpserver import Context
from pydantic import SecretStr

from fal_mcp.catalog import ModelCatalog
from fal_mcp.client import FalClient
from fal_mcp.settings import Settings
from fal_mcp.storage import FalStorage


def partition_of(key: SecretStr | None) -> str:
    """A stable, non-reversible name for a key's share of anything we keep."""
    if key is None:
        return "no-key"
    return hashlib.sha256(b"fal-mcp:" + key.get_secret_value().encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Caller:
    """The identity one tool call acts as."""

    fal: FalClient
    partition: str


@dataclass
class AppState:
    """What the lifespan opens once per process and every tool call shares."""

    settings: Settings
    fal: FalClient
    catalog: ModelCatalog = field(default_factory=ModelCatalog)
    """What fal's platform API says about models (schemas, prices), cached."""
    storage: FalStorage = field(default_factory=FalStorage)
    """Uploads to fal's storage (CDN tokens cached per key)."""

    def caller(self, ctx: Context[Any, Any]) -> Caller:
        """The server's own key pays (stdio, or HTTP with the server's key)."""
        return Caller(fal=self.fal, partition=partition_of(self.settings.key))


def app_state(ctx: Context[Any, Any]) -> AppState:
    state = ctx.request_context.lifespan_context
    if not isinstance(state, AppState):
        raise RuntimeError("fal-mcp's lifespan did not run")
    return state
