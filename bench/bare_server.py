"""The SDK's floor: a bare `MCPServer` that fal-mcp is measured against.

    python bench/bare_server.py            # stdio, one trivial tool (`ping`)
    python bench/bare_server.py --http     # the same over streamable HTTP on a free loopback port

With `--status`, it also has `get-status`: one GET of fal's status URL with one shared httpx client, the key
from FAL_KEY and the queue from FAL_QUEUE_URL, and the JSON answer as the structured result. That is the least
any MCP server can do for a status call, so it is the floor of the per-call overhead. Over HTTP the server
announces `streamable HTTP on <url>` on stderr, like fal-mcp does.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any

from mcp.server import MCPServer


def create(status: bool) -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer("bare", log_level="WARNING")  # as fal-mcp by default: no line per request

    @server.tool()
    def ping() -> str:
        """Answer pong."""
        return "pong"

    if status:
        add_status(server)
    return server


def add_status(server: MCPServer[Any]) -> None:
    import httpx  # only in this mode: the cold start compares the import of the SDK alone

    queue = os.environ["FAL_QUEUE_URL"].rstrip("/")
    http = httpx.AsyncClient(headers={"Authorization": f"Key {os.environ['FAL_KEY']}"}, timeout=30)

    @server.tool(name="get-status")
    async def get_status(request_id: str, endpoint_id: str) -> dict[str, Any]:
        """fal's status of a request, as fal answered it."""
        owner, app = endpoint_id.split("/")[:2]
        response = await http.get(f"{queue}/{owner}/{app}/requests/{request_id}/status", params={"logs": "0"})
        response.raise_for_status()
        return response.json()


def serve_http(server: MCPServer[Any]) -> None:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    print(f"bare: streamable HTTP on http://127.0.0.1:{sock.getsockname()[1]}/mcp", file=sys.stderr, flush=True)
    app = server.streamable_http_app(host="127.0.0.1")
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--http", action="store_true", help="streamable HTTP instead of stdio")
    parser.add_argument("--status", action="store_true", help="add get-status (one GET to the fake fal)")
    args = parser.parse_args()
    server = create(args.status)
    if args.http:
        serve_http(server)
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
