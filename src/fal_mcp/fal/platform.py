"""fal's platform API, read: the model listing (search, find, OpenAPI expansion), prices, estimates and charges.
Knows nothing about MCP.

Reference sections 7 and 8.2. `GET /v1/models` answers `{"models": [{"endpoint_id", "metadata": {...}, "openapi"?}],
"next_cursor", "has_more"}`; `GET /v1/models/pricing` answers `{"prices": [{"endpoint_id", "unit_price",
"unit", "currency"}]}`; `POST /v1/models/pricing/estimate` answers `{"estimate_type", "total_cost", "currency"}`;
`GET /v1/models/billing-events` (an admin key only) answers `{"billing_events": [...]}`, one event per charge. All are
read leniently: fields fal leaves out are None, fields it adds are ignored. Every request goes through
`FalClient.call_api`, so a key only travels to the configured `FAL_API_URL`.
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


class _Estimate(_Lenient):
    total_cost: float | None = None
    currency: str | None = None


class BillingEvent(_Lenient):
    """One charge (reference 8.2; the cost fields as several third-party clients read them)."""

    request_id: str | None = None
    endpoint_id: str | None = None
    timestamp: str | None = None
    output_units: float | None = None
    unit_price: float | None = None
    percent_discount: float | None = None
    cost_estimate_nano_usd: float | None = None
    cost_total: float | None = None

    def cost_usd(self) -> float | None:
        """What was charged, in USD: `cost_estimate_nano_usd` (fal's total, in nano-dollars), else `cost_total`,
        else units x price less the discount; None when the event says none of these."""
        if self.cost_estimate_nano_usd is not None:
            return self.cost_estimate_nano_usd / 1e9
        if self.cost_total is not None:
            return self.cost_total
        if self.output_units is not None and self.unit_price is not None:
            return self.output_units * self.unit_price * (1 - (self.percent_discount or 0.0) / 100)
        return None


class _BillingEvents(_Lenient):
    billing_events: list[BillingEvent] = Field(default_factory=list[BillingEvent])


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


async def typical_cost(fal: FalClient, endpoint: EndpointId) -> float | None:
    """What one call of the endpoint costs by fal's own history (`historical_api_price`), in USD; None when fal
    answers without a USD figure. fal's refusals (an unknown price, a key not allowed to ask) propagate."""
    what = f"cost estimate of {endpoint}"
    body = {"estimate_type": "historical_api_price", "endpoints": {str(endpoint): {"call_quantity": 1}}}
    answer = await fal.call_api("POST", fal.urls.pricing_estimate(), what, json_body=body)
    estimate = read_answer(_Estimate, answer, what)
    if estimate.currency not in (None, "USD"):
        return None
    return estimate.total_cost


async def charges(admin: FalClient, request_id: str) -> list[BillingEvent]:
    """fal's billing events of one request (`admin` must pay with an admin key); empty while none is recorded."""
    what = f"billing events of {request_id}"
    events = read_answer(_BillingEvents, await admin.call_api("GET", admin.urls.billing_events(request_id), what), what)
    return [event for event in events.billing_events if event.request_id in (None, request_id)]
