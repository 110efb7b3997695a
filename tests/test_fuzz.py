"""Property-based: whatever arguments a model (or an attacker) sends any tool, the server answers with a result
or one clear error, sends nothing anywhere but the fake fal, shows no key, and keeps serving.

Arguments are drawn per tool from its own input schema: a mix of plausible values, hostile ids (`..`, `%2F`,
`@`, `#`, control characters, unicode look-alikes), huge strings and wrong types. The server runs in process
behind a recording transport, so every connection it opens is seen.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.types import CallToolResult, TextContent, Tool

from fal_mcp.sandbox import FakeFal, SandboxServer
from fal_mcp.server.build import create_server
from tests.conftest import OTHER_KEY, settings_for

KEY_ID, KEY_SECRET = OTHER_KEY.split(":")

HOSTILE_TEXT = [
    "",
    " ",
    "..",
    "../../etc/passwd",
    "fal-ai/../../admin",
    "fal-ai/flux%2F..%2Fx",
    "%2e%2e/%2e%2e",
    "evil.example@fal-ai/flux",
    "fal-ai/flux?x=1",
    "fal-ai/flux#x",
    "fal-ai\\flux",
    "http://evil.example/x",
    "//evil.example/x",
    "fаl-ai/flux",  # Cyrillic a
    "fal-ai/flux\u200b",
    "fal-ai/flux\x00",
    "fal-ai/flux\r\nHost: evil.example",
    "\ud7ff\ue000\U0010ffff",
    "file:///etc/passwd",
    "~/.ssh/id_rsa",
    "a" * 100_000,
    "fal-ai/flux/schnell",
    "fal-ai/kling-video/v2/master/text-to-video",
    "workflows/sandbox/echo",
    "0000-0000-unknown",
]

VALUES = st.one_of(
    st.sampled_from(HOSTILE_TEXT),
    st.text(max_size=40),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.sampled_from(HOSTILE_TEXT), max_size=3),
    st.dictionaries(st.text(max_size=10), st.sampled_from(HOSTILE_TEXT), max_size=3),
)


def arguments_for(tool: Tool) -> st.SearchStrategy[dict[str, Any]]:
    """Some of the tool's own arguments, each filled with anything from `VALUES`, plus stray ones."""
    names = sorted(tool.input_schema.get("properties", {}))
    chosen = st.lists(st.sampled_from(names), unique=True, max_size=len(names)) if names else st.just([])
    extras = st.dictionaries(st.text(max_size=12), VALUES, max_size=2)

    def build(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
        fixed = st.fixed_dictionaries(dict.fromkeys(keys, VALUES))
        return st.tuples(fixed, extras).map(lambda pair: {**pair[1], **pair[0]})

    return chosen.flatmap(build)


class Recording(httpx.AsyncBaseTransport):
    """Sees every request the server's fal pool makes, before it leaves."""

    def __init__(self) -> None:
        self.urls: list[httpx.URL] = []
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(request.url)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Fuzzed:
    """A server (in a portal's event loop), its tools, and what it has sent out."""

    def __init__(self, portal: BlockingPortal, client: Client, tools: list[Tool], recording: Recording) -> None:
        self.portal = portal
        self.client = client
        self.tools = tools
        self.recording = recording

    def call(self, name: str, arguments: dict[str, Any]) -> CallToolResult:
        async def call() -> CallToolResult:
            with anyio.fail_after(60):
                return await self.client.call_tool(name, arguments)

        return self.portal.call(call)


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[tuple[Fuzzed, SandboxServer]]:
    with SandboxServer(FakeFal(time_scale=0.02, keys=(OTHER_KEY,))) as sandbox, start_blocking_portal() as portal:
        recording = Recording()
        server = create_server(settings_for(sandbox, key=OTHER_KEY, wait_s=5, max_wait_s=10), transport=recording)
        client = portal.wrap_async_context_manager(Client(server))
        with client as connected:
            tools = portal.call(connected.list_tools).tools
            yield Fuzzed(portal, connected, tools, recording), sandbox


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_any_arguments_to_any_tool(fuzzed: tuple[Fuzzed, SandboxServer], data: st.DataObject) -> None:
    server, sandbox = fuzzed
    tool = data.draw(st.sampled_from(server.tools), label="tool")
    arguments = data.draw(arguments_for(tool), label="arguments")
    result = server.call(tool.name, arguments)

    texts = [block.text for block in result.content if isinstance(block, TextContent)]
    if result.is_error:
        assert len(texts) == 1 and texts[0].strip(), "an error is one plain message"
        assert tool.name in texts[0][:200], f"the error says which tool failed: {texts[0][:200]}"
        assert "Traceback" not in texts[0]
    else:
        assert result.structured_content is not None, "a success carries its structured result"
    shown = json.dumps(result.model_dump(mode="json"), ensure_ascii=False)
    assert KEY_SECRET not in shown and KEY_ID not in shown
    assert {(url.host, url.port) for url in server.recording.urls} <= {("127.0.0.1", _port(sandbox))}


def test_the_server_still_serves_after_the_fuzzing(fuzzed: tuple[Fuzzed, SandboxServer]) -> None:
    server, _ = fuzzed
    result = server.call("run-model", {"endpoint_id": "fal-ai/flux/schnell", "input": {"prompt": "still here"}})
    assert not result.is_error and result.structured_content is not None
    assert result.structured_content["status"] == "COMPLETED"


def _port(sandbox: SandboxServer) -> int:
    return httpx.URL(sandbox.url).port or 80
