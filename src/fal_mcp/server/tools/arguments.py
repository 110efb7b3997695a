"""Argument types shared by the tools; their descriptions are what the model reads on every turn, so they stay short.

Formats a regular expression would state (a runner hint, a webhook URL) are checked by validators instead: a
pattern costs context on every turn and, when it fails, says nothing a model can act on; a validator's message is
what `fal_mcp.server.tools.checked` tells the model it got wrong.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, WithJsonSchema


def matching(pattern: str, accepts: str) -> AfterValidator:
    """A validator refusing text outside `pattern`, with `accepts` as what the refusal says is accepted."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(accepts)
        return value

    return AfterValidator(check)


INPUT_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "object", "properties": {"prompt": {"type": "string"}}}, {"type": "string"}],
    "description": 'e.g. {"prompt": "a fox"}, or that as JSON text. Fields: get-model-schema. file:// URIs get uploaded',
}
"""What `input` is advertised as: any model's fields go through, while every vendor's converter accepts it.

A bare `{"type": "object"}` is refused by Gemini's function declarations (an object needs properties) and by OpenAI's
strict mode (an object must be closed). So `input` is an object with one declared field a strict-mode model can
fill, or the same object as JSON text, which carries any model's fields; the server takes either
(`fal_mcp.server.tools.checked`). Clients that validate arguments accept any object: it is not closed."""

EndpointArg = Annotated[str | None, Field(description="e.g. fal-ai/flux/schnell")]
OwnerArg = Annotated[str | None, Field(description="Or: owner, e.g. fal-ai")]
AppArg = Annotated[str | None, Field(description="App, e.g. flux")]
VariantArg = Annotated[str | None, Field(description="Path, e.g. schnell")]
InputArg = Annotated[dict[str, Any], WithJsonSchema(INPUT_SCHEMA)]
RequestIdArg = Annotated[str, Field(description="From submit or run-model")]
LogsArg = Annotated[bool, Field(description="Include log lines")]
PriorityArg = Annotated[Literal["normal", "low"] | None, Field(description="Queue priority")]
HintArg = Annotated[
    str | None,
    matching(r"[\x21-\x7e]{1,200}", "printable ASCII without spaces, at most 200 characters"),
    Field(description="X-Fal-Runner-Hint"),
]
StartTimeoutArg = Annotated[float | None, Field(description="Start deadline, seconds", ge=1, le=86400)]
WebhookArg = Annotated[
    str | None,
    matching(r"https?://\S{1,2040}", "an http(s) URL without spaces, at most 2048 characters"),
    Field(description="URL fal POSTs the result to"),
]
ValidateArg = Annotated[bool, Field(description="Check input first")]
PreviewsArg = Annotated[bool, Field(description="Attach image previews")]
SaveToArg = Annotated[str | None, Field(description="Folder to save the output media files in")]


def _not_negative(value: float | None) -> float | None:
    if value is not None and not value >= 0:
        raise ValueError("a number of US dollars, at least 0")
    return value


MaxCostArg = Annotated[float | None, AfterValidator(_not_negative), Field(description="USD cap")]
"""The most a call may cost; its bound is checked by the validator (a `minimum` would cost context on every turn)."""
