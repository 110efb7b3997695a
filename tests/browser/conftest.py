"""A real browser (Debian's Chromium, driven by Playwright) on a test host page built on the official MCP Apps
`AppBridge`, connected to a real `fal-mcp --transport http` on the session's fake fal.

The host page is served on fal-mcp's own origin (Playwright answers its one URL), so its MCP client reaches
`/mcp` as a same-origin web host would; everything else is the real server. `bash scripts/test` installs what
these tests need (Chromium, the Playwright package, `view/node_modules`); without them the tests skip, saying why.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fal_mcp.sandbox import SandboxServer
from tests.conftest import env_for
from tests.harness import HttpServer, start_http_server

ROOT = Path(__file__).resolve().parents[2]
VIEW = ROOT / "view"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # The sandbox's CDN is on loopback; Chromium's Local Network Access check blocks an opaque-origin frame from it.
    "--disable-features=LocalNetworkAccessChecks",
]
HOST_PATH = "/__test-host/"

try:
    from playwright.sync_api import Browser, Page, Playwright, sync_playwright
except ImportError:  # pragma: no cover - scripts/test installs it
    sync_playwright = None


def _missing() -> str | None:
    if sync_playwright is None:
        return "the playwright package is not installed"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    if shutil.which("node") is None or not (VIEW / "node_modules" / "@modelcontextprotocol" / "ext-apps").is_dir():
        return "node or view/node_modules is missing (npm ci --prefix view)"
    return None


@pytest.fixture(scope="session")
def host_page_html(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The host page: the bundled host script (AppBridge + the MCP client) inlined into a bare chat page."""
    missing = _missing()
    if missing:
        pytest.skip(missing)
    bundle = tmp_path_factory.mktemp("host") / "host.js"
    node = shutil.which("node") or "node"
    built = subprocess.run(
        [node, "build.mjs", "--bundle", str(Path(__file__).with_name("host.ts")), str(bundle)],
        cwd=VIEW,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    script = bundle.read_text(encoding="utf-8").replace("</script", "<\\/script")
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>test host</title><style>"
        "body{margin:0;padding:16px;background:#e4e4e7;font:14px system-ui}"
        "iframe{display:block;width:760px;height:200px;border:0;border-radius:10px;background:transparent}"
        "</style></head><body><div id='chat'></div><script>" + script + "</script></body></html>"
    )


@pytest.fixture(scope="module")
def playwright_driver(host_page_html: str) -> Iterator[Playwright]:
    """Module-scoped: Playwright's sync API holds an event loop open in this thread while it runs, and the
    anyio tests of the other modules need the thread free of it."""
    assert sync_playwright is not None
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    launched = playwright_driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
    yield launched
    launched.close()


@pytest.fixture(scope="module")
def save_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the view's server may save outputs (`FAL_MCP_SAVE_ROOTS`)."""
    return tmp_path_factory.mktemp("saved")


@pytest.fixture(scope="module")
def view_server(
    sandbox: SandboxServer, save_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HttpServer]:
    env = env_for(sandbox, FAL_MCP_SAVE_ROOTS=str(save_root))
    server = start_http_server(env, tmp_path_factory.mktemp("view-http"))
    yield server
    server.stop()


@dataclass
class HostPage:
    """The host page in the browser, and what its console said (CSP refusals show up there)."""

    page: Page
    console: list[str] = field(default_factory=list[str])

    def call(self, tool: str, arguments: dict[str, Any], **options: Any) -> dict[str, Any]:
        """Call `tool` through the host, which shows the view; returns the tool's CallToolResult as JSON."""
        return self.page.evaluate(
            "([tool, args, options]) => window.host.call(tool, args, options)", [tool, arguments, options]
        )

    def quiet(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return self.page.evaluate("([tool, args]) => window.host.quiet(tool, args)", [tool, arguments])

    def recorded(self) -> dict[str, Any]:
        return self.page.evaluate("() => window.host.recorded")

    @property
    def view(self) -> Any:
        """Locators inside the view's iframe."""
        return self.page.frame_locator("#chat iframe")

    def in_view(self, script: str, arg: Any = None) -> Any:
        """Run `script` inside the view's document."""
        frame = next(f for f in self.page.frames if f is not self.page.main_frame)
        return frame.evaluate(script, arg)

    def refused(self) -> list[str]:
        return [line for line in self.console if "Content Security Policy" in line or "Refused to" in line]


@pytest.fixture
def host(browser: Browser, view_server: HttpServer, host_page_html: str) -> Iterator[HostPage]:
    context = browser.new_context(viewport={"width": 820, "height": 900})
    page = context.new_page()
    shown = HostPage(page)
    page.on("console", lambda message: shown.console.append(f"{message.type}: {message.text}"))
    page.route(
        f"{view_server.base}{HOST_PATH}**",
        lambda route: route.fulfill(status=200, content_type="text/html; charset=utf-8", body=host_page_html),
    )
    page.goto(f"{view_server.base}{HOST_PATH}index.html")
    page.evaluate("() => window.hostReady")
    yield shown
    context.close()
