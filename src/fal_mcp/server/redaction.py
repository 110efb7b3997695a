"""The last thing every MCP answer passes on its way out: no key goes back to a client.

A server middleware, the outermost of the chain, so it sees each answer after everything else has worded it
(tool results, `isError` results made from the SDK's argument checks, resource reads, task results) and each
error (`MCPError` from a resource or the SDK, and any unexpected exception, whose text the SDK would otherwise
send as it is). Every string in them goes through `logs.redactor.scrub`, which defines what a key is: the
server's, every caller key fal has accepted, the credential of the caller being served, and anything shaped like
a fal key. Answers that carry nothing a caller wrote (the tool list, the handshake) pass untouched, and so do the
bytes of a result's image previews: JPEGs this server encoded from pixels (`media.previews`, no metadata copied),
whose base64 holds no text from anywhere, and whose scan would cost milliseconds per preview at every completion.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ValidationError

from fal_mcp.logs import redactor

logger = logging.getLogger(__name__)

_FIXED_ANSWERS = frozenset(
    {"initialize", "ping", "tools/list", "prompts/list", "resources/list", "resources/templates/list"}
)
"""Methods whose answers hold only what the server declares: scrubbing them would cost every turn for nothing."""


class ScrubSecrets:
    """`ServerMiddleware`: every answer and every error with its keys replaced by `[REDACTED]`."""

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        try:
            result = await call_next(ctx)
        except MCPError as error:
            raise MCPError(error.code, redactor.scrub(error.message), redactor.scrub_data(error.data)) from None
        except ValidationError:
            raise  # answered "Invalid request parameters", with no text of the input
        except Exception as error:
            # The SDK would log this and answer `str(error)` with code 0: the same, scrubbed (the log line is too).
            logger.exception("handler for %r raised", ctx.method)
            raise MCPError(0, redactor.scrub(str(error))) from error
        if ctx.method in _FIXED_ANSWERS or result is None:
            return result
        if isinstance(result, BaseModel):
            result = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        return scrubbed_answer(result)


def scrubbed_answer(result: Any) -> Any:
    """`result` scrubbed, its preview pictures' bytes set aside and put back as they were (see the docstring)."""
    content: Any = cast(dict[str, Any], result).get("content") if isinstance(result, dict) else None
    if not isinstance(content, list):
        return redactor.scrub_data(result)
    blocks = cast(list[Any], content)
    pictures: dict[int, str] = {}
    for index, block in enumerate(blocks):
        if isinstance(block, dict):
            fields = cast(dict[str, Any], block)
            if fields.get("type") == "image" and isinstance(fields.get("data"), str):
                pictures[index] = fields["data"]
    if not pictures:
        return redactor.scrub_data(result)
    bare_blocks = [{**cast(dict[str, Any], b), "data": ""} if i in pictures else b for i, b in enumerate(blocks)]
    scrubbed: Any = redactor.scrub_data({**cast(dict[str, Any], result), "content": bare_blocks})
    for index, data in pictures.items():
        scrubbed["content"][index]["data"] = data
    return scrubbed
