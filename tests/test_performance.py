"""What keeps fal-mcp fast, checked by what it does rather than by timing it (the figures are `bench/`'s).

- A stdio start loads only what the first `tools/list` needs: not the fal client (httpx), the history (sqlite3),
  the catalog, the tools' own modules and output models, Pillow, the JSON Schema validator, the sandbox or the
  HTTP surface; and no settings library (pydantic-settings) at all.
- The tools and prompts are listed from `server/listing.json`, which must match what they build (regenerate it
  with `python -m fal_mcp.server.listing`).
- The fal connection pool makes its TLS context on the first request, not at start.
- Connections accepted by the HTTP transport skip Nagle's algorithm (else each answer waits ~40 ms).
- Polling a request's status writes to the history only when its state changed.
"""

from __future__ import annotations

import asyncio
import importlib.abc
import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import cast

import pytest
from mcp import Client

from fal_mcp.sandbox import FakeFal, SandboxServer
from fal_mcp.server.build import create_server
from fal_mcp.server.listing import built_entries, stored_entries
from fal_mcp.store.history import History
from fal_mcp.store.records import FILE_NAME
from fal_mcp.web.serving import bind_socket
from tests.conftest import settings_for

HEAVY_AT_START = (
    "PIL",  # previews, made on the first result with an image
    "jsonschema",  # input validation, on the first run or submit
    "fal_mcp.sandbox",  # only with --sandbox
    "fal_mcp.web.app",  # the HTTP surface: health, the gate, REST and its OpenAPI document
    "fal_mcp.web.rest",
    "fal_mcp.web.openapi",
    "httpx",  # the fal client, on the first call that reaches fal
    "fal_mcp.fal.client",
    "sqlite3",  # the request history, on the first call that records or reads it
    "fal_mcp.store.history",
    "fal_mcp.store.opening",
    "fal_mcp.jobs.catalog",  # model schemas and prices
    "fal_mcp.jobs.operations",
    "fal_mcp.jobs.results",  # the output models (the listing holds their schemas)
    "fal_mcp.server.tools",  # the tools themselves, built on their first call
    "fal_mcp.server.prompts",  # the prompts, built on their first use
    "pydantic_settings",  # no longer used: settings.py reads the environment and .env itself
    "dotenv",  # only when there is a .env to read
)

STDIO_START = """
import atexit, json, sys
atexit.register(lambda: open(sys.argv[1], "w").write(json.dumps(sorted(sys.modules))))
from fal_mcp.cli import main
main([])
"""
"""The real stdio start, which writes down every module it loaded when it exits."""


def _ask(server: subprocess.Popen[str], message: dict[str, object]) -> dict[str, object] | None:
    assert server.stdin is not None and server.stdout is not None
    server.stdin.write(json.dumps({"jsonrpc": "2.0", **message}) + "\n")
    server.stdin.flush()
    if "id" not in message:
        return None
    while True:  # a notification may come first
        answer = json.loads(server.stdout.readline())
        if answer.get("id") == message["id"]:
            return answer


def test_a_stdio_start_loads_nothing_it_does_not_need(tmp_path: Path) -> None:
    """Started as a client starts it, up to the first `tools/list` answer."""
    modules = tmp_path / "modules.json"
    env = {"PATH": os.environ.get("PATH", ""), "FAL_KEY": "key-id:key-secret", "FAL_MCP_STATE_DIR": str(tmp_path)}
    with subprocess.Popen(
        [sys.executable, "-c", STDIO_START, str(modules)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
        env=env,
    ) as server:
        hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}
        assert _ask(server, {"id": 1, "method": "initialize", "params": hello})
        _ask(server, {"method": "notifications/initialized"})
        listed = _ask(server, {"id": 2, "method": "tools/list"})
        assert listed is not None and len(cast(dict[str, list[object]], listed["result"])["tools"]) == 9
        assert server.stdin is not None
        server.stdin.close()
        assert server.wait(timeout=30) == 0
    loaded = set(json.loads(modules.read_text()))
    heavy = sorted(m for m in loaded if any(m == h or m.startswith(f"{h}.") for h in HEAVY_AT_START))
    assert heavy == []


def test_the_precomputed_listing_is_current() -> None:
    """`listing.json` is what the tools and prompts build; after changing one, run `python -m fal_mcp.server.listing`."""
    assert stored_entries() == built_entries(), "listing.json is stale: run python -m fal_mcp.server.listing"


@pytest.mark.anyio
async def test_the_listed_tools_and_prompts_are_the_built_ones(sandbox: SandboxServer, fake: FakeFal) -> None:
    """A served tools/list and prompts/list are the listing; a deferred tool or prompt used for the first time works
    as the real one."""
    async with Client(create_server(settings_for(sandbox))) as client:
        tools = (await client.list_tools()).tools
        prompts = (await client.list_prompts()).prompts
        ran = await client.call_tool("run-model", {"endpoint_id": "fal-ai/flux/schnell", "input": {"prompt": "x"}})
        refused = await client.call_tool("get-status", {"request_id": 12, "endpoint_id": "fal-ai/flux"})
        rendered = await client.get_prompt(prompts[0].name, {arg.name: "a fox" for arg in prompts[0].arguments or []})
    built = built_entries()
    assert [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in tools] == built["tools"]
    assert [prompt.model_dump(mode="json", by_alias=True, exclude_none=True) for prompt in prompts] == built["prompts"]
    assert not ran.is_error and ran.structured_content is not None and ran.structured_content["output"]["images"]
    assert refused.is_error  # the real tool's argument checks
    assert rendered.messages


@pytest.mark.anyio
async def test_the_fal_pool_makes_its_tls_context_on_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    from fal_mcp.fal.client import FalClient
    from fal_mcp.settings import Settings

    made: list[object] = []
    real = httpx.AsyncHTTPTransport.__init__

    def counting(self: httpx.AsyncHTTPTransport, *args: object, **kwargs: object) -> None:
        made.append(self)
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx.AsyncHTTPTransport, "__init__", counting)
    settings = Settings(_env_file=None, fal_key="key-id:key-secret", queue_url="http://127.0.0.1:9")  # pyright: ignore[reportCallIssue]
    async with FalClient.open(settings) as fal:
        assert made == []
        with pytest.raises(httpx.ConnectError):  # nothing listens there: what matters is the pool it built
            await fal.public_http.get("http://127.0.0.1:9/")
        assert len(made) == 1


@pytest.mark.anyio
async def test_http_connections_skip_nagle() -> None:
    sock = bind_socket("127.0.0.1", 0)
    nodelay: asyncio.Queue[int] = asyncio.Queue()

    async def accepted(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nodelay.put_nowait(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(accepted, sock=sock)
    async with server:
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        assert await asyncio.wait_for(nodelay.get(), 5) != 0
        writer.close()


@pytest.mark.anyio
async def test_polling_a_request_whose_state_has_not_changed_writes_nothing(tmp_path: Path) -> None:
    history = History.open(tmp_path)
    watcher = sqlite3.connect(tmp_path / FILE_NAME)  # `data_version` moves when another connection commits

    def version() -> int:
        return watcher.execute("PRAGMA data_version").fetchone()[0]

    try:
        row = await history.begin("partition", "fal-ai/flux/schnell", {"prompt": "a fox"}, "submit")
        await history.sent(row, "request-1", "IN_QUEUE")
        before = version()
        await history.observe("partition", "request-1", "IN_PROGRESS")
        changed = version()
        assert changed != before
        for _ in range(3):
            await history.observe("partition", "request-1", "IN_PROGRESS")
        assert version() == changed
        await history.observe("partition", "request-1", "COMPLETED")
        assert version() != changed
        record = await history.get("partition", "request-1")
        assert record is not None and record.state == "COMPLETED"
    finally:
        watcher.close()
        history.close()


@pytest.mark.anyio
async def test_a_request_to_fal_fails_no_import(sandbox: SandboxServer, fake: FakeFal) -> None:
    """httpcore asks `sniffio` which async library runs, four times per request: uninstalled, each ask was a failed
    import (a search of every path entry, about 0.2 ms of CPU per request). After a first request, a request makes
    no import at all."""
    from fal_mcp.fal.client import FalClient, RequestOptions
    from fal_mcp.fal.endpoint import EndpointId

    class Lookups(importlib.abc.MetaPathFinder):
        def __init__(self) -> None:
            self.names: list[str] = []

        def find_spec(self, fullname: str, path: object, target: object = None) -> None:
            self.names.append(fullname)  # only imports that sys.modules cannot answer get here

    flux = EndpointId.parse("fal-ai/flux/schnell")
    async with FalClient.open(settings_for(sandbox)) as fal:
        submitted = await fal.submit(flux, {"prompt": "a fox"}, RequestOptions())
        await fal.status(flux, submitted.request_id)
        lookups = Lookups()
        sys.meta_path.insert(0, lookups)
        try:
            for _ in range(3):
                await fal.status(flux, submitted.request_id)
        finally:
            sys.meta_path.remove(lookups)
    assert lookups.names == []
