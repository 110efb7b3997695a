"""Context: what the tool list costs a model on every turn, in tokens (characters / 4 of compact JSON).

A client puts each tool's name, description and input schema before the model on every turn ("model-facing");
the whole `tools/list` result (titles, output schemas, annotations too) is what it receives and stores; the
server's `instructions` come once per conversation. Measured over stdio from a spawned `fal-mcp --sandbox`, as a
client sees it. Nothing here is timed, so the figures are exact and repeat.

    python bench/context_cost.py

Targets: model-facing at most 1,600 tokens, the whole list at most 3,200, instructions at most 150.
`tests/test_ergonomics.py` enforces the same budgets, and `tests/test_readme.py` checks the README's table of what
each tool costs against `costs()`.
"""

from __future__ import annotations

import json
import tempfile
from typing import Any

import anyio

import rig

MODEL_FACING_BUDGET = 1_600
TOOL_LIST_BUDGET = 3_200
INSTRUCTIONS_BUDGET = 150


def tokens(value: Any) -> int:
    """Characters / 4 of `value` as compact JSON (a string counts as its own characters)."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return round(len(text) / 4)


def model_facing(tool: dict[str, Any]) -> dict[str, Any]:
    return {key: tool[key] for key in ("name", "description", "inputSchema") if key in tool}


def costs(tools: list[dict[str, Any]], instructions: str | None) -> dict[str, Any]:
    """Per tool and in total: model-facing and whole-entry tokens; the whole list; the instructions."""
    per_tool = {tool["name"]: {"model_facing": tokens(model_facing(tool)), "whole": tokens(tool)} for tool in tools}
    return {
        "tools": per_tool,
        "model_facing": tokens([model_facing(tool) for tool in tools]),
        "tool_list": tokens({"tools": tools}),
        "instructions": tokens(instructions or ""),
    }


def readme_table(measured: dict[str, Any]) -> str:
    """The README's table of what each tool costs (`tests/test_readme.py` checks the README holds exactly this)."""
    lines = ["| tool | model-facing | whole entry |", "|---|---|---|"]
    lines += [
        f"| `{name}` | {cost['model_facing']:,} | {cost['whole']:,} |" for name, cost in measured["tools"].items()
    ]
    lines.append(
        f"| all {len(measured['tools'])} tools | **{measured['model_facing']:,}** | **{measured['tool_list']:,}** |"
    )
    return "\n".join(lines)


async def measure() -> dict[str, Any]:
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    with tempfile.TemporaryDirectory() as state_dir:
        env = {**rig.base_env(), "FAL_MCP_SANDBOX": "true", "FAL_MCP_STATE_DIR": state_dir}
        command, *args = rig.fal_mcp_command()
        params = StdioServerParameters(command=command, args=args, env=env)
        with tempfile.TemporaryFile("w") as errlog:  # the server's stderr, unread
            async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
                listed = await client.list_tools()
                instructions = client.instructions
    tools = [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in listed.tools]
    return costs(tools, instructions)


def run(quick: bool) -> rig.Report:
    del quick  # exact, not timed: the quick run measures the same
    measured = anyio.run(measure)
    rows = [
        {"tool": name, "model-facing": cost["model_facing"], "whole entry": cost["whole"]}
        for name, cost in measured["tools"].items()
    ]
    rows.append({"tool": "all tools", "model-facing": measured["model_facing"], "whole entry": measured["tool_list"]})
    targets = [
        rig.Target(
            "model-facing context",
            f"name + description + inputSchema of every tool at most {MODEL_FACING_BUDGET:,} tokens",
            f"{measured['model_facing']:,} tokens",
            measured["model_facing"] <= MODEL_FACING_BUDGET,
        ),
        rig.Target(
            "whole tools/list",
            f"at most {TOOL_LIST_BUDGET:,} tokens",
            f"{measured['tool_list']:,} tokens",
            measured["tool_list"] <= TOOL_LIST_BUDGET,
        ),
        rig.Target(
            "server instructions",
            f"at most {INSTRUCTIONS_BUDGET} tokens",
            f"{measured['instructions']} tokens",
            measured["instructions"] <= INSTRUCTIONS_BUDGET,
        ),
    ]
    notes = ["tokens are characters / 4 of compact JSON, as a client receives it over stdio"]
    notes.append("for the README:\n" + readme_table(measured))
    return rig.Report("context", "Context: what the tool list costs a model", rows, targets, notes, extra=measured)


if __name__ == "__main__":
    rig.standalone(run, __doc__)
