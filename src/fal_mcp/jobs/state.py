"""What the server opens once per process, and who is calling.

`AppState` is what the MCP lifespan yields: the settings and the one fal connection pool. `Caller` is the
identity a tool call acts as: the `FalClient` view that pays for it and the partition its records live in.
A partition is a hash of the key, never the key itself, so records of one key are never shown to another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from fal_mcp.fal.client import FalClient
from fal_mcp.fal.storage import FalStorage
from fal_mcp.jobs.catalog import ModelCatalog
from fal_mcp.jobs.cost.charges import Charges
from fal_mcp.jobs.cost.limits import Budget, CostLimits
from fal_mcp.jobs.guards import Guards
from fal_mcp.jobs.history import History
from fal_mcp.settings import Settings

IDENTITY_SCOPE_KEY = "fal_mcp.identity"
"""Where the HTTP gate leaves the `Identity` it accepted, in the ASGI scope of each request."""


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated HTTP caller: `key` is the fal key that pays (None: the server's), `principal` names it."""

    principal: str
    key: SecretStr | None = None
    partition: str | None = None
    """Where its records live when the server's key pays for it (`--auth token`: one partition per token);
    None: the partition of the key that pays."""


def identity_of(scope: Mapping[str, Any] | None) -> Identity | None:
    """The identity the gate left in an ASGI scope."""
    found = scope.get(IDENTITY_SCOPE_KEY) if scope is not None else None
    return found if isinstance(found, Identity) else None


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
    confined: bool = False
    """One of several callers sharing the server's key (a token's holder, a signed-in user): fal would show it any
    request that key made, so it may follow and cancel only the requests its own partition of the history holds."""


@dataclass
class AppState:
    """What the lifespan opens once per process and every tool call shares."""

    settings: Settings
    fal: FalClient
    history: History
    guards: Guards = field(init=False)
    limits: CostLimits = field(init=False)
    """What a call may cost (caps, confirmation threshold)."""
    charges: Charges = field(init=False)
    """What fal charged, fetched lazily with the admin key."""
    budget: Budget = field(init=False)
    """Each key's daily budget, counted in the history."""
    catalog: ModelCatalog = field(default_factory=ModelCatalog)
    """What fal's platform API says about models (schemas, prices), cached."""
    storage: FalStorage = field(default_factory=FalStorage)
    """Uploads to fal's storage (CDN tokens cached per key)."""

    def __post_init__(self) -> None:
        self.guards = Guards.from_settings(self.settings)
        self.limits = CostLimits.from_settings(self.settings)
        self.charges = Charges(self.history, self.fal, self.settings.admin_key)
        self.budget = Budget(self.history, self.limits.daily, refresh=self.charges.refresh)

    def caller_for(self, identity: Identity | None) -> Caller:
        """Who a call acts as: the caller's own key over the same connection pool when it brought one, else the
        server's key, in the partition of the key that pays (or the one the identity names)."""
        if identity is not None and identity.key is not None:
            return Caller(fal=self.fal.with_key(identity.key), partition=partition_of(identity.key))
        if identity is not None and identity.partition is not None:
            return Caller(fal=self.fal, partition=identity.partition, confined=True)
        return Caller(fal=self.fal, partition=partition_of(self.settings.key))


@dataclass
class StateSlot:
    """Where the HTTP app finds the lifespan's `AppState` (REST calls and readiness live outside MCP calls)."""

    state: AppState | None = None
