"""The tools and prompts as `tools/list` and `prompts/list` show them, computed ahead of time, so a start pays for
none of their schemas.

Building the tools with pydantic (an argument model per tool, its input and output schemas, made small by
`tool_schemas`) and the prompts (an argument model each) takes tens of milliseconds and imports everything the tools
use, and a client waits for the first `tools/list` while the server starts. `listing.json` holds what that work
produces, generated from the tools and prompts themselves:

    python -m fal_mcp.server.listing        # after changing a tool or a prompt: rewrite listing.json

`tests/test_performance.py` fails while it is stale. At start each tool is registered from its entry as a
`DeferredTool`, each prompt as a `DeferredPrompt`; the real one (argument checks, the call, output conversion, the
rendering) is built on its first use.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver.prompts.base import Message, Prompt, PromptArgument
from mcp.server.mcpserver.tools import Tool
from mcp.types import InputRequiredResult, ToolAnnotations
from mcp.types import Prompt as ListedPrompt
from mcp.types import PromptArgument as ListedPromptArgument
from mcp.types import Tool as ListedTool

if TYPE_CHECKING:
    from mcp.server.mcpserver import Context

LISTING = Path(__file__).with_name("listing.json")


def entry_of(tool: Tool) -> dict[str, Any]:
    """One tool as `tools/list` sends it (the SDK's own conversion, as JSON)."""
    listed = ListedTool(
        name=tool.name,
        title=tool.title,
        description=tool.description,
        input_schema=tool.parameters,
        output_schema=tool.output_schema,
        annotations=tool.annotations,
        icons=tool.icons,
        _meta=tool.meta,
    )
    return listed.model_dump(mode="json", by_alias=True, exclude_none=True)


def prompt_entry_of(prompt: Prompt) -> dict[str, Any]:
    """One prompt as `prompts/list` sends it (the SDK's own conversion, as JSON)."""
    arguments = [
        ListedPromptArgument(name=arg.name, description=arg.description, required=arg.required)
        for arg in prompt.arguments or []
    ]
    listed = ListedPrompt(
        name=prompt.name, title=prompt.title, description=prompt.description, arguments=arguments, icons=prompt.icons
    )
    return listed.model_dump(mode="json", by_alias=True, exclude_none=True)


def built_entries() -> dict[str, list[dict[str, Any]]]:
    """The listing of the tools and prompts as they are now, built the slow way."""
    from fal_mcp.server.prompts import built_prompts
    from fal_mcp.server.tools import ALL_TOOLS

    return {
        "tools": [entry_of(spec.tool()) for spec in ALL_TOOLS],
        "prompts": [prompt_entry_of(prompt) for prompt in built_prompts()],
    }


def stored_entries() -> dict[str, list[dict[str, Any]]]:
    return json.loads(LISTING.read_text(encoding="utf-8"))


@functools.cache
def _stored() -> dict[str, list[dict[str, Any]]]:
    """`listing.json`, read once per process (every server of it registers the same entries)."""
    return stored_entries()


class DeferredTool(Tool):
    """A tool registered from its listing entry; the real `Tool` is built when it is first called."""

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> DeferredTool:
        annotations = entry.get("annotations")
        return cls.model_construct(
            fn=_not_built,
            name=entry["name"],
            title=entry.get("title"),
            description=entry.get("description", ""),
            parameters=entry["inputSchema"],
            # read by the SDK's `Tool.output_schema` when listing; the real metadata comes with the real tool
            fn_metadata=SimpleNamespace(output_schema=entry.get("outputSchema")),
            is_async=True,
            context_kwarg=None,
            resolved_params={},
            resolver_plans={},
            annotations=ToolAnnotations.model_validate(annotations) if annotations is not None else None,
            icons=None,
            meta=entry.get("_meta"),
        )

    def real(self) -> Tool:
        """The tool itself, built once (importing what it needs)."""
        built = _built.get(self.name)
        if built is None:
            from fal_mcp.server.tools import ALL_TOOLS

            spec = next(spec for spec in ALL_TOOLS if spec.name == self.name)
            built = _built[self.name] = spec.tool()
        return built

    async def run(self, arguments: dict[str, Any], context: Context[Any, Any], convert_result: bool = False) -> Any:
        return await self.real().run(arguments, context, convert_result=convert_result)


_built: dict[str, Tool] = {}
"""The real tools, by name, once built (the same for every server of the process)."""


def _not_built(**_: Any) -> Any:
    raise RuntimeError("a deferred tool runs through DeferredTool.run")


class DeferredPrompt(Prompt):
    """A prompt registered from its listing entry; the real `Prompt` is built when it is first rendered."""

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> DeferredPrompt:
        return cls.model_construct(
            name=entry["name"],
            title=entry.get("title"),
            description=entry.get("description"),
            arguments=[PromptArgument.model_validate(argument) for argument in entry.get("arguments", [])],
            fn=_not_built,
            icons=None,
            context_kwarg=None,
        )

    def real(self) -> Prompt:
        built = _built_prompts.get(self.name)
        if built is None:
            from fal_mcp.server.prompts import built_prompts

            for prompt in built_prompts():
                _built_prompts.setdefault(prompt.name, prompt)
            built = _built_prompts[self.name]
        return built

    async def render(
        self, arguments: dict[str, Any] | None, context: Context[Any, Any]
    ) -> list[Message] | InputRequiredResult:
        return await self.real().render(arguments, context)


_built_prompts: dict[str, Prompt] = {}


def deferred_tools() -> list[Tool]:
    """Every tool, registered from `listing.json`."""
    return [DeferredTool.from_entry(entry) for entry in _stored()["tools"]]


def deferred_prompts() -> list[Prompt]:
    """Every prompt, registered from `listing.json`."""
    return [DeferredPrompt.from_entry(entry) for entry in _stored()["prompts"]]


def main() -> None:
    """Rewrite `listing.json` from the tools."""
    LISTING.write_text(json.dumps(built_entries(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {LISTING}")


if __name__ == "__main__":
    main()
