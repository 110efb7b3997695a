"""Media in a model's output, and a result's text kept small. Pure: no I/O.

fal outputs put media in file objects (`{"url", "content_type", "file_name", "file_size", "width",
"height"}` under `images`, `video`, `audio`, ...), sometimes as bare URL strings, and some models answer
`data:` URIs (megabytes of base64) instead of URLs. `find_media` lists every image, video and audio file
with where it sits; `render_text` writes a result's text with each long `data:` URI replaced by a short
placeholder saying where the full value is, and cuts the text at a cap with a pointer to the structured
result, so one result cannot flood a model's context.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import urlsplit

MediaKind = Literal["image", "video", "audio"]

DEFAULT_TEXT_LIMIT = 20_000
"""Characters of text a result carries by default (`FAL_MCP_TEXT_MAX_CHARS`)."""
INLINE_THRESHOLD = 256
"""A `data:` URI longer than this is replaced in the text."""
MAX_MEDIA = 100
MAX_DEPTH = 24

_EXTENSIONS: dict[str, MediaKind] = {
    **dict.fromkeys(("png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff", "avif", "heic"), "image"),
    **dict.fromkeys(("mp4", "webm", "mov", "mkv", "avi", "m4v"), "video"),
    **dict.fromkeys(("mp3", "wav", "ogg", "flac", "m4a", "aac", "opus"), "audio"),
}


@dataclass(frozen=True)
class MediaRef:
    """One media file in an output."""

    where: str
    """Its place in the structured result, e.g. `output.images[0]`."""
    url: str
    """An http(s) URL, or a `data:` URI."""
    kind: MediaKind
    content_type: str | None = None
    file_name: str | None = None
    size: int | None = None
    width: int | None = None
    height: int | None = None

    @property
    def inline(self) -> bool:
        return self.url[:5].lower() == "data:"


def data_uri_type(uri: str) -> str | None:
    """The media type of a `data:` URI (`image/png`), or None if it is not one."""
    if uri[:5].lower() != "data:":
        return None
    head = uri[5 : uri.find(",")] if "," in uri[:300] else ""
    return head.split(";")[0].strip().lower() or "text/plain"


def _kind(content_type: str | None, name: str | None) -> MediaKind | None:
    if content_type:
        major = content_type.split("/")[0].lower()
        if major in ("image", "video", "audio"):
            return major
    if name:
        extension = urlsplit(name).path.rsplit(".", 1)[-1].lower() if "." in name else ""
        return _EXTENSIONS.get(extension)
    return None


def _number(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _from_string(value: str, where: str) -> MediaRef | None:
    inline_type = data_uri_type(value)
    if inline_type is not None:
        kind = _kind(inline_type, None)
        return MediaRef(where, value, kind, inline_type) if kind else None
    if value[:8].lower() == "https://" or value[:7].lower() == "http://":
        kind = _kind(None, value)
        return MediaRef(where, value, kind) if kind else None
    return None


def _from_file(entry: Mapping[str, Any], where: str) -> MediaRef | None:
    url = entry.get("url")
    if not isinstance(url, str):
        return None
    content_type = _text(entry.get("content_type")) or data_uri_type(url)
    kind = _kind(content_type, _text(entry.get("file_name"))) or _kind(
        None, url if not url.startswith("data:") else None
    )
    if kind is None:
        return None
    return MediaRef(
        where=where,
        url=url,
        kind=kind,
        content_type=content_type,
        file_name=_text(entry.get("file_name")),
        size=_number(entry.get("file_size")),
        width=_number(entry.get("width")),
        height=_number(entry.get("height")),
    )


def find_media(value: Any, where: str = "output", depth: int = 0) -> list[MediaRef]:
    """Every image, video and audio file in `value`, in order (at most `MAX_MEDIA`)."""
    found: list[MediaRef] = []
    if depth > MAX_DEPTH:
        return found
    if isinstance(value, str):
        ref = _from_string(value, where)
        return [ref] if ref else found
    if isinstance(value, Mapping):
        entry = cast(Mapping[str, Any], value)
        ref = _from_file(entry, where)
        if ref is not None:
            return [ref]
        for key, item in entry.items():
            found += find_media(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(cast(list[Any], value)):
            found += find_media(item, f"{where}[{index}]", depth + 1)
    return found[:MAX_MEDIA]


def _placeholder(value: str, where: str) -> str:
    media_type = data_uri_type(value) or "data"
    return f"<{media_type} data URI, {len(value):,} characters; the full value is in structuredContent at {where}>"


def without_inline_data(value: Any, where: str = "") -> Any:
    """`value` with each long `data:` URI replaced by a placeholder naming its place."""
    if isinstance(value, str):
        return _placeholder(value, where) if len(value) > INLINE_THRESHOLD and data_uri_type(value) else value
    if isinstance(value, Mapping):
        mapping = cast(Mapping[str, Any], value)
        return {key: without_inline_data(item, f"{where}.{key}" if where else key) for key, item in mapping.items()}
    if isinstance(value, list):
        return [without_inline_data(item, f"{where}[{index}]") for index, item in enumerate(cast(list[Any], value))]
    return value


def render_text(headline: str, structured: Mapping[str, Any], *, limit: int = DEFAULT_TEXT_LIMIT) -> str:
    """The text of a result: the headline, then the structured result as compact JSON, within `limit`."""
    body = json.dumps(without_inline_data(structured), ensure_ascii=False, separators=(",", ":"))
    text = f"{headline}\n{body}"
    if len(text) <= limit:
        return text
    note = f"\n... [text cut at {limit:,} of {len(text):,} characters; the complete result is in structuredContent]"
    return text[: max(0, limit - len(note))] + note
