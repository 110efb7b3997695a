"""How a tool is registered: its function, name, title, the four behaviour hints clients rely on, which of its
arguments it takes without listing them, and whether the MCP App view (`fal_mcp.server.view`) shows its results."""

from __future__ import annotations

from dataclasses import dataclass

from mcp.types import ToolAnnotations

from fal_mcp.server.tool_schemas import input_schema, output_schema
from fal_mcp.server.tools.checked import CheckedTool
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
    unlisted: tuple[str, ...] = ()
    """Arguments taken but left out of the advertised schema, to spare every turn's context: a second spelling of
    one already listed (the segment form of a model id beside `endpoint_id`)."""

    def annotations(self) -> ToolAnnotations:
        """The four hints. The title is the tool's own (`title`, since 2025-06-18), not repeated here."""
        return ToolAnnotations(
            read_only_hint=self.read_only,
            destructive_hint=self.destructive,
            idempotent_hint=self.idempotent,
            open_world_hint=self.open_world,
        )

    def tool(self) -> CheckedTool:
        """The SDK's tool, its arguments checked by us first (`checked`), its schemas made small and portable
        (`fal_mcp.server.tool_schemas`)."""
        meta = {"ui": {"resourceUri": VIEW_URI}} if self.shown_in_view else None
        tool = CheckedTool.from_function(
            self.fn, name=self.name, title=self.title, annotations=self.annotations(), meta=meta
        )
        assert isinstance(tool, CheckedTool)  # from_function builds its own class
        tool.parameters = input_schema(tool.parameters, unlisted=self.unlisted)
        if tool.fn_metadata.output_schema is not None:
            # FuncMetadata reads this field live.
            tool.fn_metadata.output_schema = output_schema(tool.fn_metadata.output_schema, unlisted=UNLISTED_OUTPUTS)
            # Every structured result is built from the output model itself (`jobs.results`), so the SDK's check of
            # it against that model, on every call, would only repeat the construction; clients check the schema.
            tool.fn_metadata.output_model = None
        return tool


SANDBOX_FLAG = "sandbox"
"""`sandbox: true`, in every result from the fake fal (and in its headline): a development aid, so results declare it
nowhere, and a result holding it still conforms (output schemas are open)."""
UNLISTED_OUTPUTS = (SANDBOX_FLAG, "estimate_basis")
"""Result fields left out of the output schemas, to spare every turn's context; `estimate_basis` is the sentence
beside `estimated_cost_usd` saying how it was worked out (results carry it, the README documents it)."""

SEGMENTS = ("app_owner", "app_id", "app_variant")
"""fal's segment form of a model id. run-model lists it; the other tools take it without listing it."""
