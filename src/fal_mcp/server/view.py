"""The MCP App view: one `ui://` resource that shows what run-model, get-result and list-requests return.

Hosts that speak MCP Apps (the `io.modelcontextprotocol/ui` extension) render `view.html` in a sandboxed iframe
beside the tool result: images side by side, video and audio players, a live queued job with a Cancel button, the
request gallery. The three tools name it in `_meta.ui.resourceUri`; every other client ignores that key and gets the
same text, previews and links as before, so nothing here changes a tool's result.

The document is built from `view/` (the official MCP Apps `App` SDK, bundled) and shipped in the package. Its CSP
lets it load media from fal's CDN and storage hosts and from the configured fal origins (the sandbox's CDN is
on one of them), and nothing else: no script, font or connection leaves it.
"""

from __future__ import annotations

import functools
from importlib import resources
from urllib.parse import urlsplit

from mcp.server.apps import APP_MIME_TYPE, Apps, ResourceCsp
from mcp.server.mcpserver.resources import FunctionResource

from fal_mcp.settings import DEFAULT_API_URL, DEFAULT_QUEUE_URL, DEFAULT_REST_URL, DEFAULT_RUN_URL, Settings

VIEW_URI = "ui://fal-mcp/view.html"
"""The view; a tool whose results it shows carries `_meta.ui.resourceUri` = this."""

FAL_MEDIA_ORIGINS = ("https://fal.media", "https://*.fal.media", "https://storage.googleapis.com")
"""Where fal's outputs live: its CDN (`fal.media`, `v2`/`v3`/`v3b.fal.media`) and its storage buckets on GCS."""

_FAL_DEFAULTS = (DEFAULT_RUN_URL, DEFAULT_QUEUE_URL, DEFAULT_API_URL, DEFAULT_REST_URL)


@functools.cache
def view_html() -> str:
    """The built view (`view/build.mjs` writes it), read once."""
    return resources.files("fal_mcp.server").joinpath("view.html").read_text(encoding="utf-8")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def media_domains(settings: Settings) -> list[str]:
    """fal's media hosts, plus the origin of each fal URL configured away from fal's own (a sandbox, a proxy)."""
    configured = (settings.run_url, settings.queue_url, settings.api_url, settings.rest_url)
    own = {_origin(url) for url in _FAL_DEFAULTS}
    extra = [origin for origin in dict.fromkeys(_origin(url) for url in configured) if origin not in own]
    return [*FAL_MEDIA_ORIGINS, *extra]


def view_extension(settings: Settings) -> Apps:
    """The MCP Apps extension serving the view, with a CSP for this server's fal hosts.

    The document is read when a host first asks for it, not at start: a stdio launch does not pay for it.
    """
    csp = ResourceCsp(resource_domains=media_domains(settings))
    apps = Apps()
    apps.add_resource(
        FunctionResource(
            uri=VIEW_URI,
            name="fal-mcp view",
            title="fal results",
            description="Shows fal outputs in the chat: images, video and audio players, live jobs, the request gallery",
            mime_type=APP_MIME_TYPE,
            meta={"ui": {"csp": csp.model_dump(by_alias=True, exclude_none=True), "prefersBorder": True}},
            fn=view_html,
        )
    )
    return apps
