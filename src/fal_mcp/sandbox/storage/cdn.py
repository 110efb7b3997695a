"""Storage: the CDN token, the CDN upload, and the fallback of initiate + signed PUT (reference section 6).

The three credentials stay apart, as on fal: the token endpoint and initiate take the fal key; the CDN
upload takes only the short-lived CDN token (`Authorization: Bearer <token>`; a fal key there is refused);
a signed upload URL carries its own signature and refuses any `Authorization` header (as a signed cloud
storage URL answers "multiple authentication mechanisms"). Uploaded files are served by the fake CDN.
"""

from __future__ import annotations

import re
import secrets
import threading
import uuid
from datetime import UTC, datetime, timedelta

from fal_mcp.sandbox.models.inputs import JsonObject
from fal_mcp.sandbox.models.outputs import MediaFile
from fal_mcp.sandbox.platform.listing import Answer

MAX_UPLOAD_BYTES = 100 * 1024 * 1024
TOKEN_LIFETIME = timedelta(hours=1)
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}")


def _file_name(requested: str | None) -> str:
    name = (requested or "").strip()
    return name if _SAFE_NAME.fullmatch(name) else "upload.bin"


class Storage:
    """Issued CDN tokens, pending signed uploads and the files uploaded so far."""

    def __init__(self) -> None:
        self._tokens: set[str] = set()
        self._pending: dict[str, tuple[str, str]] = {}
        """signature -> (file name on the CDN, content type)"""
        self.files: dict[str, MediaFile] = {}
        """CDN file name -> what was uploaded under it."""
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._tokens.clear()
            self._pending.clear()
            self.files.clear()

    def token(self, origin: str) -> Answer:
        """`POST /storage/auth/token?storage_type=fal-cdn-v3` (already authenticated with the fal key)."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens.add(token)
        expires = (datetime.now(UTC) + TOKEN_LIFETIME).isoformat(timespec="seconds").replace("+00:00", "Z")
        return Answer(200, {"token": token, "token_type": "Bearer", "base_url": f"{origin}/cdn", "expires_at": expires})

    def cdn_upload(
        self, authorization: str | None, content_type: str | None, file_name: str | None, body: bytes, origin: str
    ) -> Answer:
        """`POST {base_url}/files/upload` with the CDN token; answers the file's public `access_url`."""
        scheme, _, token = (authorization or "").partition(" ")
        with self._lock:
            known = scheme.lower() == "bearer" and token.strip() in self._tokens
        if not known:
            return Answer(401, {"detail": "Invalid or missing CDN token"})
        if len(body) > MAX_UPLOAD_BYTES:
            return Answer(413, {"detail": "File too large for a single upload; use multipart"})
        name = f"upload-{uuid.uuid4()}-{_file_name(file_name)}"
        with self._lock:
            self.files[name] = MediaFile(content_type or "application/octet-stream", body)
        return Answer(200, {"access_url": f"{origin}/cdn/files/{name}"})

    def initiate(self, request: JsonObject, origin: str) -> Answer:
        """`POST /storage/upload/initiate` (authenticated): a signed `upload_url` and the future `file_url`."""
        requested = request.get("file_name")
        content_type = request.get("content_type")
        name = f"upload-{uuid.uuid4()}-{_file_name(requested if isinstance(requested, str) else None)}"
        signature = secrets.token_urlsafe(24)
        with self._lock:
            self._pending[signature] = (
                name,
                content_type if isinstance(content_type, str) else "application/octet-stream",
            )
        return Answer(
            200,
            {
                "upload_url": f"{origin}/signed/{signature}?X-Goog-Signature=sandbox",
                "file_url": f"{origin}/cdn/files/{name}",
            },
        )

    def signed_put(self, signature: str, authorization: str | None, content_type: str | None, body: bytes) -> Answer:
        """`PUT upload_url`: the signature in the URL is the only credential it accepts."""
        if authorization is not None:
            return Answer(
                400, {"detail": "Cannot use multiple authentication mechanisms (signed URL and Authorization)"}
            )
        with self._lock:
            pending = self._pending.pop(signature, None)
        if pending is None:
            return Answer(403, {"detail": "SignatureDoesNotMatch"})
        name, declared = pending
        with self._lock:
            self.files[name] = MediaFile(content_type or declared, body)
        return Answer(200, {})
