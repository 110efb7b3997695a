"""Uploading bytes to fal's storage, as reference section 6.1 describes (fal's own client does the same).

First choice: ask `FAL_REST_URL` for a short-lived CDN token (with the fal key), then POST the bytes to the
token's `base_url` + `/files/upload` with *only that token*. If anything in that path fails: ask for a signed
upload URL (with the fal key), PUT the bytes there with *no credential at all*, and hand out the `file_url`.
The fal key therefore only ever goes to `FAL_REST_URL` (through `FalClient.call_api`); the CDN and signed
URLs get the shared pool's plain requests. CDN tokens are cached per key (partition) until shortly before
they expire.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict

from fal_mcp.fal.client import FalClient, read_answer
from fal_mcp.fal.endpoint import join_url
from fal_mcp.fal.errors import FalError, FalProtocolError, decode_response_error, json_field

logger = logging.getLogger(__name__)

TOKEN_MARGIN = timedelta(minutes=1)
"""A token this close to expiry is replaced rather than used."""
UPLOAD_TIMEOUT = httpx.Timeout(300.0, connect=10.0)


class CdnToken(BaseModel):
    model_config = ConfigDict(extra="ignore")

    token: str
    token_type: str = "Bearer"
    base_url: str
    expires_at: datetime | None = None


class SignedUpload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    upload_url: str
    file_url: str


@dataclass(frozen=True)
class Upload:
    """Bytes to send and what they are."""

    data: bytes
    content_type: str
    file_name: str


class FalUploadError(FalError):
    """Both ways into fal's storage failed."""


def _web_url(url: str, what: str, fal: FalClient) -> str:
    """A URL fal handed us, checked before bytes go there: https, or http only to a configured fal origin."""
    if url.startswith("https://") or (url.startswith("http://") and fal.urls.same_origin(url)):
        return url
    raise FalProtocolError(f"{what}: fal answered an unexpected URL scheme")


class FalStorage:
    """Uploads through the CDN token path, falling back to initiate + signed PUT."""

    def __init__(self) -> None:
        self._tokens: dict[str, CdnToken] = {}

    async def upload(self, fal: FalClient, partition: str, upload: Upload) -> str:
        """The public URL of `upload` on fal's CDN."""
        try:
            return await self._via_cdn(fal, partition, upload)
        except (FalError, httpx.HTTPError) as first:
            logger.info("CDN upload failed (%s); trying a signed upload URL", first)
            self._tokens.pop(partition, None)
            try:
                return await self._via_signed_url(fal, upload)
            except (FalError, httpx.HTTPError) as second:
                raise FalUploadError(
                    f"upload to fal storage failed: CDN upload: {_said(first)}; signed-URL fallback: {_said(second)}"
                ) from second

    async def _token(self, fal: FalClient, partition: str) -> CdnToken:
        cached = self._tokens.get(partition)
        if cached is not None and (cached.expires_at is None or cached.expires_at - TOKEN_MARGIN > datetime.now(UTC)):
            return cached
        what = "CDN token"
        token = read_answer(CdnToken, await fal.call_api("POST", fal.urls.cdn_token(), what, json_body={}), what)
        if token.expires_at is not None and token.expires_at.tzinfo is None:
            token.expires_at = token.expires_at.replace(tzinfo=UTC)
        _web_url(token.base_url, what, fal)
        self._tokens[partition] = token
        return token

    async def _via_cdn(self, fal: FalClient, partition: str, upload: Upload) -> str:
        token = await self._token(fal, partition)
        response = await fal.public_http.post(
            join_url(token.base_url, "files/upload"),
            content=upload.data,
            headers={
                "Authorization": f"{token.token_type} {token.token}",
                "Content-Type": upload.content_type,
                "X-Fal-File-Name": quote(upload.file_name, safe=" ._-()[]"),
            },
            timeout=UPLOAD_TIMEOUT,
        )
        if not response.is_success:
            raise decode_response_error(response)
        return _web_url(str(json_field(_body(response), "access_url") or ""), "CDN upload", fal)

    async def _via_signed_url(self, fal: FalClient, upload: Upload) -> str:
        what = "upload initiate"
        body = {"file_name": upload.file_name, "content_type": upload.content_type}
        ticket = read_answer(
            SignedUpload, await fal.call_api("POST", fal.urls.upload_initiate(), what, json_body=body), what
        )
        response = await fal.public_http.put(
            _web_url(ticket.upload_url, what, fal),
            content=upload.data,
            headers={"Content-Type": upload.content_type},
            timeout=UPLOAD_TIMEOUT,
        )
        if not response.is_success:
            raise decode_response_error(response)
        return _web_url(ticket.file_url, what, fal)


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _said(error: Exception) -> str:
    if isinstance(error, httpx.TimeoutException):
        return "timed out"
    if isinstance(error, httpx.RequestError):
        return f"could not reach {error.request.url.host}"
    return str(error)
