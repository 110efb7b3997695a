"""Clients on older protocol versions get only the content blocks their version knows.

`resource_link` blocks arrived in protocol 2025-06-18. A client that negotiated 2024-11-05 or 2025-03-26 refuses a
result holding one (mcp 1.9.4 raises a ValidationError, the TypeScript SDK 1.12 a ZodError): the job has run and
been billed, and the user never sees it. These tests drive the real server through run-model with media with a
real old client (mcp 1.9.4, in a virtualenv of its own, created once under `.tools/`) and with raw JSON-RPC at
both old versions: over stdio, stateful and stateless streamable HTTP. A stateless request without an
`MCP-Protocol-Version` header is 2025-03-26, as the spec says.
"""

from __future__ import annotations

import json
import subprocess
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fal_mcp.sandbox import SandboxServer
from tests.conftest import env_for
from tests.harness import HttpServer, base_env, fal_mcp_command, initialize, raw_stdio_session, start_http_server

ROOT = Path(__file__).resolve().parent.parent
OLD_CLIENT = ROOT / "tests" / "old_client.py"
OLD_MCP = ("mcp==1.9.4", "pydantic==2.11.7")  # 1.9.4 imports a pydantic internal that 2.12 removed
OLD_VENV = ROOT / ".tools" / "py-mcp-1.9.4"
KNOWN_BLOCKS = {  # content block types each protocol version defines
    "2024-11-05": {"text", "image", "resource"},
    "2025-03-26": {"text", "image", "audio", "resource"},
}
RUN = {"endpoint_id": "fal-ai/flux/schnell", "input": {"prompt": "a lighthouse at dusk", "num_images": 2}}


def old_python() -> Path:
    """The mcp 1.9.4 virtualenv's Python, made once (scripts/test makes it too; this is for a bare pytest)."""
    python = OLD_VENV / "bin" / "python"
    marker = OLD_VENV / ".installed"
    if not marker.exists():
        venv.create(OLD_VENV, with_pip=True, clear=True)
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *OLD_MCP],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"mcp 1.9.4 could not be installed from PyPI: {done.stderr[-500:]}")
        marker.write_text(" ".join(OLD_MCP))
    return python


@pytest.fixture(scope="module")
def old_client() -> Path:
    return old_python()


@pytest.fixture(scope="module")
def stateful(sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    server = start_http_server(env_for(sandbox), tmp_path_factory.mktemp("old-stateful"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stateless(sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    server = start_http_server(env_for(sandbox), tmp_path_factory.mktemp("old-stateless"), "--stateless")
    yield server
    server.stop()


def assert_readable(result: dict[str, Any], version: str) -> None:
    """What an old client needs: a result it can parse, of block types it knows, with the media links in text."""
    assert "raised" not in result, result
    assert not result["is_error"], result["text"]
    assert set(result["types"]) <= KNOWN_BLOCKS[version], result["types"]
    links = [line for line in result["text"].splitlines() if line.startswith("- image at output.images[")]
    assert len(links) == 2, result["text"]  # each image's link, in the text, where the old client can read it


# -- mcp 1.9.4 ------------------------------------------------------------------------------------------------


def run_old_client(python: Path, *args: str, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    done = subprocess.run(
        [str(python), str(OLD_CLIENT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**base_env(), **env},
        cwd=cwd,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("transport", ["stdio", "stateful", "stateless"])
def test_mcp_1_9_4_reads_a_run_with_media(
    transport: str,
    old_client: Path,
    sandbox: SandboxServer,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    if transport == "stdio":
        report = run_old_client(old_client, "stdio", fal_mcp_command(), env=env_for(sandbox), cwd=tmp_path)
    else:
        server: HttpServer = request.getfixturevalue(transport)
        report = run_old_client(old_client, "http", server.url, env={}, cwd=tmp_path)
    assert report["protocol"] == "2025-03-26"
    assert "run-model" in report["tools"]
    for label in ("previews", "no-previews"):
        assert_readable(report["results"][label], "2025-03-26")
    assert report["results"]["previews"]["types"] == ["text", "image", "image", "text"]
    assert report["results"]["no-previews"]["types"] == ["text", "text"]


# -- raw JSON-RPC at 2024-11-05 and 2025-03-26 -------------------------------------------------------------------


def call(request_id: int, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }


def as_report(reply: dict[str, Any]) -> dict[str, Any]:
    result = reply["result"]
    blocks = result["content"]
    return {
        "is_error": result.get("isError", False),
        "types": [block["type"] for block in blocks],
        "text": "\n".join(block["text"] for block in blocks if block["type"] == "text"),
    }


@pytest.mark.parametrize("version", sorted(KNOWN_BLOCKS))
def test_raw_stdio_client_at_an_old_version(version: str, sandbox: SandboxServer, tmp_path: Path) -> None:
    replies, _ = raw_stdio_session(
        [*initialize(version=version), call(2, "run-model", RUN)], env_for(sandbox), tmp_path
    )
    assert replies[1]["result"]["protocolVersion"] == version
    assert_readable(as_report(replies[2]), version)


def post(http: httpx.Client, url: str, message: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    return http.post(url, json=message, headers={"Accept": "application/json, text/event-stream", **headers})


def answer(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC answer of a POST, whether it came as JSON or as an SSE stream (progress first, then it)."""
    assert response.status_code == 200, response.text
    if response.headers["content-type"].startswith("application/json"):
        return response.json()
    events = [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]
    return next(event for event in events if "id" in event)


@pytest.mark.parametrize("version", sorted(KNOWN_BLOCKS))
def test_raw_http_client_at_an_old_version_stateful(version: str, stateful: HttpServer) -> None:
    hello, ready = initialize(version=version)
    with httpx.Client(timeout=60) as http:
        opened = post(http, stateful.url, hello, {})
        assert answer(opened)["result"]["protocolVersion"] == version
        session = {"Mcp-Session-Id": opened.headers["mcp-session-id"]}
        if version != "2024-11-05":  # a 2025-03-26 client may send its version; a 2024-11-05 one knows no such header
            session["MCP-Protocol-Version"] = version
        assert post(http, stateful.url, ready, session).status_code == 202
        assert_readable(as_report(answer(post(http, stateful.url, call(2, "run-model", RUN), session))), version)


def test_raw_stateless_request_without_a_version_header_is_2025_03_26(stateless: HttpServer) -> None:
    with httpx.Client(timeout=60) as http:
        assert_readable(as_report(answer(post(http, stateless.url, call(7, "run-model", RUN), {}))), "2025-03-26")
        newer = as_report(
            answer(post(http, stateless.url, call(8, "run-model", RUN), {"MCP-Protocol-Version": "2025-06-18"}))
        )
    # a newer client keeps its links
    assert newer["types"] == ["text", "image", "image", "resource_link", "resource_link"]


def test_scripts_test_prepares_the_old_client_it_pins() -> None:
    script = (ROOT / "scripts" / "test").read_text()
    assert all(pin in script for pin in OLD_MCP) and ".tools/py-mcp-1.9.4" in script
