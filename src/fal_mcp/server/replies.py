"""Turns outcomes into MCP tool results: a success's headline and JSON text, a failure's one message.

Successes get a short headline plus the structured result as JSON text, for clients that do not read
`structuredContent` (with inline `data:` URIs left out and a size cap: `fal_mcp.media.refs.render_text`). A failure
is a `CallToolResult` with `isError: true` and the message `fal_mcp.jobs.failures.explain` worded.
"""

from __future__ import annotations

from mcp.types import CallToolResult, TextContent

from fal_mcp.jobs.results import ToolOutput
from fal_mcp.media.refs import DEFAULT_TEXT_LIMIT, render_text

SANDBOX_NOTE = "[SANDBOX: fake fal on this machine; nothing was generated or billed] "


def success(
    headline: str, result: ToolOutput, *, sandbox: bool, text_limit: int = DEFAULT_TEXT_LIMIT
) -> CallToolResult:
    """A normal result: headline and JSON text (inline data left out, capped), plus `structuredContent`."""
    if sandbox:
        result.sandbox = True
        headline = SANDBOX_NOTE + headline
    structured = result.structured()
    text = render_text(headline, structured, limit=text_limit)
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)


def failure(message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)
