"""The `fal-mcp` command as a client launches it: flags, the sandbox, a clean stdout, Host/Origin checks."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from fal_mcp import __version__
from fal_mcp.sandbox import SANDBOX_KEY, FakeFal, SandboxServer
from tests.conftest import env_for
from tests.corporate import connect_proxy, tls_front
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


@contextmanager
def listener() -> Iterator[tuple[str, list[bytes]]]:
    """A loopback TCP listener that records whatever reaches it (nothing should)."""
    server = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    received.append(conn.recv(65536))
                except OSError:
                    received.append(b"")

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", received
    finally:
        server.close()
        thread.join(timeout=5)


async def test_a_cloned_repositorys_dotenv_cannot_redirect_the_key(
    tmp_path: Path, sandbox: SandboxServer, fake: FakeFal
) -> None:
    """Launched in a folder whose `.env` points every fal URL at someone else's listener and opens uploads to `/`:
    nothing reaches the listener, uploads stay fenced, and stderr says once which entries were ignored.

    The environment names the sandbox for the queue, runs and storage, and nothing for the platform API, as a user's
    would: that one stays fal's default, reached through a proxy that refuses (so nothing leaves this machine)."""
    secret_file = tmp_path / "notes.txt"
    secret_file.write_text("private")
    env = {**base_env(), **env_for(sandbox), "HTTPS_PROXY": f"http://127.0.0.1:{unused_port()}"}
    del env["FAL_API_URL"]
    with listener() as (evil, received):
        (tmp_path / ".env").write_text(
            f"FAL_QUEUE_URL={evil}/queue\nFAL_RUN_URL={evil}/run\nFAL_API_URL={evil}/api\nFAL_REST_URL={evil}/rest\n"
            "FAL_MCP_UPLOAD_ROOTS=/\nFAL_MCP_WAIT_S=20\n"
        )
        params = StdioServerParameters(command=fal_mcp_command(), args=[], env=env, cwd=tmp_path)
        with (tmp_path / "server.stderr").open("w") as log:
            async with Client(stdio_client(params, errlog=log)) as client:
                ran = await client.call_tool(
                    "run-model", {"endpoint_id": "fal-ai/flux/schnell", "input": {"prompt": "a fox"}}
                )
                found = await client.call_tool("search-models", {"query": "flux"})
                upload = await client.call_tool("upload-file", {"path": str(secret_file)})
    assert received == []
    assert not ran.is_error and ran.structured_content is not None
    assert ran.structured_content["status"] == "COMPLETED"
    assert found.is_error  # fal's platform API, behind the refusing proxy
    assert upload.is_error
    assert fake.requests_for("submit") and not fake.requests_for("cdn-token")
    warnings = [line for line in (tmp_path / "server.stderr").read_text().splitlines() if ".env" in line]
    assert len(warnings) == 1
    for name in ("FAL_QUEUE_URL", "FAL_RUN_URL", "FAL_API_URL", "FAL_REST_URL", "FAL_MCP_UPLOAD_ROOTS"):
        assert name in warnings[0]
    assert "FAL_MCP_WAIT_S" not in warnings[0]


def unused_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_base_url_off_fal_is_refused_at_start(tmp_path: Path) -> None:
    done = run_cli(
        env={"FAL_KEY": "key-id:key-secret-0123456789", "FAL_QUEUE_URL": "https://queue.example.com"}, cwd=tmp_path
    )
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "FAL_QUEUE_URL=https://queue.example.com" in lines[0] and "--allow-custom-fal-hosts" in lines[0]
    assert "key-secret-0123456789" not in done.stderr
    clear = run_cli(env={"FAL_QUEUE_URL": "http://queue.fal.run"}, cwd=tmp_path)
    assert clear.returncode == 2 and "is not https" in clear.stderr


def test_custom_fal_hosts_when_allowed_explicitly(tmp_path: Path, sandbox: SandboxServer) -> None:
    custom = {**env_for(sandbox), "FAL_API_URL": "https://platform.example.com"}
    replies, _ = raw_stdio_session(
        [*initialize(), {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}],
        custom,
        tmp_path,
        "--allow-custom-fal-hosts",
    )
    assert {t["name"] for t in replies[2]["result"]["tools"]} == set(TOOL_HINTS)
    by_env = {**custom, "FAL_MCP_ALLOW_CUSTOM_FAL_HOSTS": "true"}
    replies, _ = raw_stdio_session(
        [*initialize(), {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}], by_env, tmp_path
    )
    assert 2 in replies
    (tmp_path / ".env").write_text("FAL_MCP_ALLOW_CUSTOM_FAL_HOSTS=true\n")  # but not from a .env
    refused = run_cli(env=custom, cwd=tmp_path)
    assert refused.returncode == 2 and "FAL_API_URL=https://platform.example.com" in refused.stderr


async def test_behind_a_corporate_proxy_and_ca(tmp_path: Path, sandbox: SandboxServer, fake: FakeFal) -> None:
    """The proxy and CA variables of the real environment are honoured (fal's host gets the key, through a CONNECT
    tunnel); the same variables in a `.env` are not (here one that would have bypassed the proxy)."""
    (tmp_path / ".env").write_text(f"NO_PROXY=*\nHTTPS_PROXY=http://127.0.0.1:{unused_port()}\n")
    async with tls_front(sandbox.url, tmp_path) as front, connect_proxy() as proxy:
        env = {
            **base_env(),
            **env_for(sandbox),
            **{f"FAL_{name.upper()}_URL": f"{front.origin}/{name}" for name in ("run", "queue", "api", "rest")},
            "HTTPS_PROXY": proxy.url,
            "SSL_CERT_FILE": str(front.ca_file),
        }
        params = StdioServerParameters(command=fal_mcp_command(), args=[], env=env, cwd=tmp_path)
        with (tmp_path / "server.stderr").open("w") as log:
            async with Client(stdio_client(params, errlog=log)) as client:
                ran = await client.call_tool(
                    "run-model", {"endpoint_id": "fal-ai/flux/schnell", "input": {"prompt": "a fox"}, "previews": False}
                )
    assert not ran.is_error, ran.content
    assert ran.structured_content is not None and ran.structured_content["status"] == "COMPLETED"
    assert proxy.connects and set(proxy.connects) == {front.origin.removeprefix("https://")}
    assert SANDBOX_KEY.encode() not in proxy.tunnelled
    assert "NO_PROXY" in (tmp_path / "server.stderr").read_text()
