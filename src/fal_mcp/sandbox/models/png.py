"""Tiny real PNG pictures, made with zlib and struct only, so the sandbox needs no imaging library.

The sandbox's image models must hand back files a client can actually open and measure, yet stay
small and deterministic: the same seed always gives the same bytes.
"""

from __future__ import annotations

import struct
import zlib

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encode_png(width: int, height: int, rgb: bytes, *, level: int = 9) -> bytes:
    """Encode 8-bit RGB pixels (row-major, 3 bytes per pixel) as a PNG file, deflated at zlib `level`."""
    if width <= 0 or height <= 0 or len(rgb) != width * height * 3:
        raise ValueError(f"need {width}x{height}x3 bytes of RGB, got {len(rgb)}")
    stride = width * 3
    # Every scanline starts with its filter type; 0 = none.
    raw = b"".join(b"\x00" + rgb[row * stride : (row + 1) * stride] for row in range(height))
    return png_file(width, height, colour_type=2, idat=zlib.compress(raw, level))


def png_file(width: int, height: int, *, colour_type: int, idat: bytes) -> bytes:
    """A PNG file of 8-bit samples around an already deflated image stream (2: RGB, 6: RGBA)."""
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def picture(width: int, height: int, seed: int) -> bytes:
    """A seed-dependent picture: a diagonal two-colour gradient crossed by soft stripes, as PNG."""
    start = _colour(seed)
    end = _colour(seed // 7 + 0x9E3779B9)
    stripe = 4 + seed % 9
    pixels = bytearray()
    span = max(width + height - 2, 1)
    for y in range(height):
        for x in range(width):
            mix = (x + y) / span
            shade = 0.82 if ((x - y) // stripe) % 2 else 1.0
            pixels.extend(int((a + (b - a) * mix) * shade) for a, b in zip(start, end, strict=True))
    return encode_png(width, height, bytes(pixels))


def _colour(seed: int) -> tuple[int, int, int]:
    mixed = (seed * 2654435761) & 0xFFFFFF
    return (mixed >> 16) & 0xFF, (mixed >> 8) & 0xFF, mixed & 0xFF


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
