"""The `fal-mcp` command as a client launches it: flags, the sandbox, a clean stdout, Host/Origin checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from mcp import Client

from fal_mcp import __version__
from tests.harness import TOOL_HINTS, base_env, fal_mcp_command, http_server, initialize, raw_stdio_session

pytestmark = pytest.mark.anyio


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [fal_mcp_command(), *args],
        capture_output=True,
        text=True,
        env={**base_env(), **(env or {})},
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_version() -> None:
    done = run_cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"fal-mcp {__version__}"
    module = subprocess.run([sys.executable, "-m", "fal_mcp", "--version"], capture_output=True, text=True, check=False)
    assert module.stdout.strip() == f"fal-mcp {__version__}"


def test_invalid_configuration_is_explained(tmp_path: Path) -> None:
    done = run_cli(env={"FAL_MCP_PORT": "not-a-port", "FAL_QUEUE_URL": "ftp://x"}, cwd=tmp_path)
    assert done.returncode == 2
    assert "invalid configuration" in done.stderr and "FAL_MCP_PORT" in done.stderr and "FAL_QUEUE_URL" in done.stderr
    assert done.stdout == ""


def test_stdio_sandbox_speaks_only_protocol_on_stdout(tmp_path: Path) -> None:
    """A raw JSON-RPC session with `fal-mcp --sandbox`: every stdout line is a protocol message."""
    messages = [
        *initialize(),
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {
                "name": "run-model",
                "arguments": {"endpoint_id": "fal-ai/flux/schnell", "input": {"prompt": "x"}},
            },
        },
        {
            "jsonrpc": "2.0",
            "id": 4,
            "method": "tools/call",
            "params": {"name": "get-status", "arguments": {"endpoint_id": "fal-ai/..", "request_id": "x"}},
        },
    ]
    replies, stderr = raw_stdio_session(messages, {}, tmp_path, "--sandbox", "-vv")
    assert {t["name"] for t in replies[2]["result"]["tools"]} == set(TOOL_HINTS)
    result = replies[3]["result"]
    assert not result.get("isError")
    assert result["structuredContent"]["sandbox"] is True
    assert result["structuredContent"]["status"] == "COMPLETED"
    assert result["content"][0]["text"].startswith("[SANDBOX")
    assert replies[4]["result"]["isError"] is True
    assert "sandbox" in stderr.lower()


async def test_http_keeps_dns_rebinding_protection(tmp_path: Path) -> None:
    with http_server({}, tmp_path, "--sandbox") as server:
        base = server.url
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "0"},
            },
        }
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        async with httpx.AsyncClient(timeout=10) as http:
            evil_host = await http.post(base, json=body, headers={**headers, "Host": "evil.example:80"})
            evil_origin = await http.post(base, json=body, headers={**headers, "Origin": "http://evil.example"})
            good = await http.post(base, json=body, headers={**headers, "Origin": "http://localhost:3000"})
        assert evil_host.status_code == 421
        assert evil_origin.status_code == 403
        assert good.status_code == 200
        async with Client(server.url) as client:  # and a real client is served normally
            result = await client.call_tool(
                "run-model", {"endpoint_id": "fal-ai/flux/schnell", "input": {"prompt": "x"}}
            )
        assert result.structured_content is not None and result.structured_content["sandbox"] is True


async def test_stateless_http(tmp_path: Path) -> None:
    with http_server({}, tmp_path, "--sandbox", "--stateless") as server:
        async with Client(server.url, mode="legacy") as client:
            result = await client.call_tool(
                "run-model", {"endpoint_id": "fal-ai/flux/schnell", "input": {"prompt": "x"}}
            )
            assert result.structured_content is not None and result.structured_content["status"] == "COMPLETED"
        async with Client(server.url) as client:
            assert {t.name for t in (await client.list_tools()).tools} == set(TOOL_HINTS)
