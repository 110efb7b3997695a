"""How requests reach fal: connection pools by lane, the proxy and CA bundle of the environment, stream slots.

**Lanes.** A status stream holds its connection for as long as a job runs, and so does a synchronous run. Sharing
one pool with the short calls (submit, status, result, cancel, the platform and storage APIs, previews) let a few
hundred waiting calls take every connection, and a submit then queued behind them until it failed. So each
request names its lane (a request extension, `LANE`) and every lane has its own pools: a short call never waits
for a long one. Status streams are also counted (`StreamSlots`): at most `FAL_MCP_MAX_STREAMS` at once and
`FAL_MCP_STREAMS_PER_KEY` per key; a wait that finds no slot polls instead (`jobs.waiting`).

**Corporate networks.** httpx reads neither the proxy variables nor the CA variables when it is handed its own
transport, so they are applied here, from the settings (which take them from the real environment only, never
from a `.env`). `HTTPS_PROXY` serves https URLs and `HTTP_PROXY` http ones, `ALL_PROXY` both when those are unset;
`NO_PROXY` lists the hosts that bypass them (as curl reads it). Loopback gets no implicit exemption: `NO_PROXY`
decides. Through a proxy an https request is a `CONNECT` tunnel, so the key travels inside TLS to fal's host
only. `SSL_CERT_FILE` / `SSL_CERT_DIR` replace the bundled CA list (certifi) for fal's certificates and an https
proxy's.

Pools and the TLS context are made on the first request that needs them: loading a CA bundle takes tens of
milliseconds that a start should not pay (`tests/test_performance.py`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import httpx

from fal_mcp.logs import redactor
from fal_mcp.settings import Settings

Lane = Literal["short", "stream", "run"]
LANE = "fal_mcp.lane"
"""The request extension naming a request's lane (absent: `short`)."""

SHORT_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=4.0)
RUN_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=10, keepalive_expiry=4.0)


def lane_limits(settings: Settings) -> dict[Lane, httpx.Limits]:
    """Each lane's connection budget: streams get exactly the slots they may hold."""
    streams = max(settings.max_streams, 1)
    return {
        "short": SHORT_LIMITS,
        "stream": httpx.Limits(max_connections=streams, max_keepalive_connections=streams, keepalive_expiry=4.0),
        "run": RUN_LIMITS,
    }


@dataclass(frozen=True, slots=True)
class ProxyRoutes:
    """Which proxy, if any, a URL goes through."""

    https: str | None = None
    http: str | None = None
    no_proxy: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> ProxyRoutes:
        entries = tuple(
            entry.strip().lower() for entry in settings.no_proxy.replace(" ", ",").split(",") if entry.strip()
        )
        return cls(
            https=settings.https_proxy or settings.all_proxy,
            http=settings.http_proxy or settings.all_proxy,
            no_proxy=entries,
        )

    def proxy_for(self, url: httpx.URL) -> str | None:
        proxy = self.https if url.scheme == "https" else self.http
        if proxy is None or bypasses(self.no_proxy, url.host, url.port or (443 if url.scheme == "https" else 80)):
            return None
        return proxy


def bypasses(entries: tuple[str, ...], host: str, port: int) -> bool:
    """Whether `NO_PROXY`'s entries exempt `host:port`: `*`; a name, which also covers its subdomains (a leading dot
    is optional); an address or a network (`10.0.0.0/8`); any of them with `:port` to exempt that port only."""
    host = host.strip("[]").lower().rstrip(".")
    address = _address(host)
    for entry in entries:
        if entry == "*":
            return True
        name, wanted_port = _split_port(entry)
        if wanted_port is not None and wanted_port != port:
            continue
        if address is not None and "/" in name:
            try:
                if address in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = name.lstrip(".").strip("[]")
        if host == name or (address is None and host.endswith("." + name)):
            return True
    return False


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _split_port(entry: str) -> tuple[str, int | None]:
    """`host:port`, `[v6]:port` or a bare name, address or network (a bare IPv6 address keeps its colons)."""
    if entry.startswith("["):
        name, _, rest = entry[1:].partition("]")
        return name, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    name, colon, port = entry.rpartition(":")
    if colon and port.isdigit() and ":" not in name:
        return name, int(port)
    return entry, None


def tls_context(settings: Settings) -> ssl.SSLContext:
    """The CA list fal's certificates are checked against: `SSL_CERT_FILE`/`SSL_CERT_DIR`, else certifi's."""
    if settings.ssl_cert_file is not None or settings.ssl_cert_dir is not None:
        return ssl.create_default_context(cafile=settings.ssl_cert_file, capath=settings.ssl_cert_dir)
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


class Network(httpx.AsyncBaseTransport):
    """httpx's connection pools, one per lane and proxy, each made on the first request it serves."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._routes = ProxyRoutes.from_settings(settings)
        self._limits = lane_limits(settings)
        self._tls: ssl.SSLContext | None = None
        self._pools: dict[tuple[Lane, str | None], httpx.AsyncHTTPTransport] = {}
        self._proxied = self._routes.https is not None or self._routes.http is not None
        for proxy in (self._routes.https, self._routes.http):
            password = urlsplit(proxy).password if proxy else None
            if password:
                redactor.add(password)  # a proxy's credentials are secrets too

    def _pool(self, lane: Lane, proxy: str | None) -> httpx.AsyncHTTPTransport:
        pool = self._pools.get((lane, proxy))
        if pool is None:
            if self._tls is None:
                self._tls = tls_context(self._settings)
            pool = httpx.AsyncHTTPTransport(
                verify=self._tls,
                limits=self._limits[lane],
                proxy=self._proxy(proxy) if proxy is not None else None,
                trust_env=False,
            )
            self._pools[lane, proxy] = pool
        return pool

    def _proxy(self, url: str) -> httpx.Proxy:
        """An https proxy's own certificate is checked against the same CA list as fal's."""
        tls = self._tls if url.lower().startswith("https://") else None
        return httpx.Proxy(url, ssl_context=tls)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        lane: Lane = request.extensions.get(LANE, "short")
        proxy = self._routes.proxy_for(request.url) if self._proxied else None
        return await self._pool(lane, proxy).handle_async_request(request)

    async def aclose(self) -> None:
        for pool in self._pools.values():
            await pool.aclose()
        self._pools.clear()


class StreamSlots:
    """Status streams held at once, in all and per key; `take` never waits (no slot: the caller polls).

    Keys are counted by a digest, so the table never holds one. Used from one event loop.
    """

    def __init__(self, total: int, per_key: int) -> None:
        self.total = total
        self.per_key = per_key
        self._held: dict[str, int] = {}
        self._in_use = 0

    @staticmethod
    def holder(key: str | None) -> str:
        return hashlib.sha256(b"fal-mcp-stream:" + (key or "").encode()).hexdigest()[:16]

    def take(self, holder: str) -> bool:
        held = self._held.get(holder, 0)
        if self._in_use >= self.total or held >= self.per_key:
            return False
        self._held[holder] = held + 1
        self._in_use += 1
        return True

    def give_back(self, holder: str) -> None:
        held = self._held.get(holder, 0) - 1
        if held <= 0:
            self._held.pop(holder, None)
        else:
            self._held[holder] = held
        self._in_use = max(self._in_use - 1, 0)

    def usage(self) -> Mapping[str, int]:
        """Streams held, in all (`*`) and per holder (for tests and logs)."""
        return {"*": self._in_use, **self._held}
