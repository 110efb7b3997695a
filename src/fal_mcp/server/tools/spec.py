"""How a tool is registered: its function, name, title, the four behaviour hints clients rely on, and whether the
MCP App view (`fal_mcp.server.view`) shows its results."""

from __future__ import annotations

from dataclasses import dataclass

from mcp.server.mcpserver.tools import Tool
from mcp.types import ToolAnnotations

from fal_mcp.server.tool_schemas import compact_schema
from fal_mcp.server.tools.guard import ToolFn
from fal_mcp.server.view import VIEW_URI


@dataclass(frozen=True, slots=True)
class ToolSpec:
    fn: ToolFn
    name: str
    title: str
    read_only: bool
    destructive: bool
    idempotent: bool
    open_world: bool = True
    shown_in_view: bool = False

    def annotations(self) -> ToolAnnotations:
        return ToolAnnotations(
            title=self.title,
            read_only_hint=self.read_only,
            destructive_hint=self.destructive,
            idempotent_hint=self.idempotent,
            open_world_hint=self.open_world,
        )

    def tool(self) -> Tool:
        """The SDK's tool, with input and output schemas made small (`fal_mcp.server.tool_schemas`)."""
        meta = {"ui": {"resourceUri": VIEW_URI}} if self.shown_in_view else None
        tool = Tool.from_function(self.fn, name=self.name, title=self.title, annotations=self.annotations(), meta=meta)
        tool.parameters = compact_schema(tool.parameters)
        if tool.fn_metadata.output_schema is not None:
            # FuncMetadata reads this field live; structured results are still checked against the output model.
            tool.fn_metadata.output_schema = compact_schema(tool.fn_metadata.output_schema, output=True)
        return tool
