"""The model catalog: what fal's platform API says about endpoints (listing, schema, price), cached in memory.

An agent asks about the same few models again and again, and every `run-model` looks its endpoint's schema
up to validate the input; without a cache each of those is a round trip to fal. Entries live
`FAL_MCP_MODELS_CACHE_TTL_S` (0 turns caching off).

What one caller's key sees never decides another caller's checks. A listing and its schema are public facts about
a model, so one found listing serves every caller. Anything that may depend on the key is kept per caller (its
partition): an endpoint fal does not list for this key (a private app lists for its owner only), and a lookup fal
refused (401 with a bogus key, 403, 429, ...), so a bogus key can never switch validation off for anyone else.
Only a genuine outage of the platform API (a 5xx, no connection, no answer within `LOOKUP_BUDGET_S`) is
remembered for everyone, briefly, so an unreachable API costs one timeout per minute rather than one per call.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import anyio

from fal_mcp.fal import platform
from fal_mcp.fal.client import FalClient
from fal_mcp.fal.endpoint import EndpointId
from fal_mcp.fal.errors import (
    FalError,
    FalNotFoundError,
    FalProtocolError,
    FalServerError,
    FalTransportError,
    FalValidationError,
)
from fal_mcp.fal.platform import ListedPrice, ModelListing, ModelPage
from fal_mcp.jobs.model_schemas import EndpointSchema, read_endpoint_schema

logger = logging.getLogger(__name__)

FAILURE_TTL_S = 60.0
"""How long a failed lookup is remembered (an outage for everyone, a refusal for its caller): validation is then
skipped, not retried."""
LOOKUP_BUDGET_S = 10.0
"""The longest a schema lookup may hold up a run before the run goes ahead unchecked."""
MAX_ENTRIES = 512

_V = TypeVar("_V")


class _Expiring(Generic[_V]):
    """A small TTL map that forgets its oldest entries first."""

    def __init__(self, ttl_s: float, clock: Callable[[], float]) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, _V]] = OrderedDict()

    def get(self, key: str) -> tuple[bool, _V | None]:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self._clock():
            self._entries.pop(key, None)
            return False, None
        return True, entry[1]

    def put(self, key: str, value: _V, ttl_s: float | None = None) -> None:
        lifetime = self._ttl_s if ttl_s is None else min(ttl_s, self._ttl_s)
        if lifetime <= 0:
            return
        self._entries[key] = (self._clock() + lifetime, value)
        self._entries.move_to_end(key)
        while len(self._entries) > MAX_ENTRIES:
            self._entries.popitem(last=False)


def _mine(partition: str, endpoint: EndpointId) -> str:
    """The cache key of what one caller (its partition) was told about an endpoint."""
    return f"{partition} {endpoint}"


@dataclass(frozen=True)
class ModelDetails:
    """An endpoint as the platform API lists it, with its schema when the OpenAPI document has one."""

    listing: ModelListing
    schema: EndpointSchema | None


class ModelCatalog:
    """Search, details and prices of fal endpoints; details and prices are cached for `ttl_s` seconds."""

    def __init__(self, ttl_s: float = 900.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._details: _Expiring[ModelDetails] = _Expiring(ttl_s, clock)
        """Listings fal gave, by endpoint: the same for every caller."""
        self._unlisted: _Expiring[bool] = _Expiring(ttl_s, clock)
        """Endpoints fal did not list for a caller, by partition and endpoint."""
        self._prices: _Expiring[ListedPrice | None] = _Expiring(ttl_s, clock)
        self._typical_costs: _Expiring[float | None] = _Expiring(ttl_s, clock)
        """fal's figure for a typical call, by endpoint (None: fal has none, or its API is out for a while)."""
        self._outage: _Expiring[bool] = _Expiring(ttl_s, clock)
        """Endpoints whose lookup met an outage of the platform API, for everyone."""
        self._refused: _Expiring[bool] = _Expiring(ttl_s, clock)
        """Lookups fal refused a caller, by partition and endpoint: that caller's key, not the platform."""

    async def search(
        self, fal: FalClient, *, query: str | None, category: str | None, limit: int, cursor: str | None
    ) -> tuple[ModelPage, dict[str, ListedPrice]]:
        """One page of matches and the prices fal knows for them (no prices rather than no answer)."""
        page = await platform.search(fal, query=query, category=category, limit=limit, cursor=cursor)
        endpoints: list[EndpointId] = []
        for listing in page.models:
            try:
                endpoints.append(EndpointId.parse(listing.endpoint_id))
            except ValueError:
                continue  # an id we could not send anyway; list it without a price
        return page, await self._prices_of(fal, endpoints)

    async def details(self, fal: FalClient, endpoint: EndpointId, *, partition: str) -> ModelDetails | None:
        """The endpoint's listing and schema, or None when fal does not list it for the caller of `partition`
        (who pays with `fal`). fal's failures propagate."""
        hit, cached = self._details.get(str(endpoint))
        if hit:
            return cached
        if self._unlisted.get(_mine(partition, endpoint))[0]:
            return None
        listing = await platform.find(fal, endpoint)
        if listing is None:
            self._unlisted.put(_mine(partition, endpoint), True)
            return None
        schema = read_endpoint_schema(listing.openapi) if listing.openapi else None
        details = ModelDetails(listing=listing, schema=schema)
        self._details.put(str(endpoint), details)
        return details

    async def schema_for_checking(
        self, fal: FalClient, endpoint: EndpointId, *, partition: str
    ) -> EndpointSchema | None:
        """The schema to validate an input against, or None: an unknown model or an unreachable API means no
        check, never a failed run."""
        mine = _mine(partition, endpoint)
        if self._outage.get(str(endpoint))[0] or self._refused.get(mine)[0]:
            return None
        details: ModelDetails | None = None
        with anyio.move_on_after(LOOKUP_BUDGET_S) as scope:
            try:
                details = await self.details(fal, endpoint, partition=partition)
            except FalNotFoundError:
                self._unlisted.put(mine, True)
            except (FalServerError, FalTransportError, FalProtocolError) as error:
                logger.info("no schema check for %s: %s", endpoint, error)
                self._outage.put(str(endpoint), True, FAILURE_TTL_S)
            except FalError as error:  # the caller's key or account, not the platform: for this caller only
                logger.info("no schema check for %s with this caller's key: %s", endpoint, error)
                self._refused.put(mine, True, FAILURE_TTL_S)
        if scope.cancelled_caught:
            logger.info("no schema check for %s: the platform API took over %ss", endpoint, LOOKUP_BUDGET_S)
            self._outage.put(str(endpoint), True, FAILURE_TTL_S)
        return details.schema if details is not None else None

    async def price(self, fal: FalClient, endpoint: EndpointId) -> ListedPrice | None:
        return (await self._prices_of(fal, [endpoint])).get(str(endpoint))

    async def typical_cost(self, fal: FalClient, endpoint: EndpointId) -> float | None:
        """fal's estimate of one call's cost from its own history, or None when fal will not say (cached like a
        price; a failed lookup briefly)."""
        key = str(endpoint)
        hit, cost = self._typical_costs.get(key)
        if hit:
            return cost
        cost, lifetime = None, FAILURE_TTL_S  # an outage (or no answer in time) is asked again soon, for everyone
        with anyio.move_on_after(LOOKUP_BUDGET_S):
            try:
                cost, lifetime = await platform.typical_cost(fal, endpoint), None
            except (FalServerError, FalTransportError, FalProtocolError) as error:
                logger.info("no typical cost of %s: %s", endpoint, error)
            except (FalNotFoundError, FalValidationError):
                lifetime = None  # fal has no figure for this model
            except FalError as error:  # this caller's key was refused: not remembered for anyone
                logger.info("no typical cost of %s with this caller's key: %s", endpoint, error)
                return None
        self._typical_costs.put(key, cost, lifetime)
        return cost

    async def _prices_of(self, fal: FalClient, endpoints: Sequence[EndpointId]) -> dict[str, ListedPrice]:
        known: dict[str, ListedPrice] = {}
        missing: list[EndpointId] = []
        for endpoint in endpoints:
            hit, price = self._prices.get(str(endpoint))
            if not hit:
                missing.append(endpoint)
            elif price is not None:
                known[str(endpoint)] = price
        if missing:
            try:
                fetched = await platform.prices(fal, missing[: platform.MAX_PRICED])
            except FalError as error:
                logger.info("no prices: %s", error)  # prices are a courtesy; the listing still answers
                return known
            for endpoint in missing:
                self._prices.put(str(endpoint), fetched.get(str(endpoint)))
            known.update(fetched)
        return known
