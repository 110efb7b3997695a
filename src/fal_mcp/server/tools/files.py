"""upload-file: a file on the user's disk, behind the upload fence, to a public fal CDN URL a model can read."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult
from pydantic import Field

from fal_mcp.jobs.results import UploadResult
from fal_mcp.jobs.uploads import Uploader
from fal_mcp.server.context import app_state, caller_of
from fal_mcp.server.replies import success
from fal_mcp.server.tools.guard import guarded
from fal_mcp.server.tools.roots import ClientRoots
from fal_mcp.server.tools.spec import ToolSpec


@guarded("upload-file")
async def upload_file(
    ctx: Context[Any, Any],
    path: Annotated[
        str,
        Field(description="Absolute path, ~/... or file:// URI", min_length=1, max_length=4096),
    ],
) -> Annotated[CallToolResult, UploadResult]:
    """Upload a local file to fal's CDN; returns a URL for a model's input."""
    state = app_state(ctx)
    result = await Uploader(state, caller_of(ctx), ClientRoots(ctx)).upload(path)
    headline = (
        f"Uploaded {result.file_name} ({result.size_bytes:,} bytes) to {result.url}. "
        "Put this URL in a model's input, e.g. image_url."
    )
    return success(headline, result, sandbox=state.settings.sandbox)


FILE_TOOLS = (
    ToolSpec(upload_file, "upload-file", "Upload a local file", read_only=False, destructive=False, idempotent=False),
)
