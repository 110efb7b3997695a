"""Fetching an output's media file (for a preview, or to save it), without becoming a way into the user's network.

The URL comes from a model's output, which a caller can shape (the echo workflow returns its input), so it
is treated as hostile: it is fetched only over https from a host whose every address is public (no
loopback, private, link-local, shared or reserved address: no cloud metadata endpoint, no router admin
page), or from the exact origin of a configured fal base URL (how the sandbox's CDN on 127.0.0.1 is
reached). Never with a credential (the shared pool carries none), never following a redirect, within a
size cap and a time limit.

Known gap: the host is resolved here and again by the connection, so a DNS answer that changes in between
(rebinding) is not caught; the https requirement keeps such a target to hosts with a valid certificate.
"""

from __future__ import annotations

import binascii
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
import httpx

from fal_mcp.fal.endpoint import FalUrls

CHUNK = 64 * 1024


class FetchRefused(Exception):
    """The file was not fetched; the message says why in a few words."""


@dataclass(frozen=True)
class Fetched:
    data: bytes
    content_type: str | None


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def check_fetchable(url: str, fal_urls: FalUrls) -> None:
    """Refuse `url` unless it is https to public addresses only, or on a configured fal origin."""
    if fal_urls.same_origin(url):
        return
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise FetchRefused("only https URLs are fetched")
    if not parts.hostname or parts.username or parts.password:
        raise FetchRefused("not a plain https URL")
    try:
        port = parts.port or 443
        answers = await anyio.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError):
        raise FetchRefused(f"cannot resolve {parts.hostname}") from None
    addresses = {str(answer[4][0]) for answer in answers}
    if not addresses or not all(_public(address) for address in addresses):
        raise FetchRefused(f"{parts.hostname} is a private, loopback or reserved address")


async def stream_media(
    http: httpx.AsyncClient,
    url: str,
    write: Callable[[bytes], object],
    *,
    fal_urls: FalUrls,
    max_bytes: int,
    timeout_s: float,
    accept: str = "*/*",
) -> str | None:
    """Hand the bytes at `url` to `write`, chunk by chunk, checked by `check_fetchable`, at most `max_bytes`,
    within `timeout_s`. Returns the content type the server declared."""
    await check_fetchable(url, fal_urls)
    size = 0
    try:
        with anyio.fail_after(timeout_s):
            async with http.stream("GET", url, headers={"Accept": accept}, timeout=timeout_s) as response:
                if response.status_code != 200:
                    raise FetchRefused(f"the server answered {response.status_code}")
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                    raise FetchRefused(f"the file is larger than {max_bytes / 1_000_000:g} MB")
                async for chunk in response.aiter_bytes(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise FetchRefused(f"the file is larger than {max_bytes / 1_000_000:g} MB")
                    write(chunk)
                return response.headers.get("content-type")
    except TimeoutError:
        raise FetchRefused(f"no answer within {timeout_s:g}s") from None
    except httpx.HTTPError:
        raise FetchRefused("the download failed") from None


async def fetch_media(
    http: httpx.AsyncClient, url: str, *, fal_urls: FalUrls, max_bytes: int, timeout_s: float
) -> Fetched:
    """The image at `url`, in memory (for a preview), fetched like `stream_media`."""
    chunks: list[bytes] = []
    content_type = await stream_media(
        http, url, chunks.append, fal_urls=fal_urls, max_bytes=max_bytes, timeout_s=timeout_s, accept="image/*"
    )
    return Fetched(b"".join(chunks), content_type)


def inline_bytes(uri: str, max_bytes: int) -> bytes:
    """The file inside a base64 `data:` URI, refused when it decodes to more than `max_bytes`."""
    encoded = uri.split(",", 1)[1] if "," in uri else ""
    if len(encoded) * 3 // 4 > max_bytes:
        raise FetchRefused(f"the inline file is larger than {max_bytes / 1_000_000:g} MB")
    try:
        return binascii.a2b_base64(encoded)  # straight from the text: no ASCII copy first, as b64decode makes
    except (binascii.Error, ValueError):
        raise FetchRefused("the inline data is not base64") from None
