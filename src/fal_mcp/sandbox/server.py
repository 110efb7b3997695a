"""`SandboxServer`: a `FakeFal` served by uvicorn on loopback, in a daemon thread with its own loop.

The socket is bound before the thread starts, so the port (0 = ephemeral) is known when `start()`
returns, and `start()` returns only once uvicorn accepts connections. uvicorn is told to configure
no logging and to keep no access log: in `fal-mcp --sandbox` the MCP stdio transport owns stdout of
the same process, so nothing here may print.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from types import TracebackType

import uvicorn

from fal_mcp.sandbox.app import FakeFal
from fal_mcp.sandbox.webhooks.signing import JWKS_PATH

logger = logging.getLogger("fal_mcp.sandbox")

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
GRACEFUL_S = 2
"""Seconds uvicorn waits for in-flight requests at shutdown before cancelling them."""


class SandboxServer:
    """Serve a `FakeFal` at `url` until `stop()`; also a context manager."""

    def __init__(self, fake: FakeFal | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.fake = fake if fake is not None else FakeFal()
        self.host = host
        self.port = port
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    @property
    def url(self) -> str:
        """`http://host:port` of the running server."""
        if self._socket is None:
            raise RuntimeError("SandboxServer is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def run_url(self) -> str:
        """Base for synchronous runs, like https://fal.run."""
        return self.url + "/run"

    @property
    def queue_url(self) -> str:
        """Base for the queue, like https://queue.fal.run."""
        return self.url + "/queue"

    @property
    def api_url(self) -> str:
        """Base for the platform API, like https://api.fal.ai (`/v1/models`, pricing)."""
        return self.url + "/api"

    @property
    def rest_url(self) -> str:
        """Base for the storage API, like https://rest.fal.ai (CDN token, upload initiate)."""
        return self.url + "/rest"

    @property
    def jwks_url(self) -> str:
        """Where the fake publishes the keys its webhooks are signed with (fal's are at rest.alpha.fal.ai)."""
        return self.rest_url + JWKS_PATH

    @property
    def cdn_url(self) -> str:
        """Base of the media files the models produce (public, no auth)."""
        return self.url + "/cdn"

    def start(self) -> SandboxServer:
        """Bind, serve in the background, and return once connections are accepted."""
        if self._thread is not None:
            return self
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto must say TCP: asyncio only sets TCP_NODELAY on such sockets, and without it every
        # keep-alive request waits ~40 ms on Nagle + delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.fake.app,
            log_config=None,
            access_log=False,
            lifespan="on",
            ws="none",
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=GRACEFUL_S,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name=f"fal-sandbox:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sandbox server failed to start: {self._failure!r}")
            time.sleep(0.005)
        return self

    def _serve(self) -> None:
        assert self._server is not None and self._socket is not None
        try:
            asyncio.run(self._server.serve(sockets=[self._socket]))
        except BaseException as exc:  # startup failure raises SystemExit in this thread
            self._failure = exc
            logger.exception("sandbox server crashed")

    def stop(self) -> None:
        """Shut down cleanly and join the thread; safe to call twice."""
        server, thread = self._server, self._thread
        if server is not None and thread is not None:
            self.fake.interrupt_waits()
            server.should_exit = True
            thread.join(STOP_TIMEOUT_S)
            if thread.is_alive():
                server.force_exit = True
                thread.join(STOP_TIMEOUT_S)
        if self._socket is not None:
            self._socket.close()
        self._server = None
        self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
