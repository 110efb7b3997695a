"""What the fake saw: one immutable record per request, kept in arrival order for assertions.

The fake keeps the latest requests only, each body cut to a limit (`FakeFal.max_recorded`,
`FakeFal.max_recorded_body`): a sandbox that serves for days must not hold every upload and input it was sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from fal_mcp.sandbox.routing import Route


@dataclass(frozen=True)
class RecordedRequest:
    """A request as it reached the fake, before any fault or handler touched it."""

    route: Route
    method: str
    path: str
    """Full path including the prefix, e.g. `/queue/fal-ai/flux/requests/<rid>/status`."""
    query: dict[str, str]
    headers: dict[str, str]
    """Lower-case names."""
    body: bytes
    """The body as received, cut to the fake's `max_recorded_body` bytes (`size` is the whole length)."""
    endpoint_id: str | None
    """The id addressed: full id for run/submit, base app id for status/stream/result/cancel."""
    request_id: str | None
    size: int = 0
    """The length of the whole body."""
