"""Issue 4 end to end: find a model, learn its inputs, be refused before billing, use local files, see the result.

Through the real MCP client, in memory, over stdio and over streamable HTTP, against the sandbox fake fal.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest
from mcp import Client, types
from mcp.types import CallToolResult, ImageContent, ResourceLink
from PIL import Image

from fal_mcp.sandbox import SANDBOX_KEY, FakeFal, Fault, SandboxServer
from fal_mcp.sandbox.models.png import picture
from fal_mcp.server.build import create_server
from tests.conftest import env_for, settings_for
from tests.harness import TRANSPORTS, HttpServer, connect, start_http_server
from tests.test_security import Trap
from tests.test_tools import structured, text_of

pytestmark = pytest.mark.anyio
per_transport = pytest.mark.parametrize("transport", TRANSPORTS)

FLUX = "fal-ai/flux/schnell"
I2I = "fal-ai/flux/dev/image-to-image"
INLINE = "fal-ai/sandbox/inline-image"
ECHO = "workflows/sandbox/echo"
PREVIEW_EDGE = 512
PREVIEW_MAX_BYTES = 100_000
TEXT_CAP = 20_000
UPLOAD_CAP_MB = 0.05
ROOT = Path(__file__).resolve().parent.parent


def refusal(result: CallToolResult) -> str:
    assert result.is_error, f"expected a refusal, got {text_of(result)[:500]}"
    assert len(result.content) == 1
    return text_of(result)


def previews(result: CallToolResult) -> list[Image.Image]:
    images: list[Image.Image] = []
    for block in result.content:
        if isinstance(block, ImageContent):
            data = base64.b64decode(block.data)
            assert block.mime_type == "image/jpeg" and len(data) <= PREVIEW_MAX_BYTES
            image = Image.open(io.BytesIO(data))
            image.load()
            assert max(image.size) <= PREVIEW_EDGE
            images.append(image)
    return images


def links(result: CallToolResult) -> list[str]:
    return [block.uri for block in result.content if isinstance(block, ResourceLink)]


def billed(fake: FakeFal) -> list[str]:
    return [r.route for r in fake.requests if r.route in ("submit", "run")]


# -- the servers -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Disk:
    """A fake home with an allowed folder (the home itself), keys, an escape and an oversized file."""

    home: Path
    outside: Path

    @property
    def cat(self) -> Path:
        return self.home / "pictures" / "cat.png"


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Disk:
    home = tmp_path_factory.mktemp("home")
    outside = tmp_path_factory.mktemp("outside")
    (home / "pictures").mkdir()
    (home / "pictures" / "cat.png").write_bytes(picture(40, 30, 7))
    (home / "pictures" / "été 2024.png").write_bytes(picture(20, 20, 3))
    (home / "pictures" / "big.png").write_bytes(os.urandom(int(UPLOAD_CAP_MB * 1_000_000) + 10_000))
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a real key\n")
    (home / "keys").mkdir()
    (home / "keys" / "server.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    (home / ".env").write_text("FAL_KEY=not-a-real-key\n")
    (outside / "secret.png").write_bytes(picture(8, 8, 1))
    (home / "pictures" / "escape.png").symlink_to(outside / "secret.png")
    return Disk(home=home, outside=outside)


def upload_settings(disk: Disk) -> dict[str, str]:
    return {"upload_roots": str(disk.home), "upload_max_mb": str(UPLOAD_CAP_MB)}


@pytest.fixture(scope="module")
def http_plain(sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    """An HTTP server without upload roots: uploads are off."""
    server = start_http_server(env_for(sandbox), tmp_path_factory.mktemp("http-plain"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http_uploads(sandbox: SandboxServer, disk: Disk, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    """An HTTP server whose operator allowed the fake home."""
    env = env_for(sandbox, **{f"FAL_MCP_{k.upper()}": v for k, v in upload_settings(disk).items()}, HOME=str(disk.home))
    server = start_http_server(env, tmp_path_factory.mktemp("http-uploads"))
    yield server
    server.stop()


@pytest.fixture
def open_client(
    transport: str, sandbox: SandboxServer, fake: FakeFal, tmp_path: Path, request: pytest.FixtureRequest
) -> Any:
    @asynccontextmanager
    async def opened(*, uploads: Disk | None = None) -> AsyncIterator[Client]:
        settings = upload_settings(uploads) if uploads is not None else {}
        url = None
        if transport == "http":
            url = request.getfixturevalue("http_uploads" if uploads else "http_plain").url
        async with connect(transport, sandbox, tmp_path, http_url=url, **settings) as client:
            yield client

    return opened


# -- search -> schema -> refused mistake -> corrected run -> preview and links ---------------------------


@per_transport
async def test_agent_finds_a_model_learns_it_is_refused_then_sees_the_picture(open_client: Any, fake: FakeFal) -> None:
    async with open_client() as client:
        found = structured(await client.call_tool("search-models", {"query": "image", "category": "text-to-image"}))
        hit = next(model for model in found["models"] if model["endpoint_id"] == FLUX)
        assert hit["name"] and hit["category"] == "text-to-image" and "\n" not in hit["description"]
        assert hit["price"] == {"unit_price": 0.003, "unit": "megapixels", "currency": "USD"}

        schema = structured(await client.call_tool("get-model-schema", {"endpoint_id": FLUX}))
        fields = {field["name"]: field for field in schema["input"]}
        assert fields["prompt"]["required"] is True and fields["prompt"]["type"] == "string"
        assert "landscape_16_9" in fields["image_size"]["enum"] and fields["image_size"]["default"] == "landscape_4_3"
        assert (fields["num_images"]["minimum"], fields["num_images"]["maximum"]) == (1, 4)
        assert "images" in [field["name"] for field in schema["output"]]
        resource = await client.read_resource(f"fal://models/{FLUX}/schema")
        assert json.loads(resource.contents[0].text)["input"] == schema["input"]  # pyright: ignore[reportAttributeAccessIssue]

        fake.reset()
        mistake = refusal(
            await client.call_tool(
                "run-model",
                {"endpoint_id": FLUX, "input": {"promt": "a red fox", "image_size": "huge", "num_images": 9}},
            )
        )
        assert billed(fake) == [], "a refused input must never reach fal's run or queue"
        assert "nothing was billed" in mistake
        assert "missing required field 'prompt'" in mistake
        assert "unknown field 'promt' (did you mean 'prompt'?)" in mistake
        assert "image_size" in mistake and "landscape_16_9" in mistake  # the allowed values are listed
        assert "num_images: must be at most 4, got 9" in mistake

        result = await client.call_tool(
            "run-model", {"endpoint_id": FLUX, "input": {"prompt": "a red fox", "num_images": 2}}
        )
    envelope = structured(result)
    assert billed(fake) == ["submit"]
    urls = [image["url"] for image in envelope["output"]["images"]]
    assert len(previews(result)) == 2
    assert links(result) == urls
    assert "2 of 2 images previewed" in text_of(result)
    for block in result.content:
        if isinstance(block, ImageContent):
            assert block.data not in json.dumps(envelope)  # previews never go into structuredContent
    cdn_fetches = fake.requests_for("cdn")
    assert cdn_fetches and all("authorization" not in r.headers for r in cdn_fetches)


# -- uploads ------------------------------------------------------------------------------------------------


@per_transport
async def test_upload_file_is_fenced_and_its_url_feeds_a_run(
    open_client: Any, fake: FakeFal, disk: Disk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(disk.home))  # what "~" means to the in-process and stdio servers
    pictures = disk.home / "pictures"
    refused = {
        "~/.ssh/id_rsa": "hidden",
        f"{disk.home}/.env": "hidden",
        f"{disk.home}/keys/server.pem": "key or secret",
        f"{pictures}/../../{disk.outside.name}/secret.png": "'..'",
        f"{pictures}/escape.png": "outside the allowed folders",
        f"{disk.outside}/secret.png": "outside the allowed folders",
        f"{pictures}/big.png": "upload limit",
        f"{pictures}/missing.png": "does not exist",
        "pictures/cat.png": "absolute",
    }
    async with open_client(uploads=disk) as client:
        for path, reason in refused.items():
            message = refusal(await client.call_tool("upload-file", {"path": path}))
            assert message.startswith("upload-file:") and reason in message, (path, message)
        assert not fake.storage.files and fake.requests_for("cdn-upload") == [], "nothing refused was uploaded"

        uploaded = structured(await client.call_tool("upload-file", {"path": "~/pictures/cat.png"}))
        ran = structured(
            await client.call_tool(
                "run-model", {"endpoint_id": I2I, "input": {"prompt": "as a painting", "image_url": uploaded["url"]}}
            )
        )
        by_uri = structured(
            await client.call_tool(
                "run-model", {"endpoint_id": I2I, "input": {"prompt": "again", "image_url": disk.cat.as_uri()}}
            )
        )
    assert uploaded["file_name"] == "cat.png" and uploaded["content_type"] == "image/png"
    assert ran["output"]["images"] and by_uri["output"]["images"]
    sent = [json.loads(r.body)["image_url"] for r in fake.requests_for("submit")]
    assert sent[0] == uploaded["url"]
    assert sent[1].startswith(f"{fake_cdn(fake)}/files/") and sent[1] != sent[0]  # the file:// URI was uploaded first
    for url in sent:
        assert fake.storage.files[url.rsplit("/", 1)[1]].data == disk.cat.read_bytes()
    assert_credentials_kept_apart(fake)


def fake_cdn(fake: FakeFal) -> str:
    token = next(r for r in fake.requests if r.route == "cdn-upload")
    return f"http://{token.headers['host']}/cdn"


def assert_credentials_kept_apart(fake: FakeFal) -> None:
    """The key goes only to fal's APIs; the CDN upload gets the CDN token; a signed URL gets nothing."""
    for recorded in fake.requests:
        authorization = recorded.headers.get("authorization")
        if recorded.route == "cdn-upload":
            assert authorization is not None and authorization.startswith("Bearer ")
            assert SANDBOX_KEY not in authorization
        elif recorded.route in ("signed-upload", "cdn"):
            assert authorization is None, recorded.route
        else:
            assert authorization == f"Key {SANDBOX_KEY}", recorded.route


@pytest.mark.parametrize("transport", ["memory", "http"])
async def test_without_configured_roots_uploads_are_off(open_client: Any, fake: FakeFal, disk: Disk) -> None:
    async with open_client() as client:
        message = refusal(await client.call_tool("upload-file", {"path": str(disk.cat)}))
    assert "uploads are off" in message and "FAL_MCP_UPLOAD_ROOTS" in message
    assert fake.requests == []


async def test_upload_falls_back_to_a_signed_url_without_credentials(
    sandbox: SandboxServer, fake: FakeFal, disk: Disk, tmp_path: Path
) -> None:
    async with connect("memory", sandbox, tmp_path, **upload_settings(disk)) as client:
        fake.inject(Fault(route="cdn-upload", status=503, body={"detail": "CDN unavailable"}))
        uploaded = structured(await client.call_tool("upload-file", {"path": str(disk.cat)}))
        fake.inject(Fault(route="cdn-upload", status=503, times=5))
        fake.inject(Fault(route="signed-upload", status=500, times=5))
        failed = refusal(await client.call_tool("upload-file", {"path": str(disk.cat)}))
    assert [r.route for r in fake.requests if r.route != "cdn-token"] == [
        "cdn-upload",
        "upload-initiate",
        "signed-upload",
        "cdn-upload",
        "upload-initiate",
        "signed-upload",
    ]
    assert fake.storage.files[uploaded["url"].rsplit("/", 1)[1]].data == disk.cat.read_bytes()
    assert "CDN upload" in failed and "signed-URL fallback" in failed and "500" in failed
    assert_credentials_kept_apart(fake)


async def test_a_file_name_in_any_script_uploads(
    sandbox: SandboxServer, fake: FakeFal, disk: Disk, tmp_path: Path
) -> None:
    async with connect("memory", sandbox, tmp_path, **upload_settings(disk)) as client:
        uploaded = structured(
            await client.call_tool("upload-file", {"path": (disk.home / "pictures" / "été 2024.png").as_uri()})
        )
    assert uploaded["file_name"] == "été 2024.png" and uploaded["size_bytes"] > 0
    assert fake.requests_for("cdn-upload")[0].headers["x-fal-file-name"] == "%C3%A9t%C3%A9 2024.png"


async def test_uploads_are_off_without_roots_and_over_http_client_roots_do_not_count(
    sandbox: SandboxServer, fake: FakeFal, disk: Disk, tmp_path: Path
) -> None:
    async def share_home(_context: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri=disk.home.as_uri(), name="home")])

    async with connect("memory", sandbox, tmp_path) as client:
        off = refusal(await client.call_tool("upload-file", {"path": str(disk.cat)}))
        in_input = refusal(
            await client.call_tool(
                "run-model", {"endpoint_id": I2I, "input": {"prompt": "x", "image_url": disk.cat.as_uri()}}
            )
        )
    assert "uploads are off" in off and "FAL_MCP_UPLOAD_ROOTS" in off
    assert in_input.startswith("run-model: input.image_url: uploads are off")
    # A stdio client that shares its roots (2025-11-25 sessions carry roots) widens the fence ...
    async with Client(create_server(settings_for(sandbox)), mode="legacy", list_roots_callback=share_home) as client:
        shared = structured(await client.call_tool("upload-file", {"path": str(disk.cat)}))
        hidden = refusal(await client.call_tool("upload-file", {"path": str(disk.home / ".env")}))
    assert shared["url"] and "hidden" in hidden
    # ... but over HTTP a client's roots name folders on its own disk, not the server's.
    http = settings_for(sandbox, transport="http")
    async with Client(create_server(http), mode="legacy", list_roots_callback=share_home) as client:
        assert "uploads are off" in refusal(await client.call_tool("upload-file", {"path": str(disk.cat)}))
    assert billed(fake) == []


# -- a 5 MB inline data URI ---------------------------------------------------------------------------------


@per_transport
async def test_a_5_mb_inline_data_uri_stays_out_of_the_text_but_is_previewed(open_client: Any) -> None:
    async with open_client() as client:
        result = await client.call_tool(
            "run-model", {"endpoint_id": INLINE, "input": {"prompt": "noise", "megabytes": 5}}
        )
    envelope = structured(result)
    uri = envelope["output"]["images"][0]["url"]
    assert uri.startswith("data:image/png;base64,") and len(uri) > 5_000_000  # the output stays fal's, untouched
    text = text_of(result)
    assert len(text) < TEXT_CAP and "base64," not in text
    assert "image/png data URI" in text and "output.images[0].url" in text
    (preview,) = previews(result)
    assert preview.size == (PREVIEW_EDGE, PREVIEW_EDGE)  # 1290 px square, downscaled
    assert links(result) == []  # nothing to link: the data is inline


# -- the rest, in memory ------------------------------------------------------------------------------------


async def test_previews_turn_off_links_stay(sandbox: SandboxServer, fake: FakeFal, tmp_path: Path) -> None:
    arguments = {"endpoint_id": FLUX, "input": {"prompt": "x"}}
    async with connect("memory", sandbox, tmp_path) as client:
        off = await client.call_tool("run-model", {**arguments, "previews": False})
        rid = structured(off)["request_id"]
        later = await client.call_tool("get-result", {"endpoint_id": FLUX, "request_id": rid})
    async with connect("memory", sandbox, tmp_path, previews=False) as client:
        knob = await client.call_tool("run-model", arguments)
    async with connect("memory", sandbox, tmp_path, preview_count=1) as client:
        capped = await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "x", "num_images": 3}})
    assert previews(off) == [] and previews(knob) == [] and len(links(off)) == 1 and len(links(knob)) == 1
    assert len(previews(later)) == 1 and links(later) == links(off)  # get-result previews too
    assert len(previews(capped)) == 1 and len(links(capped)) == 3 and "1 of 3 images previewed" in text_of(capped)
    assert len(fake.requests_for("cdn")) == 2


async def test_preview_downloads_are_capped_in_size_and_time(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    arguments = {"endpoint_id": FLUX, "input": {"prompt": "x"}}
    async with connect("memory", sandbox, tmp_path, preview_fetch_max_mb=0.0001) as client:
        too_big = await client.call_tool("run-model", arguments)
    async with connect("memory", sandbox, tmp_path, preview_timeout_s=0.2) as client:
        fake.inject(Fault(route="cdn", delay_s=1.5))
        too_slow = await client.call_tool("run-model", arguments)
    assert previews(too_big) == [] and "larger than 0.0001 MB" in text_of(too_big)
    assert previews(too_slow) == [] and "no answer within 0.2s" in text_of(too_slow)
    assert structured(too_big)["output"]["images"] and structured(too_slow)["output"]["images"]


async def test_previews_are_fetched_only_from_safe_places_and_without_credentials(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    Trap.seen.clear()
    trap = ThreadingHTTPServer(("127.0.0.1", 0), Trap)
    Thread(target=trap.serve_forever, daemon=True).start()
    port = trap.server_address[1]
    hostile = {
        "plain_http": {"url": f"http://127.0.0.1:{port}/a.png", "content_type": "image/png"},
        "loopback_https": {"url": f"https://127.0.0.1:{port}/b.png", "content_type": "image/png"},
        "localhost": {"url": f"https://localhost:{port}/c.png", "content_type": "image/png"},
        "metadata": {"url": "https://169.254.169.254/latest/meta-data/x.png", "content_type": "image/png"},
        "private": {"url": "https://10.0.0.1/x.jpg"},
        "video": {"url": f"https://127.0.0.1:{port}/v.mp4"},
        "garbage": {"url": "data:image/png;base64," + base64.b64encode(b"not a picture " * 40).decode()},
    }
    try:
        async with connect("memory", sandbox, tmp_path, preview_count=8) as client:
            result = await client.call_tool("run-model", {"endpoint_id": ECHO, "input": hostile})
    finally:
        trap.shutdown()
        trap.server_close()
    assert Trap.seen == [], "no preview fetch may reach a private or plain-http address"
    text = text_of(result)
    assert "only https URLs are fetched" in text and "private, loopback or reserved" in text
    assert "output.echo.garbage (not an image Pillow can read" in text  # and the result still arrives
    assert previews(result) == [] and len(links(result)) == 6


async def test_no_schema_means_no_check_never_a_failure(sandbox: SandboxServer, fake: FakeFal, tmp_path: Path) -> None:
    async with connect("memory", sandbox, tmp_path, retries=0) as client:
        # an endpoint fal does not list (a workflow's sub-path) runs unchecked
        structured(await client.call_tool("run-model", {"endpoint_id": f"{ECHO}/sub", "input": {"anything": 1}}))
        # the platform API failing: the run goes ahead unchecked, and fal's own 422 speaks
        fake.inject(Fault(route="models", status=503, times=10))
        failed = refusal(await client.call_tool("run-model", {"endpoint_id": I2I, "input": {"prompt": "x"}}))
        assert "422" in failed and "image_url" in failed
        # validate=false sends a bad input as it is
        fake.clear_faults()
        unchecked = refusal(
            await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"promt": "x"}, "validate": False})
        )
        assert "422" in unchecked
    async with connect("memory", sandbox, tmp_path, validate_inputs=False) as client:  # the server-wide knob
        assert "422" in refusal(await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {}}))
    assert billed(fake) == ["submit", "submit", "submit", "submit"]


async def test_schemas_are_cached_for_the_ttl(sandbox: SandboxServer, fake: FakeFal, tmp_path: Path) -> None:
    async with connect("memory", sandbox, tmp_path) as client:
        for _ in range(3):
            structured(
                await client.call_tool(
                    "get-model-schema", {"app_owner": "fal-ai", "app_id": "flux", "app_variant": "schnell"}
                )
            )
        refusal(await client.call_tool("submit", {"endpoint_id": FLUX, "input": {}}))
    assert len(fake.requests_for("models")) == 1 and len(fake.requests_for("pricing")) == 1
    fake.reset()
    async with connect("memory", sandbox, tmp_path, models_cache_ttl_s=0) as client:
        for _ in range(2):
            structured(await client.call_tool("get-model-schema", {"endpoint_id": FLUX}))
    assert len(fake.requests_for("models")) == 2


async def test_model_tools_refuse_clearly(sandbox: SandboxServer, fake: FakeFal, tmp_path: Path) -> None:
    async with connect("memory", sandbox, tmp_path, retries=0) as client:
        unknown = refusal(await client.call_tool("get-model-schema", {"endpoint_id": "fal-ai/no-such-model"}))
        hostile = refusal(await client.call_tool("get-model-schema", {"endpoint_id": "fal-ai/../admin"}))
        bad_limit = refusal(await client.call_tool("search-models", {"limit": 500}))
        with pytest.raises(Exception, match="no-such"):
            await client.read_resource("fal://models/fal-ai/no-such/schema")
        with pytest.raises(Exception, match="invalid endpoint_id"):
            await client.read_resource("fal://models/fal-ai/../admin/schema")
        templates = (await client.list_resource_templates()).resource_templates
        fake.inject(Fault(route="models", status=503, times=10))
        down = refusal(await client.call_tool("search-models", {"query": "x"}))
    assert "fal lists no model 'fal-ai/no-such-model'" in unknown and "search-models" in unknown
    assert hostile.startswith("get-model-schema:") and "'..'" in hostile
    assert "limit" in bad_limit
    assert "503" in down
    assert {t.uri_template for t in templates} == {"fal://models/{+endpoint_id}/schema", "fal://requests/{request_id}"}
    assert not any(r.route == "models" and "/../" in r.path for r in fake.requests)


# -- context economy ------------------------------------------------------------------------------------------


def context_cost() -> Any:
    """`bench/context_cost.py`: the budgets and the one way of counting them, shared with the benchmark."""
    spec = importlib.util.spec_from_file_location("context_cost", ROOT / "bench" / "context_cost.py")
    assert spec is not None and spec.loader is not None
    sys.path.insert(0, str(ROOT / "bench"))  # it imports the benchmark rig beside it
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return module


def schema_nodes(schema: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every subschema of `schema`, with where it sits."""
    if not isinstance(schema, dict):
        return
    yield path, schema
    for key in ("properties", "$defs"):
        for name, member in schema.get(key, {}).items():
            yield from schema_nodes(member, f"{path}.{key}.{name}")
    for key in ("anyOf", "oneOf", "allOf"):
        for index, member in enumerate(schema.get(key, [])):
            yield from schema_nodes(member, f"{path}.{key}[{index}]")
    for key in ("items", "additionalProperties", "not"):
        yield from schema_nodes(schema.get(key), f"{path}.{key}")


async def test_the_tool_list_fits_its_token_budgets(sandbox: SandboxServer, tmp_path: Path) -> None:
    budgets = context_cost()
    async with connect("memory", sandbox, tmp_path) as client:
        tools = [
            tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in (await client.list_tools()).tools
        ]
        measured = budgets.costs(tools, client.instructions)
    assert measured["model_facing"] <= budgets.MODEL_FACING_BUDGET, measured
    assert measured["tool_list"] <= budgets.TOOL_LIST_BUDGET, measured
    assert 0 < measured["instructions"] <= budgets.INSTRUCTIONS_BUDGET, measured


async def test_schemas_say_what_every_field_is_in_a_form_every_client_reads(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    async with connect("memory", sandbox, tmp_path) as client:
        tools = (await client.list_tools()).tools
    for tool in tools:
        assert tool.output_schema is not None
        for where, node in schema_nodes(tool.output_schema):
            assert any(key in node for key in ("type", "anyOf", "$ref")), f"{tool.name} output{where} has no type"
        required = set(tool.input_schema.get("required", []))
        for name, member in tool.input_schema["properties"].items():
            if name not in required:  # optional: null means "not given", spelled as an anyOf branch
                assert {"type": "null"} in member["anyOf"], f"{tool.name}.{name} does not take null"
        for where, node in [*schema_nodes(tool.input_schema), *schema_nodes(tool.output_schema)]:
            assert not isinstance(node.get("type"), list), f"{tool.name}{where}: a type array"
            assert node.get("additionalProperties") is not False, f"{tool.name}{where}: a closed object"
            assert "title" not in node and "default" not in node, f"{tool.name}{where}"


# -- arguments a model can act on -------------------------------------------------------------------------------


def one_sentence(result: CallToolResult) -> str:
    """A refusal a model can act on: one text, no library jargon, no link, never "None"."""
    text = refusal(result)
    for jargon in (
        "pydantic",
        "validation error",
        "https://",
        "Arguments",
        "None",
        "Traceback",
        "type=",
        "input_value",
    ):
        assert jargon not in text, text
    return text


async def test_argument_errors_name_the_argument_what_it_got_and_what_it_takes(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    async with connect("memory", sandbox, tmp_path) as client:
        limit = one_sentence(await client.call_tool("search-models", {"limit": 1000}))
        mode = one_sentence(await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {}, "mode": "fast"}))
        missing = one_sentence(await client.call_tool("run-model", {"endpoint_id": FLUX}))
        webhook = one_sentence(
            await client.call_tool("submit", {"endpoint_id": FLUX, "input": {"prompt": "x"}, "webhook_url": "ftp://x"})
        )
        wrong_type = one_sentence(await client.call_tool("get-result", {"request_id": "abc", "wait_s": "soon"}))
        unknown = one_sentence(await client.call_tool("list-requests", {"active": True}))
        beside_input = one_sentence(
            await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {}, "prompt": "a red fox"})
        )
        nulls = structured(await client.call_tool("search-models", {"query": None, "limit": None, "cursor": None}))
    assert limit == "search-models: argument 'limit' got 1000; it takes a whole number from 1 to 50."
    assert mode == 'run-model: argument \'mode\' got "fast"; it takes one of "queue", "sync".'
    assert missing.startswith("run-model: argument 'input' is missing; it takes the model's input as a JSON object")
    assert "argument 'webhook_url' got \"ftp://x\"; it takes an http(s) URL" in webhook
    assert wrong_type == "get-result: argument 'wait_s' got \"soon\"; it takes a number of at least 0."
    assert unknown == "list-requests: unknown argument 'active'. Valid arguments: state, endpoint_id, limit."
    assert "'prompt'" in beside_input and 'input={"prompt": ...}' in beside_input
    assert nulls["models"], "an explicit null is an argument not given"
    assert billed(fake) == [], "a refused call sends nothing to fal"


async def test_an_echoed_argument_never_shows_a_key(sandbox: SandboxServer, fake: FakeFal, tmp_path: Path) -> None:
    async with connect("stdio", sandbox, tmp_path) as client:  # the CLI registers its key with the redactor
        text = one_sentence(
            await client.call_tool(
                "run-model", {"endpoint_id": FLUX, "input": {}, "hint": f"my key {SANDBOX_KEY}", SANDBOX_KEY: 1}
            )
        )
        long_name = "x" * 31 + SANDBOX_KEY  # cut short in the message, inside the secret: it must go before the cut
        cut = one_sentence(await client.call_tool("get-status", {"request_id": "r", long_name: 1}))
        many = one_sentence(
            await client.call_tool("cancel", {"request_id": "r", **{f"extra{i}": i for i in range(40)}})
        )
    assert SANDBOX_KEY not in text and "[REDACTED]" in text, text
    assert SANDBOX_KEY[:10] not in cut, cut
    assert "'extra4' and 35 more" in many and "extra5" not in many, many


async def test_no_message_says_none(sandbox: SandboxServer, fake: FakeFal, tmp_path: Path) -> None:
    """A request named by its request_id alone: the failure names the request, never "on None"."""
    async with connect("memory", sandbox, tmp_path) as client:
        queued = structured(
            await client.call_tool("submit", {"endpoint_id": "fal-ai/sandbox/always-fails", "input": {"prompt": "x"}})
        )
        failed = one_sentence(await client.call_tool("get-result", {"request_id": queued["request_id"], "wait_s": 30}))
    assert f"request {queued['request_id']}" in failed and "failed" in failed


async def test_counts_read_right(sandbox: SandboxServer, fake: FakeFal, tmp_path: Path) -> None:
    async with connect("memory", sandbox, tmp_path) as client:
        one = await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "a fox", "num_images": 1}})
        found = await client.call_tool("search-models", {"query": "schnell"})
        listed = await client.call_tool("list-requests", {"limit": 1})
    assert "1 of 1 image previewed" in text_of(one) and "1 media file linked" in text_of(one), text_of(one)
    assert len(structured(found)["models"]) == 1 and text_of(found).startswith("1 model for"), text_of(found)
    assert text_of(listed).startswith("1 request, newest first"), text_of(listed)


def test_pillow_and_jsonschema_load_on_first_use_not_at_start() -> None:
    """Every stdio launch pays for what the server imports; previews and validation load theirs when used."""
    probe = "import sys, fal_mcp.cli, fal_mcp.server.build; print(sorted({'PIL', 'jsonschema'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"
