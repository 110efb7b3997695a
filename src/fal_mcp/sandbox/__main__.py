"""`python -m fal_mcp.sandbox`: run the fake fal in the foreground until Ctrl-C (or SIGTERM).

Prints one JSON line with the URLs and keys to stdout, for benchmarks and manual poking; logs go
to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from types import FrameType

from fal_mcp.sandbox.app import FakeFal
from fal_mcp.sandbox.auth import LOCKED_KEY, SANDBOX_KEY
from fal_mcp.sandbox.server import SandboxServer


def main(argv: list[str] | None = None) -> None:
    """Parse flags, serve, print the URLs, wait for a signal."""
    parser = argparse.ArgumentParser(prog="python -m fal_mcp.sandbox", description="Run the fake fal.ai server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--time-scale", type=float, default=1.0, help="multiplies every model duration")
    parser.add_argument("--key", action="append", default=[], help="another key to accept (id:secret), repeatable")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    stopping = threading.Event()

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_term)
    fake = FakeFal(time_scale=args.time_scale, keys=(SANDBOX_KEY, *args.key))
    with SandboxServer(fake, host=args.host, port=args.port) as sandbox:
        urls = {
            "url": sandbox.url,
            "run_url": sandbox.run_url,
            "queue_url": sandbox.queue_url,
            "api_url": sandbox.api_url,
            "rest_url": sandbox.rest_url,
            "cdn_url": sandbox.cdn_url,
            "key": SANDBOX_KEY,
            "locked_key": LOCKED_KEY,
        }
        print(json.dumps(urls), flush=True)
        try:
            while not stopping.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
