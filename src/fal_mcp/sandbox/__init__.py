"""The sandbox: a faithful fake of fal.ai's HTTP APIs, served on loopback.

`fal-mcp --sandbox` runs it in-process so anyone can try every tool with no key and at no cost,
and the test-suite drives the real MCP server against it::

    with SandboxServer(FakeFal(time_scale=0.02)) as sandbox:
        ...  # point the fal client at sandbox.queue_url / sandbox.run_url with SANDBOX_KEY
"""

from fal_mcp.sandbox.app import FakeFal
from fal_mcp.sandbox.auth import LOCKED_KEY, SANDBOX_ADMIN_KEY, SANDBOX_KEY
from fal_mcp.sandbox.faults.chaos import Chaos, ChaosHit
from fal_mcp.sandbox.faults.injected import NGINX_503, Fault
from fal_mcp.sandbox.models.catalog import Crash, Model, default_models
from fal_mcp.sandbox.queue.jobs import Job
from fal_mcp.sandbox.recording import RecordedRequest
from fal_mcp.sandbox.server import SandboxServer
from fal_mcp.sandbox.webhooks.delivery import WebhookDelivery

__all__ = [
    "LOCKED_KEY",
    "NGINX_503",
    "SANDBOX_ADMIN_KEY",
    "SANDBOX_KEY",
    "Chaos",
    "ChaosHit",
    "Crash",
    "FakeFal",
    "Fault",
    "Job",
    "Model",
    "RecordedRequest",
    "SandboxServer",
    "WebhookDelivery",
    "default_models",
]
