"""What the sandbox models produce: output JSON shaped like the real models', media files, log lines.

Everything here is deterministic in (request id, cleaned input), so a test can predict it. A job makes its
output while it runs (`Job.prepare`), so a finished job reports at once: what a client measures after the
completion is its own time, not the fake's picture-making.
"""

from __future__ import annotations

import base64
import functools
import io
import math
import random
import struct
import wave
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from fal_mcp.sandbox.models.inputs import Json, JsonObject
from fal_mcp.sandbox.models.png import encode_png, picture, png_file

# Picture sizes per `image_size`; tiny on purpose but with the real aspect ratios.
IMAGE_SIZES: Mapping[str, tuple[int, int]] = {
    "square_hd": (64, 64),
    "square": (48, 48),
    "portrait_4_3": (48, 64),
    "portrait_16_9": (36, 64),
    "landscape_4_3": (64, 48),
    "landscape_16_9": (64, 36),
}

# An ISO-BMFF `ftyp` box plus an empty `free` box: enough for `file` to call it MP4.
_MP4_STUB = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2\x00\x00\x00\x08free"


@dataclass(frozen=True)
class MediaFile:
    """A file the fake CDN serves under `/cdn/files/<name>`."""

    content_type: str
    data: bytes


@dataclass(frozen=True)
class PlannedLog:
    """A runner log line the model emits `at` a fraction (0..1) of its run time."""

    at: float
    message: str
    level: str = "INFO"


@dataclass(frozen=True)
class Generation:
    """What a model gets when its job completes."""

    request_id: str
    input: JsonObject
    """Validated input with defaults filled in."""
    cdn_url: str
    """Absolute base of the fake CDN, e.g. `http://127.0.0.1:8123/cdn`."""
    inference_time: float


@dataclass(frozen=True)
class Generated:
    """A model's output JSON and the media files its URLs point at."""

    output: JsonObject
    files: Mapping[str, MediaFile] = field(default_factory=dict[str, MediaFile])


Generator = Callable[[Generation], Generated]
LogPlan = Callable[[JsonObject], tuple[PlannedLog, ...]]


def no_logs(_input: JsonObject) -> tuple[PlannedLog, ...]:
    """A model that prints nothing."""
    return ()


def images(job: Generation) -> Generated:
    """flux/fast-sdxl style: `images` with real PNGs, `seed`, `timings`, `has_nsfw_concepts`."""
    width, height = IMAGE_SIZES[_text(job.input, "image_size", "landscape_4_3")]
    seed_value = job.input.get("seed")
    seed = seed_value if isinstance(seed_value, int) else zlib.crc32(job.request_id.encode())
    count = _integer(job.input, "num_images", 1)
    prompt = _text(job.input, "prompt", "")
    entries: list[Json] = []
    files: dict[str, MediaFile] = {}
    for index in range(count):
        name = f"{job.request_id}-{index}.png"
        data = picture(width, height, seed + index + zlib.crc32(prompt.encode()))
        files[name] = MediaFile("image/png", data)
        entries.append(
            {
                "url": f"{job.cdn_url}/files/{name}",
                "width": width,
                "height": height,
                "content_type": "image/png",
                "file_name": name,
                "file_size": len(data),
            }
        )
    nsfw: list[Json] = [False] * count
    output: JsonObject = {
        "images": entries,
        "seed": seed,
        "timings": {"inference": job.inference_time},
        "has_nsfw_concepts": nsfw,
        "prompt": prompt,
    }
    return Generated(output, files)


def image_logs(data: JsonObject) -> tuple[PlannedLog, ...]:
    """One line for loading, then one per denoising step."""
    steps = _integer(data, "num_inference_steps", 4)
    lines = [PlannedLog(0.0, "Loading model weights")]
    lines += [PlannedLog(step / (steps + 1), f"Denoising step {step}/{steps}") for step in range(1, steps + 1)]
    return tuple(lines)


def video(job: Generation) -> Generated:
    """kling style: one `video` file object."""
    name = f"{job.request_id}.mp4"
    entry: JsonObject = {
        "url": f"{job.cdn_url}/files/{name}",
        "content_type": "video/mp4",
        "file_name": name,
        "file_size": len(_MP4_STUB),
    }
    return Generated({"video": entry}, {name: MediaFile("video/mp4", _MP4_STUB)})


AUDIO_RATE = 8000
"""Samples per second of the sandbox's WAV files: small files, still real sound."""


def tone(seconds: float, pitch_hz: float) -> bytes:
    """A mono 16-bit PCM WAV of a sine tone that fades in and out (no click), as a browser can play it."""
    count = max(1, int(seconds * AUDIO_RATE))
    fade = max(1, count // 10)
    frames = bytearray()
    for index in range(count):
        envelope = min(1.0, index / fade, (count - 1 - index) / fade)
        sample = int(12000 * envelope * math.sin(2 * math.pi * pitch_hz * index / AUDIO_RATE))
        frames += sample.to_bytes(2, "little", signed=True)
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(AUDIO_RATE)
        wav.writeframes(bytes(frames))
    return out.getvalue()


def audio(job: Generation) -> Generated:
    """stable-audio style: one `audio_file` object, a WAV whose pitch follows the prompt."""
    seconds = _integer(job.input, "seconds_total", 1)
    pitch = 220 + zlib.crc32(_text(job.input, "prompt", "").encode()) % 440
    name = f"{job.request_id}.wav"
    data = tone(seconds, pitch)
    entry: JsonObject = {
        "url": f"{job.cdn_url}/files/{name}",
        "content_type": "audio/wav",
        "file_name": name,
        "file_size": len(data),
    }
    return Generated({"audio_file": entry}, {name: MediaFile("audio/wav", data)})


VIDEO_BATCHES = 12


def video_logs(_input: JsonObject) -> tuple[PlannedLog, ...]:
    """About one line per second of the 12 s run: `Generating frame batch i/12`."""
    return tuple(
        PlannedLog(batch / VIDEO_BATCHES, f"Generating frame batch {batch + 1}/{VIDEO_BATCHES}")
        for batch in range(VIDEO_BATCHES)
    )


def crash_logs(_input: JsonObject) -> tuple[PlannedLog, ...]:
    """The failing model gets as far as loading, then dies with an ERROR line."""
    return (
        PlannedLog(0.0, "Loading model weights"),
        PlannedLog(1.0, "RuntimeError: sandbox model crashed on purpose", "ERROR"),
    )


def nothing(_job: Generation) -> Generated:
    """For a model that never succeeds; its crash is described in the catalog."""
    return Generated({})


def echo(job: Generation) -> Generated:
    """The echo workflow returns its input untouched."""
    return Generated({"echo": job.input})


def text(job: Generation) -> Generated:
    """any-llm style: a deterministic reply that quotes the prompt."""
    model = _text(job.input, "model", "sandbox/echo-llm")
    reply = f"[{model}] You said: {_text(job.input, 'prompt', '')}"
    return Generated({"output": reply, "partial": False, "error": None})


def _text(data: JsonObject, key: str, default: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else default


def _integer(data: JsonObject, key: str, default: int) -> int:
    value = data.get(key)
    return value if isinstance(value, int) else default


def inline_image(job: Generation) -> Generated:
    """A model that answers with its picture inline, as a `data:` URI of about `megabytes` MB (noise compresses badly)."""
    megabytes = _integer(job.input, "megabytes", 5)
    side = math.isqrt(megabytes * 1_000_000 // 3)
    noise = random.Random(job.request_id).randbytes(side * side * 3)
    data = encode_png(side, side, noise, level=1)
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    entry: JsonObject = {"url": uri, "width": side, "height": side, "content_type": "image/png", "file_size": len(data)}
    return Generated({"images": [entry], "prompt": _text(job.input, "prompt", "")})


def huge_images(job: Generation) -> Generated:
    """`num_images` inline PNGs of `side` x `side` RGBA pixels that compress to a few hundred KB each.

    Small as output, enormous once decoded (8,000 x 8,000 RGBA is 256 MB): what a preview must not blow up on.
    """
    side = _integer(job.input, "side", 8000)
    entries: list[Json] = []
    for index in range(_integer(job.input, "num_images", 1)):
        data = _huge_png(side, index)
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        entries.append({"url": uri, "width": side, "height": side, "content_type": "image/png", "file_size": len(data)})
    return Generated({"images": entries, "prompt": _text(job.input, "prompt", "")})


@functools.lru_cache(maxsize=8)
def _huge_png(side: int, index: int) -> bytes:
    """A horizontal gradient in a colour of its own per `index`: one row, then every row "same as above".

    Deflating hundreds of megabytes takes a second, so the identical part (the rows after the first) is
    deflated once per size and shared: each picture's first row is deflated alone and fully flushed, which
    lets the shared rest follow it in one valid stream.
    """
    tint = _colour_of(index)
    first = b"\x00" + bytes(
        channel for x in range(side) for channel in (x * 255 // side, tint[1], tint[2], 255 - tint[0] // 2)
    )
    head = zlib.compressobj(9, zlib.DEFLATED, -15)
    lead = head.compress(first) + head.flush(zlib.Z_FULL_FLUSH)
    rest, rest_checksum_of = _same_as_above(side)
    checksum = rest_checksum_of(zlib.adler32(first))
    stream = b"\x78\xda" + lead + rest + struct.pack(">I", checksum)
    return png_file(side, side, colour_type=6, idat=stream)


@functools.lru_cache(maxsize=2)
def _same_as_above(side: int) -> tuple[bytes, Callable[[int], int]]:
    """The raw deflate of `side - 1` rows of filter 2 ("up") and zero differences, and how to extend a checksum."""
    row = b"\x02" + bytes(side * 4)
    body = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts = [body.compress(row) for _ in range(side - 1)]
    parts.append(body.flush())

    def extended(checksum: int) -> int:
        for _ in range(side - 1):
            checksum = zlib.adler32(row, checksum)
        return checksum

    return b"".join(parts), extended


def _colour_of(index: int) -> tuple[int, int, int]:
    mixed = ((index + 1) * 2654435761) & 0xFFFFFF
    return (mixed >> 16) & 0xFF, (mixed >> 8) & 0xFF, mixed & 0xFF


# -- what the outputs look like, as the platform API's OpenAPI documents describe them ----------------------


def _file_schema(*extra: str) -> JsonObject:
    properties: JsonObject = {
        "url": {"type": "string", "title": "Url", "description": "The URL where the file can be downloaded from."},
        "content_type": {"type": "string", "title": "Content Type", "description": "The mime type of the file."},
        "file_name": {"type": "string", "title": "File Name", "description": "The name of the file."},
        "file_size": {"type": "integer", "title": "File Size", "description": "The size of the file in bytes."},
    }
    for name in extra:
        properties[name] = {"type": "integer", "title": name.title(), "description": f"The {name} of the image."}
    return {"type": "object", "title": "File", "properties": properties, "required": ["url"]}


SHARED_SCHEMAS: Mapping[str, JsonObject] = {
    "File": _file_schema(),
    "Image": {**_file_schema("width", "height"), "title": "Image"},
}
"""Components every sandbox OpenAPI document carries (outputs refer to them with `$ref`)."""


def _images(description: str) -> JsonObject:
    return {
        "type": "array",
        "title": "Images",
        "items": {"$ref": "#/components/schemas/Image"},
        "description": description,
    }


IMAGES_OUTPUT: JsonObject = {
    "type": "object",
    "properties": {
        "images": _images("The generated images."),
        "seed": {"type": "integer", "title": "Seed", "description": "Seed of the generated image."},
        "timings": {"type": "object", "title": "Timings", "additionalProperties": {"type": "number"}},
        "has_nsfw_concepts": {
            "type": "array",
            "title": "Has Nsfw Concepts",
            "items": {"type": "boolean"},
            "description": "Whether each image contains NSFW concepts.",
        },
        "prompt": {"type": "string", "title": "Prompt", "description": "The prompt used for generating the image."},
    },
    "required": ["images", "seed", "timings", "has_nsfw_concepts", "prompt"],
}
INLINE_IMAGES_OUTPUT: JsonObject = {
    "type": "object",
    "properties": {
        "images": _images("The generated images, inline as data URIs."),
        "prompt": {"type": "string", "title": "Prompt"},
    },
    "required": ["images"],
}
VIDEO_OUTPUT: JsonObject = {
    "type": "object",
    "properties": {"video": {"$ref": "#/components/schemas/File", "description": "The generated video."}},
    "required": ["video"],
}
AUDIO_OUTPUT: JsonObject = {
    "type": "object",
    "properties": {"audio_file": {"$ref": "#/components/schemas/File", "description": "The generated audio."}},
    "required": ["audio_file"],
}
TEXT_OUTPUT: JsonObject = {
    "type": "object",
    "properties": {
        "output": {"type": "string", "title": "Output", "description": "Generated output"},
        "partial": {"type": "boolean", "title": "Partial", "default": False},
        "error": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "Error"},
    },
    "required": ["output"],
}
ECHO_OUTPUT: JsonObject = {
    "type": "object",
    "properties": {"echo": {"type": "object", "title": "Echo", "description": "The workflow's input, untouched."}},
    "required": ["echo"],
}
NO_OUTPUT: JsonObject = {"type": "object", "properties": {}}
