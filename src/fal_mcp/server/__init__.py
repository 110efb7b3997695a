"""The MCP surface: building the server, its tools, tasks, completions, progress and the shape of its results.

May import `jobs`, `media`, `fal` and the top-level modules; must never import `web` (the HTTP surface hosts
this server, not the other way round). Nothing below this layer may import it.
"""
