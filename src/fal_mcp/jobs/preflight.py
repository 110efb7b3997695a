"""The schema check every run and submit goes through before it is sent.

`Operations._admit` runs it first, then the cost limits, then uploads local files, so a refused input uploads
nothing. It refuses only what the endpoint's published schema rules out, and only when a schema can be had: a model
fal does not list, a document without an input schema or an unreachable platform API all mean the input goes out
unchecked, never that the run fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fal_mcp.fal.endpoint import EndpointId
from fal_mcp.jobs.failures import ToolFailure
from fal_mcp.jobs.state import AppState, Caller
from fal_mcp.jobs.uploads import file_references, with_file_uris_replaced
from fal_mcp.jobs.validation import input_problems


class InputRefused(ToolFailure):
    """The input does not fit the endpoint's schema; nothing was sent."""


STAND_IN_URL = "https://v3.fal.media/files/local-file"
"""What a `file://` URI is checked as: it will be an https URL on fal's CDN by the time it is sent."""


async def check_input(state: AppState, caller: Caller, endpoint: EndpointId, payload: Mapping[str, Any]) -> None:
    """Refuse, field by field, an input the endpoint's schema rules out."""
    schema = await state.catalog.schema_for_checking(caller.fal, endpoint, partition=caller.partition)
    as_sent = with_file_uris_replaced(payload, {ref: STAND_IN_URL for _, ref in file_references(payload)})
    problems = input_problems(schema, as_sent) if schema is not None else None
    if problems:
        raise InputRefused(
            f"input refused before sending it to {endpoint}, so nothing was billed: {'; '.join(problems)}. "
            "Fix these fields (get-model-schema lists them all) or pass validate=false to send it as it is."
        )
