"""fal-mcp: an MCP server that gives agents safe access to fal.ai's model queue."""

__version__ = "0.1.0"
"""Written here once, and read from here by the build: asking the installed package's metadata instead costs about
3 ms of every start, before the first answer."""

__all__ = ["__version__"]
