"""fal's platform API, read: the model listing (search, find, OpenAPI expansion) and pricing. Knows nothing about MCP.

Reference section 7. `GET /v1/models` answers `{"models": [{"endpoint_id", "metadata": {...}, "openapi"?}],
"next_cursor", "has_more"}`; `GET /v1/models/pricing` answers `{"prices": [{"endpoint_id", "unit_price",
"unit", "currency"}]}`. Both are read leniently: fields fal leaves out are None, fields it adds are ignored.
Every request goes through `FalClient.call_api`, so the key only travels to the configured `FAL_API_URL`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fal_mcp.fal.client import FalClient, read_answer
from fal_mcp.fal.endpoint import EndpointId

MAX_PRICED = 50
"""The most endpoint ids one pricing request may name."""


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ModelMetadata(_Lenient):
    display_name: str | None = None
    category: str | None = None
    description: str | None = None
    status: str | None = None


class ModelListing(_Lenient):
    """One endpoint as the platform API lists it."""

    endpoint_id: str
    metadata: ModelMetadata = Field(default_factory=ModelMetadata)
    openapi: dict[str, Any] | None = None


class ModelPage(_Lenient):
    models: list[ModelListing] = Field(default_factory=list[ModelListing])
    next_cursor: str | None = None
    has_more: bool = False


class ListedPrice(_Lenient):
    endpoint_id: str
    unit_price: float | None = None
    unit: str | None = None
    currency: str | None = None


class _PriceList(_Lenient):
    prices: list[ListedPrice] = Field(default_factory=list[ListedPrice])


async def search(
    fal: FalClient, *, query: str | None, category: str | None, limit: int, cursor: str | None
) -> ModelPage:
    """One page of models matching a free-text query and/or a category (every model when neither is given)."""
    params = [("limit", str(limit))]
    params += [(name, value) for name, value in (("q", query), ("category", category), ("cursor", cursor)) if value]
    return read_answer(ModelPage, await fal.call_api("GET", fal.urls.models(params), "model search"), "model search")


async def find(fal: FalClient, endpoint: EndpointId) -> ModelListing | None:
    """The listing of one endpoint with its OpenAPI document embedded, or None when fal does not list it."""
    what = f"model lookup of {endpoint}"
    url = fal.urls.models([("endpoint_id", str(endpoint)), ("expand", "openapi-3.0")])
    page = read_answer(ModelPage, await fal.call_api("GET", url, what), what)
    return next((listing for listing in page.models if listing.endpoint_id == str(endpoint)), None)


async def prices(fal: FalClient, endpoints: Sequence[EndpointId]) -> dict[str, ListedPrice]:
    """Prices by endpoint id, for the endpoints fal can price (others are simply absent)."""
    if not endpoints:
        return {}
    listed = read_answer(_PriceList, await fal.call_api("GET", fal.urls.pricing(endpoints), "pricing"), "pricing")
    return {price.endpoint_id: price for price in listed.prices}
