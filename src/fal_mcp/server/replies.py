"""Turns outcomes into MCP tool results: a success's headline and JSON text, a failure's one message.

Successes get a short headline plus the structured result as JSON text, for clients that do not read
`structuredContent` (with inline `data:` URIs left out and a size cap: `fal_mcp.media.refs.render_text`). A failure
is a `CallToolResult` with `isError: true` and the message `fal_mcp.jobs.failures.explain` worded.

A result leaves with only the content block types the client's negotiated protocol version defines
(`for_protocol`): a client on 2024-11-05 or 2025-03-26 refuses a whole result that holds a `resource_link` (added in
2025-06-18), after the job has run and been billed, so it gets the links as text instead.
"""

from __future__ import annotations

from mcp.types import CallToolResult, ContentBlock, ResourceLink, TextContent

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


def counted(count: int, noun: str) -> str:
    """`1 model`, `2 models`: the count and its noun, in the right number (nouns here take an -s)."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def failure(message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)


BLOCKS_SINCE = {"audio": "2025-03-26", "resource_link": "2025-06-18"}
"""Content block types younger than the first protocol version (2024-11-05: text, image, resource), and the version
that added each. Versions are dates, so they compare as strings."""


def for_protocol(result: CallToolResult, version: str | None) -> CallToolResult:
    """`result` with only the block types `version` knows: resource links become lines of text, others a note."""
    if version is None or all(version >= BLOCKS_SINCE.get(block.type, version) for block in result.content):
        return result
    kept: list[ContentBlock] = []
    lines: list[str] = []
    for block in result.content:
        if version >= BLOCKS_SINCE.get(block.type, version):
            kept.append(block)
        elif isinstance(block, ResourceLink):
            lines.append(f"- {block.title or block.name}: {block.uri}")
        else:
            lines.append(f"- a {block.type} block, left out: protocol {version} has no such content")
    kept.append(TextContent(type="text", text="Media files:\n" + "\n".join(lines)))
    return result.model_copy(update={"content": kept})
