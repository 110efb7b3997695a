"""A small JPEG preview of an image, within an edge and a byte cap, for the user to see in the chat.

A preview is for looking at, not for keeping: the longest side is at most `edge_px`, transparency is laid on
white, and quality (then size) steps down until the JPEG fits `max_bytes`. Pillow is imported here, on
first use, so a server that never makes a preview never loads it. Pictures with absurd pixel counts
(decompression bombs) are refused before they are decoded.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

MAX_PIXELS = 64_000_000
QUALITIES = (85, 70, 55, 40)
SHRINK = 0.7
MIN_EDGE = 32


class PreviewFailed(Exception):
    """The bytes could not be made into a preview; the message says why."""


@dataclass(frozen=True)
class Preview:
    data: bytes
    mime_type: str
    width: int
    height: int


def make_preview(data: bytes, *, edge_px: int, max_bytes: int) -> Preview:
    """Downscale and re-encode `data` (any image Pillow reads) as a JPEG of at most `max_bytes`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as opened:
            width, height = opened.size
            if width * height > MAX_PIXELS:
                raise PreviewFailed(f"{width}x{height} pixels is too many to decode")
            opened.draft("RGB", (edge_px, edge_px))  # JPEG sources decode at a reduced size directly
            picture = opened.convert("RGBA") if opened.mode in ("RGBA", "LA", "PA", "P") else opened.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise PreviewFailed(f"not an image Pillow can read ({type(exc).__name__})") from None
    if picture.mode == "RGBA":
        backdrop = Image.new("RGB", picture.size, "white")
        backdrop.paste(picture, mask=picture.getchannel("A"))
        picture = backdrop
    edge = edge_px
    while edge >= MIN_EDGE:
        shrunk = picture.copy()
        shrunk.thumbnail((edge, edge), Image.Resampling.LANCZOS)
        for quality in QUALITIES:
            out = io.BytesIO()
            shrunk.save(out, format="JPEG", quality=quality, optimize=True)
            if out.tell() <= max_bytes:
                return Preview(out.getvalue(), "image/jpeg", shrunk.width, shrunk.height)
        edge = int(edge * SHRINK)
    raise PreviewFailed(f"no preview fits {max_bytes:,} bytes")
