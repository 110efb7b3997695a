"""fal's HTTP APIs, and nothing of MCP: ids and URLs, the queue client, storage uploads, the platform API, errors.

May import: `fal_mcp.settings` and the libraries. Must never import `jobs`, `media`, `server`, `web` or `cli`:
this layer would work unchanged under any other surface.
"""
