"""The MCP tools, one module per family; `ALL_TOOLS` is what the server registers."""

from __future__ import annotations

from fal_mcp.server.tools.files import FILE_TOOLS
from fal_mcp.server.tools.history import HISTORY_TOOLS
from fal_mcp.server.tools.models import MODEL_TOOLS
from fal_mcp.server.tools.queue import QUEUE_TOOLS
from fal_mcp.server.tools.spec import ToolSpec

ALL_TOOLS: tuple[ToolSpec, ...] = (*QUEUE_TOOLS, *MODEL_TOOLS, *FILE_TOOLS, *HISTORY_TOOLS)

__all__ = ["ALL_TOOLS", "ToolSpec"]
