"""The HTTP surface: the ASGI app (health, the gate, REST, MCP), authentication, REST and its OpenAPI, uvicorn.

May import `server`, `jobs`, `media`, `fal` and the top-level modules. Only `cli` imports it, and only when
serving HTTP: a stdio start never loads it.
"""
