"""The platform API's cost side: `POST /v1/models/pricing/estimate` and `GET /v1/models/billing-events`.

Follows reference section 8.2. The estimate takes `{"estimate_type": "unit_price", "endpoints": {id:
{"unit_quantity": n}}}` (price x quantity) or `{"estimate_type": "historical_api_price", "endpoints": {id:
{"call_quantity": n}}}` (what a typical call of the model bills, times n) and answers `{"estimate_type",
"total_cost", "currency"}`; an endpoint it cannot price answers 404. Billing events need an admin key: one event
per successful job of a priced model, `request_id, endpoint_id, timestamp, output_units, unit_price,
percent_discount, cost_estimate_nano_usd`, visible only `lag_s` after the job completed (fal's charges lag).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from fal_mcp.sandbox.models.catalog import Catalog, Model
from fal_mcp.sandbox.models.inputs import Json, JsonObject
from fal_mcp.sandbox.platform.listing import Answer
from fal_mcp.sandbox.queue.jobs import Job

ESTIMATE_TYPES = {"unit_price": "unit_quantity", "historical_api_price": "call_quantity"}
"""Each estimate type and the quantity it reads per endpoint."""


def _typical_units(model: Model) -> float:
    """What one call with the model's defaults bills: the sandbox's stand-in for fal's call history."""
    defaults, _ = model.validate({"prompt": "typical"})
    return model.billed_units(defaults, model.run_s)


def estimate(catalog: Catalog, body: Json) -> Answer:
    """Answer `POST /v1/models/pricing/estimate`."""
    if not isinstance(body, dict):
        return Answer(422, {"detail": "the body must be a JSON object"})
    kind, endpoints = body.get("estimate_type"), body.get("endpoints")
    if not isinstance(kind, str) or kind not in ESTIMATE_TYPES:
        return Answer(422, {"detail": f"estimate_type must be one of {', '.join(ESTIMATE_TYPES)}"})
    if not isinstance(endpoints, dict) or not endpoints:
        return Answer(422, {"detail": "endpoints must map endpoint ids to quantities"})
    quantity_name = ESTIMATE_TYPES[kind]
    total = 0.0
    for endpoint_id, wanted in endpoints.items():
        quantity = wanted.get(quantity_name) if isinstance(wanted, dict) else None
        if not isinstance(quantity, int | float) or isinstance(quantity, bool) or quantity < 0:
            return Answer(422, {"detail": f"endpoints.{endpoint_id}.{quantity_name} must be a number of at least 0"})
        model = catalog.find(endpoint_id)
        if model is None or model.unit_price is None or endpoint_id not in model.endpoint_ids:
            return Answer(404, {"detail": f"No pricing found for endpoint '{endpoint_id}'"})
        per_one = model.unit_price if kind == "unit_price" else model.unit_price * _typical_units(model)
        total += per_one * quantity
    return Answer(200, {"estimate_type": kind, "total_cost": round(total, 9), "currency": "USD"})


@dataclass(frozen=True)
class Billing:
    """How the fake bills: charges appear `lag_s` (clock seconds) after a job completed, less `discount_percent`."""

    lag_s: float
    discount_percent: float


def _event(job: Job, billing: Billing) -> JsonObject:
    model = job.model
    price = model.unit_price or 0.0
    units = model.billed_units(job.cleaned_input, model.run_s)
    finished = datetime.fromtimestamp(job.created_wall + (job.end - job.created_at), UTC)
    cost = units * price * (1 - billing.discount_percent / 100)
    return {
        "request_id": job.request_id,
        "endpoint_id": job.endpoint_id,
        "timestamp": finished.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "output_units": units,
        "unit_price": price,
        "percent_discount": billing.discount_percent,
        "cost_estimate_nano_usd": round(cost * 1e9),
    }


def billing_events(jobs: Iterable[Job], params: Mapping[str, str], now: float, billing: Billing) -> Answer:
    """Answer `GET /v1/models/billing-events` (filters `request_id`, `endpoint_id`), oldest first."""
    request_id, endpoint_id = params.get("request_id"), params.get("endpoint_id")
    events: list[Json] = []
    for job in sorted(jobs, key=lambda job: job.end):
        if request_id is not None and job.request_id != request_id:
            continue
        if endpoint_id is not None and job.endpoint_id != endpoint_id:
            continue
        if job.model.unit_price is None or now < job.end + billing.lag_s:
            continue
        outcome = job.outcome()
        if outcome is None or outcome.status_code != 200:
            continue  # fal bills successful outputs only
        events.append(_event(job, billing))
    return Answer(200, {"billing_events": events, "next_cursor": None, "has_more": False})
