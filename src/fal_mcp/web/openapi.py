"""The OpenAPI 3.1 document of the REST surface (`GET /openapi.json`), built from the same output models."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from fal_mcp import __version__
from fal_mcp.jobs.results import CancelResult, RequestResult, StatusResult, SubmitResult
from fal_mcp.settings import Settings

_REF = "#/components/schemas/{model}"
_ERRORS = {
    "400": "an id, argument or body the tools would refuse too",
    "401": "missing or wrong credentials (see securitySchemes)",
    "403": "the endpoint is not allowed on this server, the call costs more than a limit allows (or needs "
    "max_cost_usd as consent), or fal refused the caller's key",
    "404": "fal knows no such request (or endpoint) for this key",
    "413": "the body or the model input is larger than this server accepts",
    "415": "the submit body is not sent as application/json",
    "422": "fal rejected the model input (`fields` lists each complaint)",
    "429": "a per-key limit of this server (the daily budget among them), or fal's; see Retry-After",
    "502": "fal failed, or answered something unreadable",
    "503": "the server is starting or stopping, or holds no fal key",
    "504": "fal did not answer in time",
}
_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "status"],
            "properties": {
                "message": {"type": "string", "description": "what failed and what to try, as the tools word it"},
                "status": {"type": "integer", "description": "the HTTP status of this answer"},
                "fal_status": {"type": "integer", "description": "fal's own status code, when fal answered"},
                "error_type": {"type": "string", "description": "fal's error category, or ours (e.g. refused)"},
                "request_id": {"type": "string", "description": "the queued request, when one exists"},
                "fields": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "loc": {"type": "array", "items": {"type": "string"}},
                            "msg": {"type": "string"},
                        },
                    },
                },
            },
        }
    },
}


def _param(
    name: str, where: str, description: str, schema: dict[str, Any], *, required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": required or where == "path",
        "description": description,
        "schema": schema,
    }


_SEGMENT: dict[str, Any] = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"}
_OWNER = _param("model_owner", "path", "model owner, e.g. fal-ai", _SEGMENT)
_NAME = _param("model_name", "path", "model (app) name, e.g. flux", _SEGMENT)
_SUBPATH = _param(
    "subpath",
    "path",
    "the endpoint's sub-path, e.g. schnell (may hold several '/'-separated segments)",
    {"type": "string"},
)
_REQUEST_ID = _param(
    "request_id",
    "path",
    "the request_id submit returned",
    {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"},
)
_LOGS = _param(
    "logs", "query", "include the runner's log lines", {"type": "string", "enum": ["0", "1", "true", "false"]}
)


def _json(ref: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": _REF.format(model=ref)}}}}


def _operation(operation_id: str, summary: str, parameters: list[dict[str, Any]], ok: dict[str, Any]) -> dict[str, Any]:
    responses = {**ok, **{code: _json("Error", text) for code, text in _ERRORS.items()}}
    return {"operationId": operation_id, "summary": summary, "parameters": parameters, "responses": responses}


def _submit(operation_id: str, path_parameters: list[dict[str, Any]]) -> dict[str, Any]:
    parameters = [
        *path_parameters,
        _param("fal_webhook", "query", "URL fal POSTs the result to when done", {"type": "string", "format": "uri"}),
        _param(
            "max_cost_usd",
            "query",
            "the most this call may cost, in USD; refused before sending when the estimate is higher. Also the "
            "consent a call above the server's confirmation threshold needs",
            {"type": "number", "minimum": 0},
        ),
        _param("X-Fal-Queue-Priority", "header", "queue priority", {"type": "string", "enum": ["normal", "low"]}),
        _param("X-Fal-Runner-Hint", "header", "runner hint for session affinity", {"type": "string"}),
        _param("X-Fal-Request-Timeout", "header", "seconds the request may wait to start", {"type": "number"}),
    ]
    operation = _operation(
        operation_id,
        "Submit a new inference job (the body is the model's input)",
        parameters,
        {"200": _json("SubmitResult", "queued, with its estimated cost; the URLs point at this server's REST surface")},
    )
    operation["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object", "description": "the model's input JSON"}}},
    }
    return operation


SUBPATH_BASE = "/v1/models/{model_owner}/{model_name}/{subpath}/requests"


def _follow_up(base: str, suffix: str, path_parameters: list[dict[str, Any]]) -> dict[str, Any]:
    """Status, result and cancel under one form of the endpoint id (a submit's links use the id it was given)."""
    wait = _param("wait_s", "query", "seconds to wait for completion", {"type": "number", "minimum": 0})
    return {
        base + "/{request_id}/status": {
            "get": _operation(
                "getstatus" + suffix,
                "Get inference job status (IN_QUEUE, IN_PROGRESS, COMPLETED)",
                [*path_parameters, _REQUEST_ID, _LOGS],
                {"200": _json("StatusResult", "completed"), "202": _json("StatusResult", "queued or running")},
            )
        },
        base + "/{request_id}": {
            "get": _operation(
                "getresult" + suffix,
                "Get inference job result",
                [*path_parameters, _REQUEST_ID, _LOGS, wait],
                {
                    "200": _json("RequestResult", "the output"),
                    "202": _json("RequestResult", "still running: its state and next_step"),
                },
            )
        },
        base + "/{request_id}/cancel": {
            "put": _operation(
                "cancel" + suffix,
                "Cancel an inference job",
                [*path_parameters, _REQUEST_ID],
                {
                    "202": _json("CancelResult", "CANCELLATION_REQUESTED"),
                    "200": _json("CancelResult", "ALREADY_COMPLETED: nothing to cancel"),
                },
            )
        },
    }


def openapi_document(settings: Settings) -> dict[str, Any]:
    _, top = models_json_schema(
        [(model, "serialization") for model in (SubmitResult, StatusResult, RequestResult, CancelResult)],
        ref_template=_REF,
    )
    schemas: dict[str, Any] = {**top.get("$defs", {}), "Error": _ERROR_SCHEMA}
    base = "/v1/models/{model_owner}/{model_name}/requests"
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "fal-mcp REST: the fal queue",
            "version": __version__,
            "description": (
                "Submit, poll, fetch and cancel fal model requests through this server: the same checks, "
                "limits and errors as its MCP tools. Status and result answer 202 while the request runs."
            ),
        },
        "paths": {
            base: {"post": _submit("submitrequest", [_OWNER, _NAME])},
            SUBPATH_BASE: {"post": _submit("submitrequestsubpath", [_OWNER, _NAME, _SUBPATH])},
            **_follow_up(base, "", [_OWNER, _NAME]),
            **_follow_up(SUBPATH_BASE, "subpath", [_OWNER, _NAME, _SUBPATH]),
        },
        "components": {"schemas": schemas},
    }
    if settings.auth != "none":
        what = {
            "fal-key": "your own fal key (bring your own key)",
            "oauth": f"an access token from the identity provider {settings.oauth_issuer}, for this resource",
        }.get(settings.auth, "a token from the operator")
        document["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": f"Authorization: Bearer <{what}>"}
        }
        document["security"] = [{"bearer": []}]
    return document
