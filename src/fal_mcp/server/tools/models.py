"""Finding a model and learning its inputs: search-models, get-model-schema, and the schema as an MCP resource.

fal's models each take their own input; without these an agent guesses field names and learns from paid
422s. Both tools read fal's platform API through the cached `ModelCatalog` and answer compactly: one line
per hit, and per field its type, whether it is required, its default, allowed values and bounds.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.types import CallToolResult
from pydantic import Field

from fal_mcp.fal.endpoint import EndpointId, InvalidIdError, resolve_endpoint
from fal_mcp.fal.errors import FalError
from fal_mcp.fal.platform import ListedPrice, ModelListing
from fal_mcp.jobs.cost.estimates import price_in_words
from fal_mcp.jobs.failures import ToolFailure, explain
from fal_mcp.jobs.results import InputField, ModelHit, ModelSchemaResult, ModelSearchResult, OutputField, Price
from fal_mcp.jobs.state import AppState
from fal_mcp.server.context import app_state, caller_of
from fal_mcp.server.replies import counted, success
from fal_mcp.server.tools.arguments import AppArg, EndpointArg, OwnerArg, VariantArg, matching
from fal_mcp.server.tools.guard import guarded
from fal_mcp.server.tools.spec import SEGMENTS, ToolSpec

MAX_LINE = 160


def _one_line(text: str | None) -> str | None:
    if not text:
        return None
    line = " ".join(text.split())
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 3].rstrip() + "..."


def _price(listed: ListedPrice | None) -> Price | None:
    if listed is None:
        return None
    return Price(unit_price=listed.unit_price, unit=listed.unit, currency=listed.currency)


def _priced(price: Price | None) -> str:
    if price is None or price.unit_price is None:
        return "price unknown"
    return f"${price.unit_price:g} per {price.unit or 'unit'}"


def _hit(listing: ModelListing, price: Price | None) -> ModelHit:
    meta = listing.metadata
    return ModelHit(
        endpoint_id=listing.endpoint_id,
        name=meta.display_name,
        category=meta.category,
        description=_one_line(meta.description),
        price=price,
    )


async def describe_model(state: AppState, ctx: Context[Any, Any], endpoint: EndpointId) -> ModelSchemaResult:
    """Everything get-model-schema and the schema resource say about one endpoint."""
    caller = caller_of(ctx)
    fal = caller.fal
    details = await state.catalog.details(fal, endpoint, partition=caller.partition)
    if details is None:
        raise ToolFailure(f"fal lists no model {str(endpoint)!r}; find the right endpoint_id with search-models")
    meta = details.listing.metadata
    schema = details.schema
    listed_price = await state.catalog.price(fal, endpoint)
    result = ModelSchemaResult(
        endpoint_id=str(endpoint),
        name=meta.display_name,
        category=meta.category,
        description=_one_line(meta.description),
        price=_price(listed_price),
        pricing=price_in_words(listed_price, schema),
        input=[
            InputField(
                name=info.name,
                type=info.type,
                required=info.required,
                default=info.default if info.has_default else None,
                enum=list(info.enum) or None,
                minimum=info.minimum,
                maximum=info.maximum,
                min_length=info.min_length,
                max_length=info.max_length,
                description=info.description,
            )
            for info in (schema.fields if schema else ())
        ],
        output=[
            OutputField(name=o.name, type=o.type, description=o.description) for o in (schema.outputs if schema else ())
        ],
    )
    if schema is None:
        result.note = "fal publishes no input schema for this endpoint; run-model sends its input unchecked"
    return result


@guarded("search-models")
async def search_models(
    ctx: Context[Any, Any],
    query: Annotated[
        str | None,
        matching(r"(?s).{0,200}", "text of at most 200 characters"),
        Field(description="e.g. video upscaler"),
    ] = None,
    category: Annotated[
        str | None,
        matching(r"[a-z0-9-]{1,60}", "lowercase letters, digits and '-', e.g. text-to-image"),
        Field(description="e.g. text-to-image"),
    ] = None,
    limit: Annotated[int, Field(description="Hits per page", ge=1, le=50)] = 10,
    cursor: Annotated[
        str | None,
        matching(r"[\x21-\x7e]{1,500}", "the next_cursor of the previous page"),
        Field(description="From next_cursor"),
    ] = None,
) -> Annotated[CallToolResult, ModelSearchResult]:
    """Find fal models by text or category: id, name, description, price."""
    state = app_state(ctx)
    page, prices = await state.catalog.search(
        caller_of(ctx).fal, query=query, category=category, limit=limit, cursor=cursor
    )
    result = ModelSearchResult(
        models=[_hit(listing, _price(prices.get(listing.endpoint_id))) for listing in page.models],
        next_cursor=page.next_cursor,
        has_more=page.has_more,
    )
    what = " ".join(part for part in (f"'{query}'" if query else "", category or "") if part) or "all models"
    headline = f"{counted(len(result.models), 'model')} for {what}"
    headline += "; more with cursor=next_cursor." if result.has_more else "."
    if result.models:
        headline += " get-model-schema shows one model's input fields."
    return success(headline, result, sandbox=state.settings.sandbox)


@guarded("get-model-schema")
async def get_model_schema(
    ctx: Context[Any, Any],
    endpoint_id: EndpointArg = None,
    app_owner: OwnerArg = None,
    app_id: AppArg = None,
    app_variant: VariantArg = None,
) -> Annotated[CallToolResult, ModelSchemaResult]:
    """A model's input fields, output fields and price."""
    state = app_state(ctx)
    endpoint = resolve_endpoint(endpoint_id, app_owner, app_id, app_variant)
    result = await describe_model(state, ctx, endpoint)
    required = [field.name for field in result.input if field.required]
    headline = f"{endpoint}: {counted(len(result.input), 'input field')}"
    headline += f" (required: {', '.join(required)})" if required else ""
    headline += f"; output: {', '.join(o.name for o in result.output) or 'undocumented'}; "
    headline += f"{result.pricing}." if result.pricing else f"{_priced(result.price)}."
    return success(headline, result, sandbox=state.settings.sandbox)


async def model_schema_resource(endpoint_id: str, ctx: Context[Any, Any]) -> str:
    """`fal://models/{endpoint_id}/schema`: the same answer as get-model-schema, for clients that read resources
    (registered by `server.build`)."""
    try:
        endpoint = EndpointId.parse(endpoint_id)
        result = await describe_model(app_state(ctx), ctx, endpoint)
    except (InvalidIdError, ToolFailure, FalError) as error:
        raise ResourceError(explain(error, action="model schema", endpoint=endpoint_id)) from error
    return json.dumps(result.structured(), ensure_ascii=False, separators=(",", ":"))


MODEL_TOOLS = (
    ToolSpec(search_models, "search-models", "Search fal models", read_only=True, destructive=False, idempotent=True),
    ToolSpec(
        get_model_schema,
        "get-model-schema",
        "Inputs of a fal model",
        read_only=True,
        destructive=False,
        idempotent=True,
        unlisted=SEGMENTS,
    ),
)
