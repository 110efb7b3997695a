"""What a call will cost, worked out before anything is sent to fal.

The price comes from the catalog (fal's pricing API, cached like schemas), the quantity from the input (`units`),
with the schema's defaults for the fields the input leaves out. Where the unit is one no input tells (a price per
GPU-second, per token), fal's own estimate of a typical call of the model is asked for instead (`POST
/v1/models/pricing/estimate`, historical, cached like a price). A unit the input could tell but does not (no size
given, none to default to) is not papered over with a typical call: the estimate is None and `basis` names the
field to give. Whenever the estimate is None, `basis` says why in one line: never a silent guess.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fal_mcp.fal.client import FalClient
from fal_mcp.fal.endpoint import EndpointId
from fal_mcp.fal.platform import ListedPrice
from fal_mcp.jobs.catalog import ModelCatalog
from fal_mcp.jobs.cost.units import quantity, read_unit, rule_in_words, singular
from fal_mcp.jobs.model_schemas import EndpointSchema


def usd(amount: float) -> str:
    """Dollars as a reader wants them: cents from a dollar up, else enough digits to tell small amounts apart."""
    if amount >= 1 or amount == 0:
        return f"${amount:,.2f}"
    decimals = max(2, 2 - math.floor(math.log10(amount)))
    text = f"{amount:.{decimals}f}".rstrip("0")
    return "$" + (text if len(text.split(".")[1]) >= 2 else f"{amount:.2f}")


def per_unit(unit: str) -> str:
    """fal's unit words after "per": `images` -> `image`, `video seconds` -> `video second`."""
    words = unit.split()
    return " ".join([*words[:-1], singular(words[-1])]) if words else unit


@dataclass(frozen=True)
class Estimate:
    """About what a call will cost (`usd`), and how that was worked out, or why it is unknown (`basis`)."""

    usd: float | None
    basis: str

    def said(self) -> str:
        return f"about {usd(self.usd)}" if self.usd is not None else "unknown"


def price_in_words(price: ListedPrice | None, schema: EndpointSchema | None) -> str | None:
    """How the price of a model is computed, for get-model-schema: the unit price, and what counts as a unit."""
    if price is None or price.unit_price is None or not price.unit:
        return None
    head = f"{usd(price.unit_price)} per {per_unit(price.unit)}"
    unit = read_unit(price.unit)
    if unit is None:
        return f"{head}; the input does not tell how many, so an estimate is fal's figure for a typical call"
    return f"{head}: {rule_in_words(unit, schema)}"


async def estimate(
    catalog: ModelCatalog, fal: FalClient, partition: str, endpoint: EndpointId, payload: Mapping[str, Any]
) -> Estimate:
    """What a call of `endpoint` with `payload` will cost, as far as can be known before sending it (the caller pays
    with `fal`; `partition` names it, for what the catalog keeps per caller)."""
    price = await catalog.price(fal, endpoint)
    if price is None or price.unit_price is None:
        return Estimate(None, f"fal gives no price for {endpoint}")
    if price.currency not in (None, "USD"):
        return Estimate(None, f"fal prices {endpoint} in {price.currency}, not USD")
    unit = read_unit(price.unit)
    if unit is not None:  # the input tells how many units, or the estimate says which field it needs
        schema = await catalog.schema_for_checking(fal, endpoint, partition=partition)
        found = quantity(unit, payload, schema)
        if found.amount is None:
            return Estimate(None, found.said)
        cost = round(price.unit_price * found.amount, 6)
        return Estimate(cost, f"{found.said} at {usd(price.unit_price)} per {per_unit(price.unit or '')}")
    reason = f"it is priced per {per_unit(price.unit or 'unit')}, which the input does not tell"
    typical = await catalog.typical_cost(fal, endpoint)
    if typical is not None:
        return Estimate(round(typical, 6), f"fal's estimate of a typical call ({reason})")
    return Estimate(None, f"{reason}, and fal gives no estimate of a typical call")
