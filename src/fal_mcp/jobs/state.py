"""What the server opens once per process, and who is calling.

`AppState` is what the MCP lifespan yields: the settings, the one fal client, the store (the history, the guards'
counts, tasks, deliveries), the guards, the catalog. Each part is made on first use, not at start: a client waits for the first `tools/list` while the server
starts, and that answer needs none of them (`tests/test_performance.py` keeps them out of a start). `Caller` is
the identity a tool call acts as: the `FalClient` view that pays for it and the partition its records live in. A
partition is a hash of the key, never the key itself, so records of one key are never shown to another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from pydantic import SecretStr

from fal_mcp.logs import redactor
from fal_mcp.settings import Settings

if TYPE_CHECKING:
    import httpx

    from fal_mcp.fal.client import FalClient
    from fal_mcp.fal.storage import FalStorage
    from fal_mcp.fal.webhooks import SigningKeys
    from fal_mcp.jobs.catalog import ModelCatalog
    from fal_mcp.jobs.cost.charges import Charges
    from fal_mcp.jobs.cost.limits import Budget, CostLimits
    from fal_mcp.jobs.guards import Guards
    from fal_mcp.jobs.waiting import Followers
    from fal_mcp.media.previews import PreviewCache
    from fal_mcp.store.history import History
    from fal_mcp.store.opening import Store

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


class AppState:
    """What every tool call of this process shares, each part made on first use; `aclose()` closes what was.

    `transport` routes fal traffic without sockets (tests); `fal` and `store` may be given ready-made.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        fal: FalClient | None = None,
        store: Store | None = None,
    ) -> None:
        self.settings = settings
        self._transport = transport
        if settings.admin_key is not None:  # a secret from the start, though the charges it reads come later
            redactor.add(settings.admin_key.get_secret_value())
        if fal is not None:
            self.__dict__["fal"] = fal
        if store is not None:
            self.__dict__["store"] = store

    @cached_property
    def fal(self) -> FalClient:
        """The process's one fal client; its pools open on the first request."""
        from fal_mcp.fal.client import FalClient

        return FalClient.create(self.settings, transport=self._transport)

    @cached_property
    def store(self) -> Store:
        """Everything kept (SQLite in the state folder, or PostgreSQL shared by replicas), opened on first use: then
        it settles lost submits and starts its upkeep (heartbeat, pruning)."""
        from fal_mcp.store.opening import open_store

        store = open_store(self.settings)
        store.start()
        return store

    @property
    def history(self) -> History:
        """The request history, in the store."""
        return self.store.history

    @cached_property
    def guards(self) -> Guards:
        from fal_mcp.jobs.guards import Guards

        return Guards.from_settings(self.settings, self.store.counters)

    @cached_property
    def limits(self) -> CostLimits:
        """What a call may cost (caps, confirmation threshold)."""
        from fal_mcp.jobs.cost.limits import CostLimits

        return CostLimits.from_settings(self.settings)

    @cached_property
    def charges(self) -> Charges:
        """What fal charged, fetched lazily with the admin key."""
        from fal_mcp.jobs.cost.charges import Charges

        return Charges(self.history, self.fal, self.settings.admin_key)

    @cached_property
    def budget(self) -> Budget:
        """Each key's daily budget, counted in the history."""
        from fal_mcp.jobs.cost.limits import Budget

        return Budget(self.history, self.limits.daily, refresh=self.charges.refresh)

    @cached_property
    def catalog(self) -> ModelCatalog:
        """What fal's platform API says about models (schemas, prices), cached."""
        from fal_mcp.jobs.catalog import ModelCatalog

        return ModelCatalog(self.settings.models_cache_ttl_s)

    @cached_property
    def storage(self) -> FalStorage:
        """Uploads to fal's storage (CDN tokens cached per key)."""
        from fal_mcp.fal.storage import FalStorage

        return FalStorage()

    @cached_property
    def followers(self) -> Followers:
        """The requests being waited on: waits on the same request with the same key and partition share one."""
        from fal_mcp.jobs.waiting import Followers

        return Followers()

    @cached_property
    def previews(self) -> PreviewCache:
        """Previews of output images already made (a `get-result` of a finished request reuses them)."""
        from fal_mcp.media.previews import PreviewCache

        return PreviewCache()

    @cached_property
    def webhook_keys(self) -> SigningKeys:
        """fal's webhook signing keys (`FAL_MCP_WEBHOOK_JWKS_URL`), fetched through the pool that holds no key."""
        from fal_mcp.fal.webhooks import SigningKeys

        return SigningKeys(self.settings.webhook_jwks_url, self.fal.public_http)

    def opened(self, part: str) -> bool:
        """Whether `part` ("fal", "store", ...) has been made yet."""
        return part in self.__dict__

    async def aclose(self) -> None:
        """Close what was opened, and only that: the fal client's pools, then the store."""
        try:
            if self.opened("fal"):
                await self.fal.aclose()
        finally:
            if self.opened("store"):
                await anyio.to_thread.run_sync(self.store.close)  # its upkeep thread may be mid-statement

    @cached_property
    def _own_caller(self) -> Caller:
        return Caller(fal=self.fal, partition=partition_of(self.settings.key))

    def caller_for(self, identity: Identity | None) -> Caller:
        """Who a call acts as: the caller's own key over the same connection pool when it brought one, else the
        server's key, in the partition of the key that pays (or the one the identity names)."""
        if identity is not None and identity.key is not None:
            return Caller(fal=self.fal.with_key(identity.key), partition=partition_of(identity.key))
        if identity is not None and identity.partition is not None:
            return Caller(fal=self.fal, partition=identity.partition, confined=True)
        return self._own_caller  # the same on every call: hashed once


@dataclass
class StateSlot:
    """Where the HTTP app finds the lifespan's `AppState` (REST calls and readiness live outside MCP calls)."""

    state: AppState | None = None
