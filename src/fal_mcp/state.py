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

from fal_mcp.auth import caller_key
from fal_mcp.catalog import ModelCatalog
from fal_mcp.client import FalClient
from fal_mcp.guards import Guards
from fal_mcp.history import History
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
    history: History
    guards: Guards = field(init=False)
    catalog: ModelCatalog = field(default_factory=ModelCatalog)
    """What fal's platform API says about models (schemas, prices), cached."""
    storage: FalStorage = field(default_factory=FalStorage)
    """Uploads to fal's storage (CDN tokens cached per key)."""

    def __post_init__(self) -> None:
        self.guards = Guards.from_settings(self.settings)

    def caller(self, ctx: Context[Any, Any]) -> Caller:
        """Who pays for this call: the key the HTTP gate accepted from the caller (`--auth fal-key`), else ours."""
        return self.caller_for(caller_key(ctx))

    def caller_for(self, key: SecretStr | None) -> Caller:
        """The server's own key pays when `key` is None; else `key`, over the same connection pool."""
        if key is None:
            return Caller(fal=self.fal, partition=partition_of(self.settings.key))
        return Caller(fal=self.fal.with_key(key), partition=partition_of(key))


@dataclass
class StateSlot:
    """Where the HTTP app finds the lifespan's `AppState` (REST calls and readiness live outside MCP calls)."""

    state: AppState | None = None


def app_state(ctx: Context[Any, Any]) -> AppState:
    state = ctx.request_context.lifespan_context
    if not isinstance(state, AppState):
        raise RuntimeError("fal-mcp's lifespan did not run")
    return state
