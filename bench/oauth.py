"""Sign-in's cost per call: `--auth oauth` against `--auth token`, side by side, on the same fake fal.

Two `fal-mcp --transport http` servers run at once: one checks a static bearer token (`--auth token`), the other a
JWT access token (`--auth oauth`) against an identity provider's published key set. The provider here is a static
one on loopback (its OpenID discovery document and its key set, served by this process): it is asked once at
start, then the server works from its cached keys, which is what is measured. Each server gets `get-status` of one
completed request from an SDK client that sends its bearer, in turn, a slice of calls at a time, so a busy machine
slows both alike. The client keeps one access token, as real clients do for the token's lifetime. Both callers share
the server's key, so each asks about a request it submitted itself (the only kind it may ask about).

Three more rows time the gate's decision alone, in this process: `--auth token`, `--auth oauth` with a token it has
checked before (what every call after a client's first costs), and `--auth oauth` with a new token each time (one
RS256 signature check against the cached keys). The end-to-end figure is the median, over rounds of 10 calls to each
server (which server goes first alternates), of the difference between the two servers' medians in that round.

    python bench/oauth.py [--quick]

Target (issue 16): checking the access token with a cached key set adds at most 0.2 ms (median) per call over
`--auth token`.
"""

from __future__ import annotations

import json
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

import attacks
import overhead
import rig

TARGET_ADDED_MS = 0.2
TOKEN = "bench-token-0123456789abcdef"
SCOPE = "fal:use"


class StaticProvider:
    """An identity provider reduced to what a resource server reads: discovery and one RSA signing key."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.reads: dict[str, int] = {}
        public: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**public, "kid": "bench-1", "alg": "RS256", "use": "sig"}]}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                provider.reads[self.path] = provider.reads.get(self.path, 0) + 1
                documents = {
                    "/.well-known/openid-configuration": {
                        "issuer": provider.issuer,
                        "jwks_uri": f"{provider.issuer}/jwks",
                    },
                    "/jwks": provider.jwks,
                }
                body = json.dumps(documents[self.path]).encode() if self.path in documents else b"{}"
                self.send_response(200 if self.path in documents else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def token(self, audience: str, subject: str = "bench-user") -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": audience, "sub": subject, "iat": now, "exp": now + 3600, "scope": SCOPE}
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "bench-1", "typ": "at+jwt"})

    @contextmanager
    def serving(self) -> Iterator[StaticProvider]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def own_completed_request(client: Any) -> dict[str, str]:
    """A request submitted by this caller through its server, once completed: a caller sharing the server's key
    may ask only about its own requests."""
    submitted = await client.call_tool("submit", {"endpoint_id": rig.FAST, "input": {"prompt": "a benchmark"}})
    if submitted.is_error or submitted.structured_content is None:
        raise RuntimeError(f"submit failed: {submitted.content}")
    arguments = {"request_id": submitted.structured_content["request_id"], "endpoint_id": rig.FAST}
    with anyio.fail_after(30):
        while True:
            status = await client.call_tool("get-status", arguments)
            if status.structured_content is not None and status.structured_content["status"] == "COMPLETED":
                return arguments
            await anyio.sleep(0.05)


async def side_by_side(
    fake: rig.Sandbox, provider: StaticProvider, per_path: int, rounds: int, warm_up: int
) -> dict[str, list[float]]:
    port = free_port()
    with tempfile.TemporaryDirectory() as state_dir:
        token_env = rig.server_env(fake, state_dir, FAL_MCP_AUTH="token", FAL_MCP_AUTH_TOKENS=TOKEN)
        oauth_env = rig.server_env(
            fake,
            state_dir,
            FAL_MCP_AUTH="oauth",
            FAL_MCP_OAUTH_ISSUER=provider.issuer,
            FAL_MCP_PUBLIC_URL=f"http://127.0.0.1:{port}",
            FAL_MCP_OAUTH_SCOPES=SCOPE,
        )
        with (
            rig.http_process(rig.fal_mcp_http_command(), token_env) as token_server,
            rig.http_process([*rig.fal_mcp_command(), "--transport", "http", "--port", str(port)], oauth_env) as oauth,
        ):
            async with AsyncExitStack() as stack:
                bearers = {
                    "--auth token": (token_server.url, TOKEN),
                    "--auth oauth": (oauth.url, provider.token(oauth.url)),
                }
                calls: dict[str, overhead.Call] = {}
                for name, (url, bearer) in bearers.items():
                    client = await stack.enter_async_context(attacks.caller(url, bearer))
                    calls[name] = overhead.tool_call(client, await own_completed_request(client))
                return await alternating(calls, per_path, rounds, warm_up)


async def alternating(
    calls: dict[str, overhead.Call], per_path: int, rounds: int, warm_up: int
) -> dict[str, list[float]]:
    """Like `overhead.measure`, but the two servers take turns going first, round after round: whichever runs second
    in a round is not always the same one."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        for _ in range(warm_up):
            await call()
    names = list(calls)
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            for _ in range(per_path // rounds):
                started = time.perf_counter()
                await calls[name]()
                samples[name].append((time.perf_counter() - started) * 1000)
    return samples


def gate_costs(provider: StaticProvider, count: int) -> dict[str, list[float]]:
    """The gate's decision alone, in this process, per request: `--auth token`, `--auth oauth` with a token it has
    checked before (what a client's calls cost), and `--auth oauth` with a new token each time (one RS256 check)."""
    from fal_mcp.settings import Settings
    from fal_mcp.web.auth import AuthPolicy

    settings = Settings(
        _env_file=None,  # pyright: ignore[reportCallIssue]
        transport="http",
        auth="oauth",
        oauth_issuer=provider.issuer,
        public_url="https://mcp.example.com",
        oauth_scopes=SCOPE,
    )
    token_gate = AuthPolicy("token", (TOKEN,))
    oauth_gate = AuthPolicy.from_settings(settings)
    audience = "https://mcp.example.com/mcp"
    same = provider.token(audience)
    fresh = [provider.token(audience, subject=f"user-{n}") for n in range(count)]

    async def timed(gate: AuthPolicy, bearer: Callable[[int], str]) -> list[float]:
        samples: list[float] = []
        for n in range(count):
            headers = {"authorization": f"Bearer {bearer(n)}"}
            started = time.perf_counter()
            identity = await gate.authenticate(headers)
            samples.append((time.perf_counter() - started) * 1000)
            if identity is None or not hasattr(identity, "principal"):
                raise RuntimeError(f"the gate refused the benchmark's bearer: {identity}")
        return samples

    async def main() -> dict[str, list[float]]:
        await oauth_gate.authenticate({"authorization": f"Bearer {same}"})  # the keys are read here, once
        return {
            "gate, --auth token (in-process)": await timed(token_gate, lambda _n: TOKEN),
            "gate, --auth oauth, a token seen before (in-process)": await timed(oauth_gate, lambda _n: same),
            "gate, --auth oauth, a new token each time (in-process)": await timed(oauth_gate, lambda n: fresh[n]),
        }

    return anyio.run(main)


def paired_added(samples: dict[str, list[float]], rounds: int) -> list[float]:
    """Per round, the median of the oauth slice minus the median of the token slice that ran beside it: a busy
    machine slows both slices of a round alike, so the pairs vary less than the overall medians."""
    token, oauth = samples["--auth token"], samples["--auth oauth"]
    size = len(token) // rounds
    return [
        statistics.median(oauth[r * size : (r + 1) * size]) - statistics.median(token[r * size : (r + 1) * size])
        for r in range(rounds)
    ]


def report(samples: dict[str, list[float]], rounds: int, reads: dict[str, int]) -> rig.Report:
    medians = {name: statistics.median(values) for name, values in samples.items()}
    added = statistics.median(paired_added(samples, rounds))
    gate_added = (
        medians["gate, --auth oauth, a token seen before (in-process)"] - medians["gate, --auth token (in-process)"]
    )
    rows = [
        {
            "path": name,
            "calls": len(values),
            "median ms": medians[name],
            "median us": round(medians[name] * 1000, 1),
            "p90 ms": rig.percentile(values, 90),
            "p99 ms": rig.percentile(values, 99),
        }
        for name, values in samples.items()
    ]
    target = rig.Target(
        "sign-in cost per call",
        f"--auth oauth adds at most {TARGET_ADDED_MS:g} ms (median) over --auth token",
        f"adds {added:.3f} ms end to end (median of {rounds} paired rounds; overall medians differ by "
        f"{medians['--auth oauth'] - medians['--auth token']:.3f} ms); the gate itself adds {gate_added * 1000:.1f} us",
        added <= TARGET_ADDED_MS,
    )
    notes = [
        f"the server read the provider's keys {reads.get('/jwks', 0)} time(s) and its discovery document "
        f"{reads.get('/.well-known/openid-configuration', 0)} time(s) in all {len(samples['--auth oauth'])} calls",
        "get-status of a completed request over streamable HTTP (2026-07-28); each client keeps its one bearer",
    ]
    return rig.Report("oauth", "Sign-in cost: --auth oauth against --auth token", rows, [target], notes)


def run(quick: bool) -> rig.Report:
    per_path, rounds, warm_up, checks = (40, 4, 5, 50) if quick else (2000, 200, 50, 2000)
    provider = StaticProvider()
    with provider.serving(), rig.sandbox() as fake:
        samples = anyio.run(side_by_side, fake, provider, per_path, rounds, warm_up)
        server_reads = dict(provider.reads)
        samples.update(gate_costs(provider, checks))
    result = report(samples, rounds, server_reads)
    result.extra = {"samples_ms": samples}
    return result


if __name__ == "__main__":
    rig.standalone(run, __doc__)
