"""The OpenAPI document the platform API embeds for an endpoint (`expand=openapi-3.0`), built from the catalog.

Shaped like fal's own: the queue paths of the endpoint, the input schema as `components.schemas.<Name>Input`
(referenced from the submit's request body), the output as `<Name>Output` (referenced from the result GET),
and shared `File`/`Image` components that outputs point at with `$ref`. Field schemas come from the same
`Field` definitions the fake validates with, so what the document promises is what the fake enforces.
"""

from __future__ import annotations

from fal_mcp.sandbox.models.catalog import Model
from fal_mcp.sandbox.models.inputs import Json, JsonObject
from fal_mcp.sandbox.models.outputs import SHARED_SCHEMAS
from fal_mcp.sandbox.routing import base_app_id

_QUEUE_STATUS: JsonObject = {
    "type": "object",
    "title": "QueueStatus",
    "properties": {
        "status": {"type": "string", "enum": ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]},
        "request_id": {"type": "string"},
        "response_url": {"type": "string"},
        "status_url": {"type": "string"},
        "cancel_url": {"type": "string"},
        "queue_position": {"type": "integer"},
    },
    "required": ["status", "request_id"],
}


def schema_name(endpoint_id: str) -> str:
    """`fal-ai/flux/dev/image-to-image` -> `FluxDevImageToImage` (fal drops the owner)."""
    segments = endpoint_id.split("/")[1:]
    words = [word for segment in segments for word in segment.replace("_", "-").replace(".", "-").split("-")]
    return "".join(word[:1].upper() + word[1:] for word in words if word)


def input_schema(model: Model) -> JsonObject:
    """The model's input as JSON schema; a model without field definitions takes any object."""
    if model.fields is None:
        return {"type": "object", "additionalProperties": True}
    properties: JsonObject = {field.name: field.json_schema() for field in model.fields}
    order: list[Json] = [field.name for field in model.fields]
    required: list[Json] = [field.name for field in model.fields if field.required]
    return {"type": "object", "properties": properties, "required": required, "x-fal-order-properties": order}


def document(endpoint_id: str, model: Model) -> JsonObject:
    """The OpenAPI 3.0 document of one endpoint's queue API."""
    name = schema_name(endpoint_id)
    base = base_app_id(endpoint_id)

    def ref(component: str) -> JsonObject:
        return {"$ref": f"#/components/schemas/{component}"}

    def answer(component: str) -> JsonObject:
        return {"200": {"description": "OK", "content": {"application/json": {"schema": ref(component)}}}}

    request_id: JsonObject = {"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"}}
    schemas: JsonObject = {
        "QueueStatus": _QUEUE_STATUS,
        f"{name}Input": {**input_schema(model), "title": f"{name}Input"},
        f"{name}Output": {**model.output_schema, "title": f"{name}Output"},
        **{key: dict(value) for key, value in SHARED_SCHEMAS.items()},
    }
    return {
        "openapi": "3.0.4",
        "info": {
            "title": model.display_name or endpoint_id,
            "version": "1.0.0",
            "description": model.description,
            "x-fal-metadata": {"endpointId": endpoint_id, "category": model.category},
        },
        "servers": [{"url": "https://queue.fal.run"}],
        "paths": {
            f"/{endpoint_id}": {
                "post": {
                    "requestBody": {"required": True, "content": {"application/json": {"schema": ref(f"{name}Input")}}},
                    "responses": answer("QueueStatus"),
                }
            },
            f"/{base}/requests/{{request_id}}/status": {
                "get": {"parameters": [request_id], "responses": answer("QueueStatus")}
            },
            f"/{base}/requests/{{request_id}}/cancel": {"put": {"parameters": [request_id], "responses": {}}},
            f"/{base}/requests/{{request_id}}": {
                "get": {"parameters": [request_id], "responses": answer(f"{name}Output")}
            },
        },
        "components": {"schemas": schemas},
    }
