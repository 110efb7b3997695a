"""`save_to`: output media saved into an allowed folder, through the real server, and never anywhere else.

The fence (which folders), the write side (new files only, never through a link) and the download (https from public
hosts or the configured fal origins only) each refuse on their own; every refusal is a clear message and loses no
paid result.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult, TextContent

from fal_mcp.media.fence import Root, roots_from
from fal_mcp.media.saving import OpenFolder, SaveRefused, safe_name, save_folder
from fal_mcp.sandbox import FakeFal, SandboxServer
from tests.conftest import env_for
from tests.harness import fal_mcp_command, http_server

FLUX = "fal-ai/flux/schnell"
ECHO = "workflows/sandbox/echo"


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def refusal(result: CallToolResult) -> str:
    assert result.is_error, f"expected a refusal, got {text_of(result)[:500]}"
    return text_of(result)


def structured(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return result.structured_content


def billed(fake: FakeFal) -> list[str]:
    return [r.route for r in fake.requests if r.route in ("submit", "run")]


def files_in(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "assets"
    folder.mkdir()
    return folder


@asynccontextmanager
async def stdio(
    sandbox: SandboxServer, workdir: Path, *, save_roots: Path | None = None, client_root: Path | None = None
) -> AsyncIterator[Client]:
    """A spawned fal-mcp over stdio, as a desktop client starts it; optionally sharing `client_root` as an MCP root."""
    env = env_for(sandbox, **({"FAL_MCP_SAVE_ROOTS": str(save_roots)} if save_roots else {}))
    params = StdioServerParameters(command=fal_mcp_command(), args=[], env=env, cwd=workdir)

    async def roots(_context: Any) -> types.ListRootsResult:
        shared = [types.Root(uri=client_root.as_uri(), name="project")] if client_root else []
        return types.ListRootsResult(roots=shared)

    with (workdir / "stdio.stderr").open("a") as log:
        async with Client(stdio_client(params, errlog=log), mode="legacy", list_roots_callback=roots) as client:
            yield client


# -- through the real server ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_run_model_saves_every_output_inside_a_root(
    sandbox: SandboxServer, fake: FakeFal, root: Path, tmp_path: Path
) -> None:
    async with stdio(sandbox, tmp_path, save_roots=root) as client:
        result = structured(
            await client.call_tool(
                "run-model",
                {"endpoint_id": FLUX, "input": {"prompt": "a fox", "num_images": 2}, "save_to": str(root / "foxes")},
            )
        )
    images = result["output"]["images"]
    expected = [str(root / "foxes" / image["file_name"]) for image in images]
    assert result["saved"] == expected
    async with httpx.AsyncClient() as http:
        for image, path in zip(images, expected, strict=True):
            assert await anyio.Path(path).read_bytes() == (await http.get(image["url"])).content
    assert (await anyio.Path(expected[0]).stat()).st_mode & 0o777 == 0o644


@pytest.mark.anyio
async def test_a_folder_outside_the_roots_is_refused_before_anything_is_paid_for(
    sandbox: SandboxServer, fake: FakeFal, root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    async with stdio(sandbox, tmp_path, save_roots=root) as client:
        refused = refusal(
            await client.call_tool(
                "run-model", {"endpoint_id": FLUX, "input": {"prompt": "x"}, "save_to": str(outside)}
            )
        )
        dotted = refusal(
            await client.call_tool(
                "run-model", {"endpoint_id": FLUX, "input": {"prompt": "x"}, "save_to": str(root / ".git")}
            )
        )
        climbing = refusal(
            await client.call_tool(
                "run-model", {"endpoint_id": FLUX, "input": {"prompt": "x"}, "save_to": f"{root}/../elsewhere"}
            )
        )
    assert "outside the folders outputs may be saved in" in refused and str(root) in refused
    assert "Nothing was sent to fal" in refused
    assert "'.git' is hidden" in dotted
    assert "'..'" in climbing
    assert billed(fake) == [] and not outside.exists() and not (root / ".git").exists()


@pytest.mark.anyio
async def test_an_existing_file_is_never_overwritten(
    sandbox: SandboxServer, fake: FakeFal, root: Path, tmp_path: Path
) -> None:
    async with stdio(sandbox, tmp_path, save_roots=root) as client:
        first = structured(await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "a fox"}}))
        name = first["output"]["images"][0]["file_name"]
        (root / name).write_bytes(b"the user's own file")
        arguments = {"request_id": first["request_id"], "save_to": str(root)}
        again = structured(await client.call_tool("get-result", arguments))
        third = structured(await client.call_tool("get-result", arguments))
    stem = name.removesuffix(".png")
    assert again["saved"] == [str(root / f"{stem}-1.png")]
    assert third["saved"] == [str(root / f"{stem}-2.png")]
    assert (root / name).read_bytes() == b"the user's own file"
    assert (root / f"{stem}-1.png").read_bytes() == (root / f"{stem}-2.png").read_bytes() != b"the user's own file"


@pytest.mark.anyio
async def test_http_and_private_address_urls_are_refused_and_the_result_kept(
    sandbox: SandboxServer, fake: FakeFal, root: Path, tmp_path: Path
) -> None:
    # The echo workflow returns its input, so a caller can make an "output" point anywhere.
    output = {
        "plain_http": {"url": "http://example.com/cat.png", "content_type": "image/png"},
        "private": {"url": "https://10.20.30.40/cat.png", "content_type": "image/png"},
        "metadata": {"url": "https://169.254.169.254/latest/cat.png", "content_type": "image/png"},
    }
    async with stdio(sandbox, tmp_path, save_roots=root) as client:
        result = await client.call_tool("run-model", {"endpoint_id": ECHO, "input": output, "save_to": str(root)})
    data = structured(result)
    assert data["saved"] == [] and data["output"] == {"echo": output}
    text = text_of(result)
    assert "output.echo.plain_http (only https URLs are fetched)" in text
    assert "output.echo.private (10.20.30.40 is a private, loopback or reserved address)" in text
    assert "output.echo.metadata (169.254.169.254 is a private, loopback or reserved address)" in text
    assert files_in(root) == {}


@pytest.mark.anyio
async def test_over_stdio_the_clients_roots_allow_saving_and_over_http_they_do_not(
    sandbox: SandboxServer, fake: FakeFal, root: Path, tmp_path: Path
) -> None:
    async with stdio(sandbox, tmp_path, client_root=root) as client:
        saved = structured(
            await client.call_tool(
                "run-model", {"endpoint_id": FLUX, "input": {"prompt": "a fox"}, "save_to": str(root / "out")}
            )
        )["saved"]
        outside = refusal(
            await client.call_tool(
                "run-model", {"endpoint_id": FLUX, "input": {"prompt": "x"}, "save_to": str(tmp_path)}
            )
        )
    assert len(saved) == 1 and Path(saved[0]).parent == root / "out" and await anyio.Path(saved[0]).is_file()
    assert "outside the folders" in outside
    # Over HTTP a client's roots name folders on its own machine: without FAL_MCP_SAVE_ROOTS saving is off.
    with http_server(env_for(sandbox), tmp_path) as server:

        async def share(_context: Any) -> types.ListRootsResult:
            return types.ListRootsResult(roots=[types.Root(uri=root.as_uri(), name="project")])

        async with Client(server.url, mode="legacy", list_roots_callback=share) as client:
            off = refusal(
                await client.call_tool(
                    "run-model", {"endpoint_id": FLUX, "input": {"prompt": "x"}, "save_to": str(root)}
                )
            )
    assert "saving is off" in off and "FAL_MCP_SAVE_ROOTS" in off


@pytest.mark.anyio
async def test_a_symlink_below_the_root_is_not_followed(
    sandbox: SandboxServer, fake: FakeFal, root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    async with stdio(sandbox, tmp_path, save_roots=root) as client:
        refused = refusal(
            await client.call_tool(
                "run-model", {"endpoint_id": FLUX, "input": {"prompt": "x"}, "save_to": str(root / "link" / "sub")}
            )
        )
    assert "'link'" in refused and "is a link" in refused
    assert files_in(outside) == {} and billed(fake) == []


# -- the write side on its own ----------------------------------------------------------------------------


def _root(folder: Path) -> Root:
    (found,) = roots_from([folder])
    return found


def test_a_file_name_that_is_a_symlink_is_never_written_through(root: Path, tmp_path: Path) -> None:
    target = tmp_path / "precious.txt"
    target.write_bytes(b"keep me")
    (root / "out.png").symlink_to(target)
    with OpenFolder(save_folder(str(root), [_root(root)])) as opened:
        name, fd = opened.create("out.png")
        os.write(fd, b"new")
        os.close(fd)
    assert name == "out-1.png" and target.read_bytes() == b"keep me" and (root / "out-1.png").read_bytes() == b"new"


def test_a_folder_swapped_for_a_symlink_after_the_check_is_refused(root: Path, tmp_path: Path) -> None:
    folder = save_folder(str(root / "a" / "b"), [_root(root)])
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "a").symlink_to(outside, target_is_directory=True)  # planted between the check and the write
    with pytest.raises(SaveRefused, match=r"'a' .* is a link or a file"), OpenFolder(folder):
        pass
    assert list(outside.iterdir()) == []


def test_saving_is_off_without_a_root(tmp_path: Path) -> None:
    with pytest.raises(SaveRefused, match="saving is off"):
        save_folder(str(tmp_path), [])


@pytest.mark.parametrize(
    ("name", "content_type", "expected"),
    [
        ("cat.png", "image/png", "cat.png"),
        ("../../.ssh/authorized_keys", None, "authorized_keys"),
        (".bashrc", None, "bashrc"),
        ("a\\b\\c.mp4", None, "c.mp4"),
        ("out", "video/mp4", "out.mp4"),
        (None, "audio/wav", "audio-1.wav"),
        ("what?<is>|this.wav", None, "what_is_this.wav"),
        ("x" * 300 + ".png", None, "x" * 116 + ".png"),
    ],
)
def test_safe_names(name: str | None, content_type: str | None, expected: str) -> None:
    assert safe_name(name, content_type, "audio-1") == expected
