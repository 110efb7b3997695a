"""The README cannot drift: its test command is CI's, its tables list what the server really has."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from mcp import Client

from fal_mcp.server.build import create_server
from fal_mcp.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_ci_runs_exactly_the_readme_test_command() -> None:
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    test_command = re.findall(r"```bash\n(.+?)\n```", quick, flags=re.S)[-1]
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci_lines[-1] == test_command


def test_quick_start_is_two_commands() -> None:
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert len(re.findall(r"```bash\n", quick)) == 2


@pytest.mark.anyio
async def test_tools_table_matches_the_server() -> None:
    async with Client(create_server(Settings(_env_file=None))) as client:  # pyright: ignore[reportCallIssue]
        tools = (await client.list_tools()).tools
    rows = re.findall(r"^\| `([a-z-]+)` \|.*\| (\w+) / (\w+) / (\w+) / (\w+) \|$", README, flags=re.M)
    table = {name: tuple(v == "true" for v in hints) for name, *hints in rows}
    served = {
        t.name: (
            t.annotations.read_only_hint,
            t.annotations.destructive_hint,
            t.annotations.idempotent_hint,
            t.annotations.open_world_hint,
        )
        for t in tools
        if t.annotations is not None
    }
    assert table == served


def test_configuration_table_lists_every_setting() -> None:
    documented = set(re.findall(r"^\| `([A-Z_]+)`", README, flags=re.M))
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        variable = alias.choices[0] if alias is not None and hasattr(alias, "choices") else f"FAL_MCP_{name.upper()}"  # pyright: ignore
        assert variable in documented or any(variable in row for row in re.findall(r"^\|.*$", README, flags=re.M)), name


def test_mcp_json_example_has_placeholders_only() -> None:
    config = json.loads((ROOT / "mcp.json.example").read_text())
    servers = config["mcpServers"]
    assert {"fal", "fal-http"} <= set(servers)
    assert servers["fal-http"]["url"].startswith("http://127.0.0.1:")
    assert servers["fal"]["env"]["FAL_KEY"].startswith("<")
