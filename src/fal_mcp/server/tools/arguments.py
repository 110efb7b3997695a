"""Argument types shared by the tools; their descriptions are what the model reads, so they stay short."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

EndpointArg = Annotated[
    str | None,
    Field(description="fal model id, e.g. 'fal-ai/flux/schnell'. Or give app_owner + app_id [+ app_variant]."),
]
OwnerArg = Annotated[str | None, Field(description="Model owner, e.g. 'fal-ai' (instead of endpoint_id)")]
AppArg = Annotated[str | None, Field(description="App name, e.g. 'flux' (with app_owner)")]
VariantArg = Annotated[str | None, Field(description="Optional variant path, e.g. 'schnell' (with app_owner)")]
InputArg = Annotated[
    dict[str, Any],
    Field(
        description='The model\'s input JSON, e.g. {"prompt": "a red fox"}; fields differ per model '
        "(get-model-schema). file:// URIs of local files are uploaded first."
    ),
]
RequestIdArg = Annotated[str, Field(description="request_id returned by submit or run-model")]
LogsArg = Annotated[bool, Field(description="Include the runner's log lines")]
PriorityArg = Annotated[
    Literal["normal", "low"] | None, Field(description="Queue priority; 'low' waits behind 'normal'")
]
HintArg = Annotated[
    str | None,
    Field(description="Runner hint for session affinity (X-Fal-Runner-Hint)", pattern=r"^[\x21-\x7e]{1,200}$"),
]
StartTimeoutArg = Annotated[
    float | None,
    Field(description="Give up if it has not started within this many seconds (fal's start deadline)", ge=1, le=86400),
]
WebhookArg = Annotated[
    str | None,
    Field(
        description="URL fal POSTs the result to when done (passed to fal as fal_webhook; never sent our key)",
        pattern=r"^https?://[^\s]+$",
        max_length=2048,
    ),
]
ValidateArg = Annotated[
    bool, Field(description="Check input against the model's schema first (false: send it as it is)")
]
PreviewsArg = Annotated[bool, Field(description="Attach small previews of output images")]
SaveToArg = Annotated[str | None, Field(description="Folder to save the output media files in")]
