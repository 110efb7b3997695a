"""A small JPEG preview of an image, within an edge, a byte cap and a bounded amount of memory; and a cache of them.

A preview is for looking at, not for keeping: the longest side is at most `edge_px`, transparency is laid on
white, and quality (then size) steps down until the JPEG fits `max_bytes`. Pillow is imported here, on first
use, so a server that never makes a preview never loads it.

Memory is bounded, whatever the picture: its size is read from the header before anything is decoded, and one
with more than `MAX_SOURCE_PIXELS` is refused. A picture is decoded whole only up to `DECODE_BUDGET_PIXELS`
(4096 x 4096, 64 MB as RGBA); a larger one is decoded reduced: a JPEG by its own decoder at 1/2 to 1/8 scale
(`draft`), a plain 8-bit PNG strip by strip (`png_strips`); any other large picture gets a note instead of a
preview. Downloads may run in parallel, but at most `DECODE_SLOTS` decodes run at once in the process
(`DECODING`), and each decoded picture is closed as soon as its small copy exists.

`PreviewCache` keeps the previews already made, by URL (or by a digest of inline data), so a `get-result` of a
finished request shows the same previews without fetching or decoding anything again.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from fal_mcp.media import png_strips

if TYPE_CHECKING:
    from PIL.Image import Image

MAX_SOURCE_PIXELS = 100_000_000
"""A bigger picture is refused from its header: too much work for a preview."""
DECODE_BUDGET_PIXELS = 4096 * 4096
"""The most pixels one preview holds decoded at full size."""
DECODE_SLOTS = 2
DECODING = anyio.CapacityLimiter(DECODE_SLOTS)
"""Process-wide: how many previews are decoded at once (each within the budget above)."""
QUALITIES = (85, 70, 55, 40)
MIN_EDGE = 32
CACHE_BYTES = 16 * 1024 * 1024
"""How many bytes of encoded previews `PreviewCache` keeps (a preview is at most `FAL_MCP_PREVIEW_MAX_KB`)."""


class PreviewFailed(Exception):
    """The bytes could not be made into a preview; the message says why."""


@dataclass(frozen=True)
class Preview:
    data: bytes
    mime_type: str
    width: int
    height: int


def make_preview(data: bytes, *, edge_px: int, max_bytes: int, budget_pixels: int = DECODE_BUDGET_PIXELS) -> Preview:
    """Downscale and re-encode `data` (any image Pillow reads) as a JPEG of at most `max_bytes`."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = None  # the size check is ours (below), from the header, before any decoding
    try:
        with Image.open(io.BytesIO(data)) as opened:
            width, height = opened.size
            if width * height > MAX_SOURCE_PIXELS:
                raise PreviewFailed(
                    f"{width}x{height} pixels is too many to preview (at most {MAX_SOURCE_PIXELS // 1_000_000} "
                    "megapixels)"
                )
            small = _shrunk(opened, data, edge_px, budget_pixels)
    except (UnidentifiedImageError, OSError, ValueError, png_strips.StripsFailed) as exc:
        raise PreviewFailed(f"not an image Pillow can read ({type(exc).__name__})") from None
    try:
        return _encoded(small, max_bytes)
    finally:
        small.close()


def _shrunk(opened: Image, data: bytes, edge: int, budget: int) -> Image:
    """The picture as RGB with its longest side at most `edge`, never more than `budget` pixels decoded at once."""
    from PIL import Image

    width, height = opened.size
    opened.draft("RGB", (edge, edge))  # a JPEG decodes at a reduced scale directly; other formats ignore this
    decoded_pixels = opened.size[0] * opened.size[1]
    if decoded_pixels > budget:
        if opened.format != "PNG" or not png_strips.readable(data):
            kind = opened.format or "picture"
            raise PreviewFailed(
                f"{width}x{height} pixels is more than a preview decodes of a {kind} ({budget / 1_000_000:.0f} "
                "megapixels); the full image is in the output"
            )
        factor = max(math.ceil(max(width, height) / (2 * edge)), math.ceil(math.sqrt(decoded_pixels / budget)))
        picture = png_strips.decode_reduced(data, factor)
    else:
        picture = opened
    if picture.mode not in ("L", "LA", "RGB", "RGBA"):  # palettes, 16-bit, CMYK, ...: small enough to convert first
        has_alpha = "A" in picture.getbands() or (picture.mode == "P" and "transparency" in picture.info)
        converted = picture.convert("RGBA" if has_alpha else "RGB")
        if picture is not opened:
            picture.close()
        picture = converted
    elif picture is opened:
        picture.load()
    # In place (no full-size copy); a box reduce first, to within 1x-2x of the edge, then Lanczos.
    picture.thumbnail((edge, edge), Image.Resampling.LANCZOS, reducing_gap=1.0)
    if picture.mode == "RGB":
        return picture if picture is not opened else picture.copy()
    flat = Image.new("RGB", picture.size, "white")
    if picture.mode in ("LA", "RGBA"):
        flat.paste(picture.convert("RGBA"), mask=picture.getchannel("A"))
    else:
        flat.paste(picture.convert("RGB"))
    if picture is not opened:
        picture.close()
    return flat


def _encoded(picture: Image, max_bytes: int) -> Preview:
    """The JPEG of `picture` at the best quality that fits `max_bytes`, shrinking it when none does."""
    from PIL import Image

    current = picture
    try:
        while True:
            size = 0
            for quality in QUALITIES:
                out = io.BytesIO()
                current.save(out, format="JPEG", quality=quality)
                size = out.tell()
                if size <= max_bytes:
                    return Preview(out.getvalue(), "image/jpeg", current.width, current.height)
            scale = min(0.9, 0.95 * math.sqrt(max_bytes / size))  # JPEG bytes grow about with the pixel count
            edge = int(max(current.size) * scale)
            if edge < MIN_EDGE:
                raise PreviewFailed(f"no preview fits {max_bytes:,} bytes")
            smaller = current.copy()
            smaller.thumbnail((edge, edge), Image.Resampling.LANCZOS)
            if current is not picture:
                current.close()
            current = smaller
    finally:
        if current is not picture:
            current.close()


async def make_preview_bounded(load: Callable[[], bytes], *, edge_px: int, max_bytes: int) -> Preview:
    """`make_preview` of what `load` gives, in a worker thread holding one of the process's `DECODE_SLOTS`."""
    return await anyio.to_thread.run_sync(
        lambda: make_preview(load(), edge_px=edge_px, max_bytes=max_bytes), limiter=DECODING
    )


def source_key(url: str) -> str:
    """What a preview is cached under: the URL itself, or a digest of inline (`data:`) content."""
    if url[:5].lower() != "data:":
        return url
    return "sha256:" + hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()


class PreviewCache:
    """Previews already made, by `source_key`, least recently used dropped first, within `max_bytes` in all.

    One per server process: anyone whose output names the same URL may see its preview, which tells them nothing
    the URL does not (previews are fetched without credentials).
    """

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._entries: OrderedDict[str, Preview] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Preview | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: str, preview: Preview) -> None:
        if len(preview.data) > self._max_bytes:
            return
        previous = self._entries.pop(key, None)
        if previous is not None:
            self._bytes -= len(previous.data)
        self._entries[key] = preview
        self._bytes += len(preview.data)
        while self._bytes > self._max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= len(dropped.data)
