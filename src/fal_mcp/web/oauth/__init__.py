"""`--auth oauth`: fal-mcp as an OAuth 2.1 resource server, signing people in through the team's identity provider.

Per the MCP authorization spec: the server publishes Protected Resource Metadata (RFC 9728) naming the provider,
answers a request without a usable token with a `WWW-Authenticate: Bearer resource_metadata="…"` challenge, and
accepts access tokens the provider issued for this resource (RFC 8707), checked here against the provider's own
keys. Each signed-in user is a caller of their own; the server's fal key pays.

    fetch.py      reading the provider's public documents: bounded in time and size, never with a credential
    issuer.py     the provider's metadata (RFC 8414 / OpenID discovery) and its signing keys, with rotation
    tokens.py     an access token checked: a JWT against those keys, or an opaque one by introspection (RFC 7662)
    resource.py   the resource server itself: the metadata document, challenges, who a token's user is

Loaded only with `--auth oauth` (PyJWT with it).
"""
