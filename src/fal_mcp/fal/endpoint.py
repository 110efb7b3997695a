"""Endpoint ids and the fal URLs built from them: pure, no I/O.

An endpoint id names a fal model: ``owner/app[/path...]`` (``fal-ai/flux/schnell``), or with a namespace
``workflows/owner/app[/path...]`` and ``comfy/owner/app[/path...]``. Runs and submits address the *full* id;
status, result and cancel address the queue by the *base* app id (owner/app, three segments for namespaces),
because fal's queue stores requests per app, not per sub-path.

Everything that reaches a URL passes through here, so this is where hostile input is refused: every segment
must match a strict ASCII pattern, which rules out ``..``, percent-escapes, ``?``, ``#``, ``@``, ``:``,
backslashes, whitespace, control characters and unicode look-alikes. Nothing a caller sends can change the
host or escape the path a request goes to.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

NAMESPACES = frozenset({"workflows", "comfy"})
"""First segments that make an id three segments deep at the base (fal's ``APP_NAMESPACES``)."""

MAX_SEGMENTS = 12
MAX_SEGMENT_LENGTH = 100

_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_LEGACY_APP = re.compile(r"([0-9]+)-([A-Za-z0-9-]+)")
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


class InvalidIdError(ValueError):
    """An endpoint id, id segment or request id that cannot be sent to fal as given."""


def _shown(text: str, limit: int = 60) -> str:
    """Quote caller text for an error message: repr keeps control characters visible and on one line."""
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


def _check_segment(segment: str, what: str) -> str:
    if not _SEGMENT.fullmatch(segment) or ".." in segment:
        raise InvalidIdError(
            f"invalid {what} {_shown(segment)}: each segment must be 1-{MAX_SEGMENT_LENGTH} ASCII letters, digits, '-', '_' "
            "or '.', starting with a letter or digit (no '/', '..', '%', '?', '#', '@', ':', spaces or unicode)"
        )
    return segment


@dataclass(frozen=True, slots=True)
class EndpointId:
    """A validated fal endpoint id, split into its parts."""

    owner: str
    app: str
    path: tuple[str, ...] = ()
    namespace: str | None = None

    @classmethod
    def parse(cls, endpoint_id: str) -> EndpointId:
        """Parse ``owner/app[/path...]`` (or a namespaced id); raise `InvalidIdError` on anything unsafe."""
        if not endpoint_id.strip():
            raise InvalidIdError("endpoint_id is empty: give a fal model id such as 'fal-ai/flux/schnell'")
        parts = endpoint_id.split("/")
        if len(parts) > MAX_SEGMENTS:
            raise InvalidIdError(f"invalid endpoint_id: more than {MAX_SEGMENTS} segments")
        for part in parts:
            _check_segment(part, "endpoint_id segment")
        if len(parts) == 1:
            legacy = _LEGACY_APP.fullmatch(parts[0])
            if legacy is None:
                raise InvalidIdError(
                    f"invalid endpoint_id {_shown(endpoint_id)}: expected 'owner/app[/path]', e.g. 'fal-ai/flux/schnell'"
                )
            return cls(owner=legacy.group(1), app=legacy.group(2))
        if parts[0] in NAMESPACES:
            if len(parts) < 3:
                raise InvalidIdError(f"invalid endpoint_id {_shown(endpoint_id)}: '{parts[0]}/' ids need owner and app")
            return cls(owner=parts[1], app=parts[2], path=tuple(parts[3:]), namespace=parts[0])
        return cls(owner=parts[0], app=parts[1], path=tuple(parts[2:]))

    @classmethod
    def from_segments(cls, app_owner: str, app_id: str, app_variant: str | None = None) -> EndpointId:
        """Build from fal's tool-integration form: ``app_owner`` + ``app_id`` [+ ``app_variant``]."""
        _check_segment(app_owner, "app_owner")
        _check_segment(app_id, "app_id")
        joined = f"{app_owner}/{app_id}"
        if app_variant:
            for part in app_variant.split("/"):
                _check_segment(part, "app_variant segment")
            joined = f"{joined}/{app_variant}"
        return cls.parse(joined)

    @property
    def base(self) -> str:
        """The queue's address for status/result/cancel: owner/app, or namespace/owner/app."""
        head = f"{self.owner}/{self.app}"
        return f"{self.namespace}/{head}" if self.namespace else head

    def __str__(self) -> str:
        return "/".join((self.base, *self.path))


def resolve_endpoint(
    endpoint_id: str | None,
    app_owner: str | None = None,
    app_id: str | None = None,
    app_variant: str | None = None,
) -> EndpointId:
    """Accept exactly one of the two documented forms of naming a model."""
    segments_given = any(v is not None and v != "" for v in (app_owner, app_id, app_variant))
    if endpoint_id and segments_given:
        raise InvalidIdError("give either endpoint_id or app_owner/app_id[/app_variant], not both")
    if endpoint_id:
        return EndpointId.parse(endpoint_id)
    if segments_given:
        if not app_owner or not app_id:
            raise InvalidIdError("app_owner and app_id are both required when endpoint_id is not given")
        return EndpointId.from_segments(app_owner, app_id, app_variant or None)
    raise InvalidIdError("name the model: endpoint_id (e.g. 'fal-ai/flux/schnell') or app_owner + app_id")


def check_request_id(request_id: str) -> str:
    """Validate a queue request id before it becomes part of a URL."""
    if not _REQUEST_ID.fullmatch(request_id):
        raise InvalidIdError(
            f"invalid request_id {_shown(request_id)}: expected the id fal returned at submit "
            "(letters, digits, '-' or '_', up to 128 characters)"
        )
    return request_id


def join_url(base: str, *parts: str) -> str:
    """Join validated path parts onto a base URL that may carry its own path prefix."""
    tail = "/".join(p.strip("/") for p in parts if p)
    return f"{base.rstrip('/')}/{tail}" if tail else base.rstrip("/")


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL, with the default port filled in; None for anything else."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


def _with_query(url: str, query: Iterable[tuple[str, str]]) -> str:
    encoded = urlencode(list(query))
    return f"{url}?{encoded}" if encoded else url


@dataclass(frozen=True, slots=True)
class FalUrls:
    """Builds every fal URL from the configured bases; the only place request URLs are made."""

    run_base: str
    queue_base: str
    api_base: str = "https://api.fal.ai"
    rest_base: str = "https://rest.fal.ai"

    def owns(self, url: str) -> bool:
        """Whether `url` lies under one of the configured fal bases (the only places a credential may go)."""
        bases = (self.run_base, self.queue_base, self.api_base, self.rest_base)
        return any(url == base or url.startswith((base + "/", base + "?")) for base in bases)

    def same_origin(self, url: str) -> bool:
        """Whether `url` is on the scheme, host and port of a configured fal base (the sandbox's CDN is)."""
        origin = _origin(url)
        return origin is not None and any(
            origin == _origin(base) for base in (self.run_base, self.queue_base, self.api_base, self.rest_base)
        )

    def models(self, query: Iterable[tuple[str, str]]) -> str:
        """The platform API's model listing (search, find, list) with these query parameters."""
        return _with_query(join_url(self.api_base, "v1/models"), query)

    def pricing(self, endpoints: Iterable[EndpointId]) -> str:
        return _with_query(join_url(self.api_base, "v1/models/pricing"), (("endpoint_id", str(e)) for e in endpoints))

    def pricing_estimate(self) -> str:
        """Where fal estimates what calls of a model will cost (reference section 8.2)."""
        return join_url(self.api_base, "v1/models/pricing/estimate")

    def billing_events(self, request_id: str) -> str:
        """What fal charged for one request (admin key only)."""
        query = [("request_id", check_request_id(request_id))]
        return _with_query(join_url(self.api_base, "v1/models/billing-events"), query)

    def cdn_token(self) -> str:
        """Where a short-lived token for the v3 CDN is issued (reference section 6.1)."""
        return _with_query(join_url(self.rest_base, "storage/auth/token"), [("storage_type", "fal-cdn-v3")])

    def upload_initiate(self) -> str:
        """Where a signed upload URL is issued, the fallback when the CDN upload fails."""
        return _with_query(join_url(self.rest_base, "storage/upload/initiate"), [("storage_type", "gcs")])

    def run(self, endpoint: EndpointId) -> str:
        return join_url(self.run_base, str(endpoint))

    def submit(self, endpoint: EndpointId) -> str:
        return join_url(self.queue_base, str(endpoint))

    def request(self, endpoint: EndpointId, request_id: str) -> str:
        """The request's own URL: GET it for the result."""
        return join_url(self.queue_base, endpoint.base, "requests", check_request_id(request_id))

    def status(self, endpoint: EndpointId, request_id: str) -> str:
        return join_url(self.request(endpoint, request_id), "status")

    def status_stream(self, endpoint: EndpointId, request_id: str) -> str:
        return join_url(self.request(endpoint, request_id), "status", "stream")

    def cancel(self, endpoint: EndpointId, request_id: str) -> str:
        return join_url(self.request(endpoint, request_id), "cancel")
