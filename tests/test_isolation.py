"""One caller never changes what another gets: a bogus key does not switch input checks off, and a flood of calls
does not evict another caller's tasks.

Both run against a spawned `fal-mcp --transport http --auth fal-key` (each caller brings its own key, as on a
shared server), with real MCP clients and the sandbox fake fal.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fal_mcp.sandbox import SANDBOX_KEY, FakeFal, SandboxServer
from tests.conftest import env_for
from tests.harness import HttpServer, bearer_client, start_http_server
from tests.test_tools import error_text

pytestmark = pytest.mark.anyio

FLUX = "fal-ai/flux/schnell"
BOGUS_KEY = "bogus-key-id:bogus-key-secret-0000000000"
"""Key-shaped, so the gate lets it through to fal, which refuses it (401)."""


@pytest.fixture
def byok(sandbox: SandboxServer, tmp_path: Path) -> Iterator[HttpServer]:
    """A fresh server per test: its model catalog and tasks start empty."""
    server = start_http_server(env_for(sandbox, key=None, FAL_MCP_AUTH="fal-key"), tmp_path)
    yield server
    server.stop()


async def test_a_bogus_key_never_switches_input_checks_off_for_another_caller(byok: HttpServer, fake: FakeFal) -> None:
    async with bearer_client(byok.url, BOGUS_KEY) as intruder:
        refused = error_text(await intruder.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "x"}}))
    assert "fal rejected the key" in refused
    assert [r.route for r in fake.requests] == ["models", "submit"]  # its schema lookup failed with 401 too
    async with bearer_client(byok.url, SANDBOX_KEY) as victim:
        mistaken = error_text(
            await victim.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "x", "num_images": "two"}})
        )
    assert "input refused before sending" in mistaken and "num_images" in mistaken
    victims = [r.route for r in fake.requests if r.headers.get("authorization") == f"Key {SANDBOX_KEY}"]
    assert victims == ["models"]  # checked against the schema, and nothing was queued or billed
