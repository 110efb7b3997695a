"""The MCP App view as a client sees it: which tools name it, what `resources/read` gives, what it may load, that it
was built from the sources in `view/`, and that clients without MCP Apps get exactly what they got before.

The view's behaviour in a real browser, inside a real host implementation, is in `tests/browser/`.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.client import advertise
from mcp.client.stdio import stdio_client
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
from mcp.types import CallToolResult, TextContent, TextResourceContents

from fal_mcp.sandbox import FakeFal, SandboxServer
from fal_mcp.server.view import VIEW_URI, media_domains, view_html
from fal_mcp.settings import Settings
from tests.conftest import env_for
from tests.harness import HttpServer, fal_mcp_command, start_http_server

ROOT = Path(__file__).resolve().parent.parent
VIEW_SOURCES = ROOT / "view"
BUILT = ROOT / "src" / "fal_mcp" / "server" / "view.html"
VIEW_TOOLS = {"run-model", "get-result", "list-requests"}
FAL_MEDIA = ["https://fal.media", "https://*.fal.media", "https://storage.googleapis.com"]
LIMIT_BYTES = 800 * 1024


@pytest.fixture(scope="module")
def http_server(sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    server = start_http_server(env_for(sandbox), tmp_path_factory.mktemp("http"))
    yield server
    server.stop()


@asynccontextmanager
async def spawned(
    transport: str, sandbox: SandboxServer, workdir: Path, request: pytest.FixtureRequest, *, apps: bool = False
) -> AsyncIterator[Client]:
    """A real client on a spawned fal-mcp; with `apps`, the client announces MCP Apps as Claude or VS Code do."""
    extensions = [advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})] if apps else None
    if transport == "http":
        async with Client(request.getfixturevalue("http_server").url, extensions=extensions) as client:
            yield client
        return
    params = StdioServerParameters(command=fal_mcp_command(), args=[], env=env_for(sandbox), cwd=workdir)
    with (workdir / "stdio.stderr").open("a") as log:
        async with Client(stdio_client(params, errlog=log), extensions=extensions) as client:
            yield client


@pytest.mark.anyio
@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_the_three_result_tools_name_the_view_and_no_other(
    transport: str, sandbox: SandboxServer, fake: FakeFal, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with spawned(transport, sandbox, tmp_path, request) as client:
        tools = (await client.list_tools()).tools
    named = {tool.name for tool in tools if (tool.meta or {}).get("ui") == {"resourceUri": VIEW_URI}}
    assert named == VIEW_TOOLS
    assert all("ui" not in (tool.meta or {}) for tool in tools if tool.name not in VIEW_TOOLS)


@pytest.mark.anyio
@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_resources_read_gives_the_built_view_with_its_csp(
    transport: str, sandbox: SandboxServer, fake: FakeFal, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with spawned(transport, sandbox, tmp_path, request) as client:
        listed = {str(resource.uri) for resource in (await client.list_resources()).resources}
        read = await client.read_resource(VIEW_URI)
        advertised = client.server_capabilities.extensions if client.server_capabilities else None
    assert VIEW_URI in listed
    assert advertised is not None and EXTENSION_ID in advertised
    (content,) = read.contents
    assert isinstance(content, TextResourceContents)
    assert content.mime_type == APP_MIME_TYPE
    assert content.text == BUILT.read_text(encoding="utf-8")
    assert content.meta is not None
    # fal's media hosts and the sandbox's origin (its CDN serves the outputs); no connection, frame or base URI.
    assert content.meta["ui"]["csp"] == {"resourceDomains": [*FAL_MEDIA, sandbox.url]}


def test_a_server_on_fal_itself_lists_only_fals_media_hosts() -> None:
    assert media_domains(Settings(_env_file=None)) == FAL_MEDIA  # pyright: ignore[reportCallIssue]
    proxied = Settings(_env_file=None, queue_url="https://fal-proxy.example.com/queue")  # pyright: ignore[reportCallIssue]
    assert media_domains(proxied) == [*FAL_MEDIA, "https://fal-proxy.example.com"]


def test_the_view_is_one_self_contained_document_under_800_kb() -> None:
    html = view_html()
    assert len(html.encode("utf-8")) <= LIMIT_BYTES
    assert html.startswith("<!doctype html>")
    assert html.count("<script") == 1 and "<script>" in html  # one inline script, no src
    assert not re.search(r"<link\b|@import|@font-face", html, re.IGNORECASE)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html, re.IGNORECASE)
    style = html[html.index("<style>") : html.index("</style>")]
    assert not re.search(r"url\(\s*[\"']?(?:https?:)?//", style)  # no stylesheet resource from anywhere


def _inputs_digest() -> str:
    """What view/build.mjs stamps into the document: sha256 over `path NUL bytes NUL` of each input, by path."""
    files = ["package.json", "package-lock.json", "build.mjs"]
    files += [path.relative_to(VIEW_SOURCES).as_posix() for path in (VIEW_SOURCES / "src").rglob("*") if path.is_file()]
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + (VIEW_SOURCES / name).read_bytes() + b"\0")
    return digest.hexdigest()


def test_the_committed_view_was_built_from_the_sources_in_view() -> None:
    stamp = re.search(r"inputs sha256:([0-9a-f]{64})", BUILT.read_text(encoding="utf-8")[:400])
    assert stamp is not None, "view.html carries no stamp: build it with `npm run build` in view/"
    assert stamp.group(1) == _inputs_digest(), "view/ changed since view.html was built: run `npm run build` in view/"


def test_a_fresh_build_gives_the_committed_bytes() -> None:
    node = shutil.which("node")
    if node is None or not (VIEW_SOURCES / "node_modules" / "esbuild").is_dir():
        pytest.skip("node or view/node_modules missing (bash scripts/test installs them)")
    built = subprocess.run(
        [node, "build.mjs", "--check"], cwd=VIEW_SOURCES, capture_output=True, text=True, timeout=120
    )
    assert built.returncode == 0, built.stderr


def _comparable(result: CallToolResult) -> tuple[list[str], str, dict[str, Any]]:
    """A result with its request id blanked (each run has its own), to compare two runs of the same input."""
    assert not result.is_error and result.structured_content is not None
    request_id = str(result.structured_content["request_id"])
    text = "\n".join(block.text for block in result.content if isinstance(block, TextContent))
    structured = {**result.structured_content, "request_id": "-"}
    output = structured["output"]
    output["images"] = [{**image, "url": "-", "file_name": "-"} for image in output["images"]]
    return [block.type for block in result.content], text.replace(request_id, "-"), structured


@pytest.mark.anyio
async def test_a_client_with_mcp_apps_gets_the_same_result_as_one_without(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    arguments = {"endpoint_id": "fal-ai/flux/schnell", "input": {"prompt": "a fox", "seed": 7, "num_images": 2}}
    results: list[tuple[list[str], str, dict[str, Any]]] = []
    for apps in (False, True):
        async with spawned("stdio", sandbox, tmp_path, request, apps=apps) as client:
            results.append(_comparable(await client.call_tool("run-model", arguments)))
    plain, with_apps = results
    assert plain[0] == ["text", "image", "image", "resource_link", "resource_link"]  # previews and links stay
    assert with_apps[0] == plain[0]
    assert with_apps[2] == plain[2]
    # the links' URLs differ per request; everything else in the text is the same
    assert re.sub(r"/files/[^\"\s]+", "", with_apps[1]) == re.sub(r"/files/[^\"\s]+", "", plain[1])
