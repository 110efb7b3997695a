"""A client from before resource links: mcp 1.9.4 (protocol 2025-03-26), run in a virtualenv of its own.

`tests/test_old_clients.py` runs this file with that virtualenv's Python, so it imports nothing of fal-mcp and
nothing newer than mcp 1.9.4 has. It lists the tools, runs a model whose output has an image, and prints one JSON
object: the negotiated version, each tool's name, and each result's content block types and text. A block its
pydantic models do not know makes `call_tool` raise, which is what an old client's user sees.

    python old_client.py stdio <command> [args...]     # the server's environment comes from this process's
    python old_client.py http <url>
"""

from __future__ import annotations

import json
import sys
from contextlib import AsyncExitStack
from typing import Any

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamablehttp_client

RUN = {"endpoint_id": "fal-ai/flux/schnell", "input": {"prompt": "a lighthouse at dusk", "num_images": 2}}


async def main(argv: list[str]) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        if argv[0] == "stdio":
            import os

            params = StdioServerParameters(command=argv[1], args=argv[2:], env=dict(os.environ))
            read, write = await stack.enter_async_context(stdio_client(params))
        else:
            read, write, _ = await stack.enter_async_context(streamablehttp_client(argv[1]))
        session = await stack.enter_async_context(ClientSession(read, write))
        init = await session.initialize()
        tools = await session.list_tools()
        report: dict[str, Any] = {
            "protocol": init.protocolVersion,
            "tools": [tool.name for tool in tools.tools],
            "results": {},
        }
        for label, arguments in (("previews", RUN), ("no-previews", {**RUN, "previews": False})):
            try:
                result = await session.call_tool("run-model", arguments)
            except Exception as error:  # what the user of an old client gets: the call's result is lost
                report["results"][label] = {"raised": f"{type(error).__name__}: {str(error)[:300]}"}
                continue
            report["results"][label] = {
                "is_error": result.isError,
                "types": [block.type for block in result.content],
                "text": "\n".join(block.text for block in result.content if block.type == "text"),
            }
        return report


if __name__ == "__main__":
    print(json.dumps(anyio.run(main, sys.argv[1:])))
