"""Decoding a large PNG a strip at a time, shrinking each strip before the next is read.

Pillow decodes a PNG whole: an 8,000 x 8,000 RGBA picture takes 256 MB before it can be shrunk, and four at once
took a server past 3 GB. A preview needs a few hundred pixels a side, so here the picture is read in strips of a
few megabytes: the image data is inflated (`zlib`) only as far as the next strip needs, Pillow's own PNG decoder
undoes the row filters of that strip, and the strip is box-shrunk (`Image.reduce`) into the small result at
once. The result is exactly `Image.reduce(factor)` of the whole picture, with memory proportional to the width.

A PNG row's filter may refer to the row above it, so each strip is decoded with the last row of the strip before
it put in front, stored unfiltered (filter type 0): the decoder then unfilters the strip's first row as it would
have in one pass. Only the common layouts are read this way: 8 bits per sample, grey, grey + alpha, RGB or
RGBA, not interlaced. `readable` says whether a PNG is one of them.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image

SIGNATURE = b"\x89PNG\r\n\x1a\n"
STRIP_BYTES = 4 * 1024 * 1024
"""About how much decoded image data one strip holds."""
_MODES = {0: "L", 2: "RGB", 4: "LA", 6: "RGBA"}
"""PNG colour type -> Pillow mode (and raw mode) at 8 bits per sample."""


class StripsFailed(Exception):
    """The PNG's data is damaged or shorter than its header says."""


@dataclass(frozen=True)
class Header:
    width: int
    height: int
    bit_depth: int
    colour_type: int
    interlaced: bool

    @property
    def mode(self) -> str | None:
        """The Pillow mode a strip decodes to, or None when the layout is not one `decode_reduced` reads."""
        if self.bit_depth != 8 or self.interlaced:
            return None
        return _MODES.get(self.colour_type)


def _chunks(data: bytes) -> Iterator[tuple[bytes, memoryview]]:
    view = memoryview(data)
    position = len(SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        body = view[position + 8 : position + 8 + length]
        if len(body) < length:
            raise StripsFailed("the PNG ends inside a chunk")
        yield kind, body
        position += 12 + length


def header(data: bytes) -> Header | None:
    """The PNG's image header, or None when `data` is not a PNG."""
    if not data.startswith(SIGNATURE) or len(data) < 33 or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour, _compression, _filter, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    return Header(width, height, depth, colour, bool(interlace))


def readable(data: bytes) -> bool:
    """Whether `decode_reduced` can read this PNG."""
    found = header(data)
    return found is not None and found.mode is not None


def decode_reduced(data: bytes, factor: int, *, strip_bytes: int = STRIP_BYTES) -> Image:
    """The picture shrunk by `factor` on both sides (as `Image.reduce(factor)` would), read strip by strip."""
    from PIL import Image

    found = header(data)
    mode = found.mode if found is not None else None
    if found is None or mode is None:
        raise StripsFailed("not an 8-bit, non-interlaced PNG")
    width, height = found.width, found.height
    row_bytes = width * len(mode)
    rows_per_strip = max(factor, (strip_bytes // (row_bytes + 1)) // factor * factor)
    compressed = (body for kind, body in _chunks(data) if kind == b"IDAT")
    inflater = zlib.decompressobj()
    pending = bytearray()
    reduced = Image.new(mode, (math.ceil(width / factor), math.ceil(height / factor)))
    above: bytes | None = None
    top = 0
    while top < height:
        rows = min(rows_per_strip, height - top)
        wanted = rows * (row_bytes + 1)
        while len(pending) < wanted:
            source = inflater.unconsumed_tail or next(compressed, None)
            if source is None or inflater.eof:
                raise StripsFailed("the PNG's image data is shorter than its size")
            try:
                pending += inflater.decompress(source, wanted - len(pending))
            except zlib.error:
                raise StripsFailed("the PNG's image data is damaged") from None
        filtered = bytes(pending[:wanted])
        del pending[:wanted]
        lead = b"" if above is None else b"\x00" + above  # the row above, already unfiltered
        decoded_rows = rows + (0 if above is None else 1)
        try:
            strip = Image.frombytes(mode, (width, decoded_rows), zlib.compress(lead + filtered, 0), "zip", mode)
        except (OSError, ValueError):
            raise StripsFailed("the PNG's rows are damaged") from None
        above = strip.crop((0, decoded_rows - 1, width, decoded_rows)).tobytes()
        reduced.paste(strip.reduce(factor, box=(0, decoded_rows - rows, width, decoded_rows)), (0, top // factor))
        strip.close()
        top += rows
    return reduced
