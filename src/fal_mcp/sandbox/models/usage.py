"""How many billing units a finished job consumed, counted the way fal counts its model's `unit`.

fal bills successful outputs by each model's unit (reference section 8.2): per image, per megapixel, per second of
video or audio, per request, or per GPU-second for models without an output price. The sandbox draws small
pictures, yet it bills the size that was asked for, at fal's own preset sizes (`landscape_4_3` is 1024x768), and
a megapixel model bills each image's megapixels rounded up to a whole megapixel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from fal_mcp.sandbox.models.inputs import JsonObject

NOMINAL_SIZES: Mapping[str, tuple[int, int]] = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
"""What fal's image models make for each `image_size` preset (width, height)."""

Usage = Callable[[JsonObject, float], float]
"""(validated input, seconds the runner worked) -> units billed."""


def _count(data: JsonObject, key: str, default: int) -> int:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def per_request(_data: JsonObject, _run_s: float) -> float:
    """One unit per call, whatever it made."""
    return 1.0


def images(data: JsonObject, _run_s: float) -> float:
    """One unit per image made (`num_images`)."""
    return float(_count(data, "num_images", 1))


def megapixels(data: JsonObject, _run_s: float) -> float:
    """Each image's megapixels at the size asked for, rounded up to a whole megapixel, times `num_images`."""
    size = data.get("image_size", "landscape_4_3")
    width, height = NOMINAL_SIZES.get(size, NOMINAL_SIZES["landscape_4_3"]) if isinstance(size, str) else (0, 0)
    return float(_count(data, "num_images", 1) * math.ceil(width * height / 1_000_000))


def video_seconds(data: JsonObject, _run_s: float) -> float:
    """Seconds of video made (`duration`, "5" or "10")."""
    duration = data.get("duration", "5")
    return float(duration) if isinstance(duration, str) and duration.isdigit() else 5.0


def audio_seconds(data: JsonObject, _run_s: float) -> float:
    """Seconds of audio made (`seconds_total`)."""
    return float(_count(data, "seconds_total", 1))


def compute_seconds(_data: JsonObject, run_s: float) -> float:
    """The seconds the runner worked (unscaled: what fal would bill)."""
    return run_s
