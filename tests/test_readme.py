"""The README cannot drift: its test command is CI's, its tables list what the server really has."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import Client

from fal_mcp.server.build import create_server
from fal_mcp.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
QUICK = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    test_command = re.findall(r"```bash\n(.+?)\n```", QUICK, flags=re.S)[-1]
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci_lines[-1] == test_command


def test_quick_start_is_two_commands() -> None:
    assert len(re.findall(r"```bash\n", QUICK)) == 2


def test_quick_start_says_what_a_newcomer_needs() -> None:
    """The Python it needs, a virtualenv, the run command that keeps its terminal, the tests in another one."""
    run, tests = re.findall(r"```bash\n(.+?)\n```", QUICK, flags=re.S)
    assert "Python 3.11 or newer" in QUICK and "python3 -m venv .venv" in run and ". .venv/bin/activate" in run
    assert run.rstrip().endswith("fal-mcp --sandbox --transport http")
    assert "In another terminal" in QUICK and tests == "bash scripts/test"
    assert len(QUICK.splitlines()) <= 25, "keep the Quick start short"


def test_quick_start_works_pasted_into_a_fresh_shell(tmp_path: Path) -> None:
    """The first block, run by bash in a fresh copy of the project with a clean environment, serves MCP."""
    run = re.findall(r"```bash\n(.+?)\n```", QUICK, flags=re.S)[0]
    project = tmp_path / "fal-mcp"
    shutil.copytree(ROOT, project, ignore=shutil.ignore_patterns(".venv", ".tools", ".ci", ".git", "*cache*", "dist"))
    # A fresh shell: no virtualenv on the PATH (not this test run's), the user's HOME, nothing of ours set.
    in_venv = sys.prefix != sys.base_prefix
    path = [entry for entry in os.environ["PATH"].split(os.pathsep) if not (in_venv and entry.startswith(sys.prefix))]
    env = {"PATH": os.pathsep.join(path), "HOME": os.environ["HOME"], "FAL_MCP_PORT": "0"}  # port 0: any free one
    env["FAL_MCP_STATE_DIR"] = str(tmp_path / "state")
    with (tmp_path / "stderr").open("wb") as stderr:
        shell = subprocess.Popen(["bash", "-c", run], cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + 600
            announced = None
            while announced is None and shell.poll() is None and time.monotonic() < deadline:
                time.sleep(0.5)
                announced = re.search(r"streamable HTTP on (http://\S+/mcp)", (tmp_path / "stderr").read_text())
            assert announced is not None, (tmp_path / "stderr").read_text()[-3000:]
            health = httpx.get(announced.group(1).removesuffix("/mcp") + "/healthz", timeout=10)
            assert health.status_code == 200 and health.json()["status"] == "ok"
        finally:
            shell.terminate()
            try:
                shell.wait(timeout=20)
            except subprocess.TimeoutExpired:
                shell.kill()
                shell.wait()


def test_inspector_commands_run_without_a_prompt_on_the_node_they_need() -> None:
    inspector = README.split("## Debugging with the MCP Inspector", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^npx .*$", inspector, flags=re.M)
    assert commands and all(
        command.startswith("npx --yes @modelcontextprotocol/inspector@2.12.0") for command in commands
    )
    assert "Node 22.19 or newer" in inspector


def test_context_table_is_the_benchmarks() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import context_cost  # pyright: ignore[reportMissingImports]

        measured = anyio.run(context_cost.measure)
        table = context_cost.readme_table(measured)
    finally:
        sys.path.remove(str(ROOT / "bench"))
    assert table in README, f"regenerate the table in README.md, Context economy:\n{table}"


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
