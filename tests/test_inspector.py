"""Black box: the official MCP Inspector CLI lists the tools and runs a sandbox model, over stdio and HTTP.

The Inspector is an independent client (TypeScript SDK), so this catches anything our Python client forgives.
It comes from `MCP_INSPECTOR` (what CI installs), else `npx @modelcontextprotocol/inspector@2.12.0`; the tests
skip, saying why, only where neither Node's npx nor an installed Inspector exists.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import TOOL_HINTS, HttpServer, fal_mcp_command, start_http_server

INSPECTOR_VERSION = "2.12.0"
RUN_ARGS = json.dumps({"endpoint_id": "fal-ai/flux/schnell", "input": {"prompt": "a lighthouse at dusk"}})


def inspector_command() -> list[str] | None:
    installed = os.environ.get("MCP_INSPECTOR")
    if installed and Path(installed).exists():
        return [installed]
    npx = shutil.which("npx")
    if npx:
        return [npx, "--yes", f"@modelcontextprotocol/inspector@{INSPECTOR_VERSION}"]
    return None


INSPECTOR = inspector_command()
pytestmark = pytest.mark.skipif(INSPECTOR is None, reason="Node's npx is not installed, so the Inspector cannot run")


def inspect(*args: str, cwd: Path) -> dict[str, Any]:
    assert INSPECTOR is not None
    done = subprocess.run(
        [*INSPECTOR, "--cli", "--format", "json", "-q", *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=cwd,
        check=False,
    )
    assert done.returncode == 0, f"inspector exited {done.returncode}: {done.stderr[-2000:]}"
    return json.loads(done.stdout)["result"]


@pytest.fixture(scope="module")
def http_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    server = start_http_server({}, tmp_path_factory.mktemp("inspector-http"), "--sandbox")
    yield server
    server.stop()


def target(transport: str, http_sandbox: HttpServer) -> list[str]:
    if transport == "stdio":
        # The Inspector spawns stdio servers with a filtered environment: settings go in with -e.
        return [
            "-e",
            "FAL_MCP_SANDBOX=true",
            "-e",
            f"FAL_MCP_STATE_DIR={os.environ['FAL_MCP_STATE_DIR']}",
            fal_mcp_command(),
        ]
    return [http_sandbox.url, "--transport", "http"]


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_inspector_lists_the_tools(transport: str, http_sandbox: HttpServer, tmp_path: Path) -> None:
    tools = {
        tool["name"]: tool
        for tool in inspect(*target(transport, http_sandbox), "--method", "tools/list", cwd=tmp_path)["tools"]
    }
    assert set(tools) == set(TOOL_HINTS)
    for name, hints in TOOL_HINTS.items():
        annotations = tools[name]["annotations"]
        assert (
            annotations["readOnlyHint"],
            annotations["destructiveHint"],
            annotations["idempotentHint"],
            annotations["openWorldHint"],
        ) == hints
        assert tools[name]["outputSchema"]["type"] == "object"
        assert tools[name]["title"]


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_inspector_strict_finds_nothing_unportable(transport: str, http_sandbox: HttpServer, tmp_path: Path) -> None:
    """`--strict` lints every input and output schema for what some client would reject or misread: not one finding,
    not even a warning (a type array, a field without a type)."""
    assert INSPECTOR is not None
    done = subprocess.run(
        [
            *INSPECTOR,
            "--cli",
            "--format",
            "json",
            "-q",
            "--strict",
            *target(transport, http_sandbox),
            "--method",
            "tools/list",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "schemaFindings" not in json.loads(done.stdout), done.stdout[-3000:]
    assert "Warning" not in done.stderr and "Schema portability" not in done.stderr, done.stderr[-3000:]


def call_tool(transport: str, http_sandbox: HttpServer, tool: str, arguments: str, cwd: Path) -> dict[str, Any]:
    command = ["--method", "tools/call", "--tool-name", tool, "--tool-args-json", arguments]
    return inspect(*target(transport, http_sandbox), *command, cwd=cwd)


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_inspector_runs_a_sandbox_model(transport: str, http_sandbox: HttpServer, tmp_path: Path) -> None:
    result = call_tool(transport, http_sandbox, "run-model", RUN_ARGS, tmp_path)
    assert result["isError"] is False
    envelope = result["structuredContent"]
    assert envelope["endpoint_id"] == "fal-ai/flux/schnell"
    assert envelope["status"] == "COMPLETED" and envelope["request_id"]
    assert envelope["output"]["images"][0]["content_type"] == "image/png"
    assert envelope["sandbox"] is True
    kinds = [block["type"] for block in result["content"]]
    assert kinds == ["text", "image", "resource_link"]  # the preview and the link reach an independent client


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_inspector_reads_a_model_schema(transport: str, http_sandbox: HttpServer, tmp_path: Path) -> None:
    """An independent client accepts the compacted output schema of a model-catalog tool."""
    arguments = json.dumps({"endpoint_id": "fal-ai/flux/schnell"})
    result = call_tool(transport, http_sandbox, "get-model-schema", arguments, tmp_path)
    assert result["isError"] is False
    fields = {field["name"]: field for field in result["structuredContent"]["input"]}
    assert fields["prompt"]["required"] is True and "enum" in fields["image_size"]


@pytest.fixture(scope="module")
def http_verbose(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    server = start_http_server({}, tmp_path_factory.mktemp("inspector-tasks"), "--sandbox", "-v")
    yield server
    server.stop()


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_inspector_modern_era_completes_a_run_model_task(
    transport: str, http_verbose: HttpServer, tmp_path: Path
) -> None:
    """The Inspector advertises the tasks extension on 2026-07-28: run-model answers with a task it follows."""
    result = inspect(
        "--protocol-era",
        "modern",
        *target(transport, http_verbose),
        "--method",
        "tools/call",
        "--tool-name",
        "run-model",
        "--tool-args-json",
        RUN_ARGS,
        cwd=tmp_path,
    )
    assert result["isError"] is False and result["structuredContent"]["status"] == "COMPLETED"
    if transport == "http":  # its log shows it really went through tasks/get, not a plain call
        assert "answered as task" in http_verbose.stderr()
