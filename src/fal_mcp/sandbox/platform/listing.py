"""The platform API: `GET /v1/models` (list, search, find, OpenAPI expansion) and `GET /v1/models/pricing`.

Follows reference section 7. One listing per endpoint id (a model serving three ids is listed three times,
as fal lists each endpoint). `/v1/models` has three modes: find (`endpoint_id`, repeated or comma-separated),
search (`q` and/or `category`, `status`) and list (no filter); all page with `limit` (1-100) and an opaque
`cursor`. `expand=openapi-3.0` embeds each endpoint's OpenAPI document. Pricing lists only the endpoints
whose price the catalog knows, like fal's answer for models it cannot price.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from fal_mcp.sandbox.models.catalog import Catalog, Model
from fal_mcp.sandbox.models.inputs import Json, JsonObject
from fal_mcp.sandbox.platform.openapi import document

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_PRICED = 50


@dataclass(frozen=True)
class Answer:
    """A status code and JSON body for the app to send."""

    status_code: int
    body: JsonObject


def _listings(catalog: Catalog) -> list[tuple[str, Model]]:
    return [(endpoint_id, model) for model in catalog.models for endpoint_id in model.endpoint_ids]


def _ids(values: Sequence[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _matches(endpoint_id: str, model: Model, query: str) -> bool:
    haystack = " ".join((endpoint_id, model.display_name, model.description, model.category)).lower()
    return all(term in haystack for term in query.lower().split())


def _entry(endpoint_id: str, model: Model, expand: bool) -> JsonObject:
    entry: JsonObject = {
        "endpoint_id": endpoint_id,
        "metadata": {
            "display_name": model.display_name or endpoint_id,
            "category": model.category,
            "description": model.description,
            "status": "active",
            "tags": ["sandbox"],
            "updated_at": "2026-01-01T00:00:00Z",
            "model_url": f"https://fal.ai/models/{endpoint_id}",
            "license_type": "commercial",
            "kind": "inference",
        },
    }
    if expand:
        entry["openapi"] = document(endpoint_id, model)
    return entry


def _offset(cursor: str | None) -> int | None:
    if not cursor:
        return 0
    try:
        value = int(base64.urlsafe_b64decode(cursor.encode()).decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return value if value >= 0 else None


def models(
    catalog: Catalog,
    *,
    endpoint_ids: Sequence[str],
    query: str | None,
    category: str | None,
    status: str | None,
    limit: str | None,
    cursor: str | None,
    expand: Sequence[str],
) -> Answer:
    """Answer `GET /v1/models` in whichever of its three modes the parameters select."""
    try:
        size = DEFAULT_LIMIT if limit is None else int(limit)
    except ValueError:
        size = 0
    if not 1 <= size <= MAX_LIMIT:
        return Answer(422, {"detail": f"limit must be an integer from 1 to {MAX_LIMIT}"})
    start = _offset(cursor)
    if start is None:
        return Answer(400, {"detail": "Invalid cursor"})
    listed = _listings(catalog)
    wanted = _ids(endpoint_ids)
    if wanted:
        listed = [(endpoint_id, model) for endpoint_id, model in listed if endpoint_id in wanted]
    if query:
        listed = [(endpoint_id, model) for endpoint_id, model in listed if _matches(endpoint_id, model, query)]
    if category:
        listed = [(endpoint_id, model) for endpoint_id, model in listed if model.category == category]
    if status and status != "active":
        listed = []
    page = listed[start : start + size]
    more = start + size < len(listed)
    next_cursor: Json = base64.urlsafe_b64encode(str(start + size).encode()).decode() if more else None
    expanded = "openapi-3.0" in _ids(expand)
    entries: list[Json] = [_entry(endpoint_id, model, expanded) for endpoint_id, model in page]
    return Answer(200, {"models": entries, "next_cursor": next_cursor, "has_more": more})


def pricing(catalog: Catalog, endpoint_ids: Sequence[str]) -> Answer:
    """Answer `GET /v1/models/pricing?endpoint_id=...` (1 to 50 ids)."""
    wanted = _ids(endpoint_ids)
    if not 1 <= len(wanted) <= MAX_PRICED:
        return Answer(422, {"detail": f"give 1 to {MAX_PRICED} endpoint_id values"})
    prices: list[Json] = []
    for endpoint_id in wanted:
        model = catalog.find(endpoint_id)
        if model is not None and model.unit_price is not None and endpoint_id in model.endpoint_ids:
            prices.append(
                {"endpoint_id": endpoint_id, "unit_price": model.unit_price, "unit": model.unit, "currency": "USD"}
            )
    return Answer(200, {"prices": prices})
