"""The folders an MCP client shares (its "roots"), as local paths, for the upload fence.

Asked for lazily, only when a call is about to upload a file, and only when the client declared the roots
capability on a connection that can carry a server-to-client request (a 2025-11-25 session; the 2026-07-28
protocol deprecates roots). A client that does not answer in time, or answers badly, shares no roots.
"""

from __future__ import annotations

import logging
from pathlib import PurePath
from typing import Any

import anyio
from mcp import types
from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from fal_mcp.media.fence import UploadRefused, local_path

logger = logging.getLogger(__name__)

ROOTS_TIMEOUT_S = 5.0


class ClientRoots:
    """The calling client's roots, fetched on first use."""

    def __init__(self, ctx: Context[Any, Any]) -> None:
        self._ctx = ctx

    async def __call__(self) -> list[PurePath]:
        capabilities = self._ctx.client_capabilities
        session = self._ctx.session
        if capabilities is None or capabilities.roots is None or not session.can_send_request:
            return []
        answer: types.ListRootsResult | None = None
        with anyio.move_on_after(ROOTS_TIMEOUT_S):
            try:
                answer = await session.send_request(types.ListRootsRequest(), types.ListRootsResult)
            except (MCPError, ValidationError) as error:
                logger.info("the client's roots could not be read: %s", error)
        paths: list[PurePath] = []
        for root in answer.roots if answer is not None else ():
            try:
                paths.append(local_path(str(root.uri)))
            except UploadRefused:
                logger.info("ignoring client root %r: not a local folder", str(root.uri))
        return paths
