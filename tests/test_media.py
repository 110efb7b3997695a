"""Media in outputs: finding it and keeping a result's text small (by table), and previews that cannot blow up:
large PNGs read strip by strip, a pixel budget, a cache, and a real server's peak memory on huge inline pictures.
"""

from __future__ import annotations

import base64
import io
import os
import random
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from mcp.types import ImageContent
from PIL import Image, ImageDraw

from fal_mcp.media import png_strips
from fal_mcp.media.previews import Preview, PreviewCache, PreviewFailed, make_preview, source_key
from fal_mcp.media.refs import find_media, render_text
from fal_mcp.sandbox import FakeFal, SandboxServer
from tests.harness import connect
from tests.test_tools import text_of

BIG = "data:image/png;base64," + "A" * 5_000


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            {
                "images": [
                    {"url": "https://v3.fal.media/files/a.png", "content_type": "image/png", "width": 8, "height": 6}
                ]
            },
            [("output.images[0]", "image", "https://v3.fal.media/files/a.png")],
        ),
        (
            {"video": {"url": "https://v3.fal.media/files/v", "content_type": "video/mp4"}},
            [("output.video", "video", "https://v3.fal.media/files/v")],
        ),
        (
            {"audio_file": {"url": "https://x.example/speech.mp3?sig=1"}},
            [("output.audio_file", "audio", "https://x.example/speech.mp3?sig=1")],
        ),
        (
            {"image": {"url": "https://x.example/blob", "file_name": "out.webp"}},
            [("output.image", "image", "https://x.example/blob")],
        ),
        ({"image_url": "https://x.example/a.JPG"}, [("output.image_url", "image", "https://x.example/a.JPG")]),
        ({"images": [{"url": BIG}]}, [("output.images[0]", "image", BIG)]),
        ({"output": "see https://x.example/a.png", "text": "https://x.example/page.html"}, []),
        ({"file": {"url": "https://x.example/a.zip", "content_type": "application/zip"}}, []),
        ({"seed": 3, "has_nsfw_concepts": [False]}, []),
        ("data:text/plain;base64,aGk=", []),
    ],
)
def test_find_media(output: Any, expected: list[tuple[str, str, str]]) -> None:
    assert [(ref.where, ref.kind, ref.url) for ref in find_media(output)] == expected


def test_find_media_reads_file_metadata() -> None:
    (ref,) = find_media(
        {
            "images": [
                {
                    "url": "https://x/a.png",
                    "content_type": "image/png",
                    "file_size": 9,
                    "width": 4,
                    "height": 3,
                    "file_name": "a.png",
                }
            ]
        }
    )
    assert (ref.content_type, ref.size, ref.width, ref.height, ref.file_name, ref.inline) == (
        "image/png",
        9,
        4,
        3,
        "a.png",
        False,
    )


def test_inline_data_becomes_a_placeholder_naming_its_place() -> None:
    text = render_text("Done.", {"output": {"images": [{"url": BIG}], "small": "data:image/png;base64,AAAA"}})
    assert text.startswith("Done.\n")
    assert "base64,AAA" not in text.replace("data:image/png;base64,AAAA", "")
    assert (
        "<image/png data URI, 5,022 characters; the full value is in structuredContent at output.images[0].url>" in text
    )
    assert "data:image/png;base64,AAAA" in text  # short ones stay as they are


def test_text_is_cut_at_the_cap_with_a_pointer() -> None:
    text = render_text("Done.", {"output": {"words": ["word"] * 10_000}}, limit=2_000)
    assert len(text) <= 2_000
    assert text.endswith("the complete result is in structuredContent]")
    assert render_text("Done.", {"a": 1}, limit=2_000) == 'Done.\n{"a":1}'


# -- previews within a memory bound -----------------------------------------------------------------------


def pillow_png(mode: str, size: tuple[int, int]) -> tuple[Image.Image, bytes]:
    """A picture with edges and gradients in `mode`, saved by Pillow (which picks a row filter per row)."""
    picture = Image.new("RGBA", size, (20, 40, 60, 255))
    draw = ImageDraw.Draw(picture)
    for x in range(0, size[0], 7):
        draw.line((x, 0, size[0] - x, size[1]), fill=(x % 256, (x * 3) % 256, (x * 7) % 256, 90 + x % 160), width=3)
    picture = picture.convert(mode)
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return picture, out.getvalue()


@pytest.mark.parametrize("mode", ["RGBA", "RGB", "L", "LA"])
@pytest.mark.parametrize("factor", [1, 2, 3, 5])
def test_a_png_read_strip_by_strip_is_the_whole_picture_reduced(mode: str, factor: int) -> None:
    picture, data = pillow_png(mode, (333, 257))
    reduced = png_strips.decode_reduced(data, factor, strip_bytes=3_000)  # dozens of strips
    assert reduced.mode == mode and reduced.tobytes() == picture.reduce(factor).tobytes()


def test_strips_refuse_what_they_cannot_read() -> None:
    _, data = pillow_png("RGB", (64, 64))
    palette = io.BytesIO()
    Image.new("P", (8, 8)).save(palette, format="PNG")
    assert png_strips.readable(data) and not png_strips.readable(palette.getvalue())
    assert not png_strips.readable(b"GIF89a") and png_strips.header(b"not a png") is None
    cut = data[: len(data) // 2] + data[-12:]  # half the image data, then IEND
    with pytest.raises(png_strips.StripsFailed):
        png_strips.decode_reduced(cut, 2, strip_bytes=1_000)


def header_only_png(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` and whose image data is a few bytes."""
    head = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(head)) + b"IHDR" + head + struct.pack(">I", zlib.crc32(b"IHDR" + head))
    return png_strips.SIGNATURE + chunk + b"\x00\x00\x00\x00IEND\xaeB`\x82"


def test_previews_of_pictures_larger_than_the_budget() -> None:
    budget = 200 * 200
    _, png = pillow_png("RGBA", (640, 480))
    made = make_preview(png, edge_px=128, max_bytes=20_000, budget_pixels=budget)
    assert (made.width, made.height) == (128, 96) and made.mime_type == "image/jpeg"
    with Image.open(io.BytesIO(made.data)) as shown:
        assert shown.size == (128, 96)
    jpeg = io.BytesIO()
    Image.new("RGB", (1600, 1200), "teal").save(jpeg, format="JPEG")
    assert make_preview(jpeg.getvalue(), edge_px=128, max_bytes=20_000, budget_pixels=1600 * 1200 // 64).width == 128
    webp = io.BytesIO()
    Image.new("RGB", (640, 480), "teal").save(webp, format="WEBP")
    with pytest.raises(PreviewFailed, match=r"640x480 pixels is more than a preview decodes of a WEBP"):
        make_preview(webp.getvalue(), edge_px=128, max_bytes=20_000, budget_pixels=budget)
    with pytest.raises(PreviewFailed, match=r"20000x20000 pixels is too many to preview"):
        make_preview(header_only_png(20_000, 20_000), edge_px=128, max_bytes=20_000)


def test_the_preview_cache_keeps_recent_previews_within_its_bytes() -> None:
    cache = PreviewCache(max_bytes=250)
    small = [Preview(bytes([index]) * 100, "image/jpeg", 1, 1) for index in range(3)]
    cache.put("a", small[0])
    cache.put("b", small[1])
    assert cache.get("a") is small[0]  # "a" is now the most recent
    cache.put("c", small[2])  # over 250 bytes: "b" goes
    assert cache.get("b") is None and cache.get("a") is small[0] and cache.get("c") is small[2]
    cache.put("huge", Preview(b"x" * 300, "image/jpeg", 1, 1))  # larger than the whole cache: not kept
    assert cache.get("huge") is None and len(cache) == 2
    uri = "data:image/png;base64,AAAA"
    assert source_key(uri) == source_key(str(uri)) != source_key(uri + "A") and source_key("https://x/a.png") == (
        "https://x/a.png"
    )


HUGE = "fal-ai/sandbox/huge-image"
PEAK_RSS_BOUND_MB = 400


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


def spawned_server() -> int:
    """The pid of the `fal-mcp` this test process spawned (the stdio client's child)."""
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if parent == me and b"fal-mcp" in command:
                return int(entry.name)
    raise AssertionError("no spawned fal-mcp found")


@pytest.mark.anyio
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak memory from /proc")
async def test_four_huge_inline_pictures_are_previewed_within_a_memory_bound(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    """Four 8000x8000 RGBA PNGs inline (about 1 MB of output, 1 GB decoded): the spawned server stays small."""
    async with connect("stdio", sandbox, tmp_path) as client:
        result = await client.call_tool(
            "run-model", {"endpoint_id": HUGE, "input": {"prompt": "x", "side": 8000, "num_images": 4}}
        )
        peak = peak_rss_mb(spawned_server())
    images = [block for block in result.content if isinstance(block, ImageContent)]
    assert not result.is_error and len(images) == 4, text_of(result)[:500]
    for block in images:
        with Image.open(io.BytesIO(base64.b64decode(block.data))) as shown:
            assert shown.size == (512, 512)
    assert "4 of 4 images previewed" in text_of(result)
    assert peak < PEAK_RSS_BOUND_MB, f"the server peaked at {peak:.0f} MB"


def test_a_preview_that_does_not_fit_shrinks_until_it_does() -> None:
    noise = Image.frombytes("RGB", (600, 400), random.Random(7).randbytes(600 * 400 * 3))
    out = io.BytesIO()
    noise.save(out, format="PNG")
    made = make_preview(out.getvalue(), edge_px=512, max_bytes=8_000)
    assert len(made.data) <= 8_000 and max(made.width, made.height) < 512
    with pytest.raises(PreviewFailed, match="no preview fits 300 bytes"):
        make_preview(out.getvalue(), edge_px=512, max_bytes=300)
