"""fal-mcp: an MCP server that gives agents safe access to fal.ai's model queue."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fal-mcp")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
