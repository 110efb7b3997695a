"""How a tool is registered: its function, name, title and the four behaviour hints clients rely on."""

from __future__ import annotations

from dataclasses import dataclass

from mcp.types import ToolAnnotations

from fal_mcp.tools.guard import ToolFn


@dataclass(frozen=True, slots=True)
class ToolSpec:
    fn: ToolFn
    name: str
    title: str
    read_only: bool
    destructive: bool
    idempotent: bool
    open_world: bool = True

    def annotations(self) -> ToolAnnotations:
        return ToolAnnotations(
            title=self.title,
            read_only_hint=self.read_only,
            destructive_hint=self.destructive,
            idempotent_hint=self.idempotent,
            open_world_hint=self.open_world,
        )
