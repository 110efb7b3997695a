"""The package's layers stay layers: each module imports only from its own layer and the ones below it.

Read from the source (every `import` and `from ... import`, at any depth, type-only ones included), so the picture
in the README's Architecture section cannot drift from the code. Bottom to top: the process-wide modules
(`settings`, `logs`, `calls`), `store/` (what is kept: rows, nothing of fal or MCP) beside `fal/` (fal's HTTP APIs),
`media/`, `jobs/`, then the two surfaces, `server/` (MCP)
below `web/` (HTTP, which hosts the MCP server), and `cli` on top. The sandbox is a fake fal: it imports nothing
of the product, and only `cli` (for `--sandbox`) imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "fal_mcp"

BASE = {"settings", "logs", "calls"}
ALLOWED: dict[str, set[str]] = {
    "settings": set(),
    "calls": set(),
    "logs": {"calls"},
    "store": BASE | {"store"},
    "fal": BASE | {"fal"},
    "media": BASE | {"fal", "media"},
    "jobs": BASE | {"store", "fal", "media", "jobs"},
    "server": BASE | {"store", "fal", "media", "jobs", "server"},
    "web": BASE | {"store", "fal", "media", "jobs", "server", "web"},
    "cli": BASE | {"store", "fal", "media", "jobs", "server", "web", "sandbox", "cli"},
    "sandbox": {"sandbox"},
}
"""Layer -> the layers its modules may import. `__init__`/`__main__` count as `cli`."""

THIRD_PARTY_SURFACES = {"mcp", "mcp_types", "starlette", "uvicorn"}
NO_SURFACE_LIBRARIES = {"store", "fal", "media", "jobs"}
"""Layers that must work under any surface: they may not import the MCP SDK or the HTTP server libraries."""


def layer_of(where: Path) -> str:
    """The layer of a module, from its path relative to the package."""
    parts = where.with_suffix("").parts
    if parts[0] in ("__init__", "__main__"):
        return "cli"
    return parts[0]


def imported(source: str, where: Path) -> set[str]:
    """Every absolute module name a module imports (relative imports are resolved against its package)."""
    tree = ast.parse(source)
    package = ["fal_mcp", *where.parent.parts]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names if _is_module(f"{target}.{alias.name}"))
    return names


def _is_module(name: str) -> bool:
    """`from fal_mcp.x import y` imports the module `y` when there is one (else `y` is a name inside `x`)."""
    parts = name.split(".")
    if parts[0] != "fal_mcp":
        return False
    path = PACKAGE.joinpath(*parts[1:])
    return path.with_suffix(".py").is_file() or path.is_dir()


def layer_named(name: str) -> str | None:
    """The layer an absolute name belongs to, or None outside the package (or for the package's own root)."""
    parts = name.split(".")
    if parts[0] != "fal_mcp" or len(parts) < 2 or parts[1] == "__version__":
        return None
    return parts[1]


MODULES = sorted(PACKAGE.rglob("*.py"))


def violations(source: str, where: Path) -> list[str]:
    """What a module at `where` (relative to the package) with this source imports that its layer may not."""
    layer = layer_of(where)
    found: list[str] = []
    for name in sorted(imported(source, where)):
        target = layer_named(name)
        if target is not None and target not in ALLOWED[layer]:
            found.append(f"{layer} may not import {name}")
        if layer in NO_SURFACE_LIBRARIES and name.split(".")[0] in THIRD_PARTY_SURFACES:
            found.append(f"{layer} may not import {name} (it must work under any surface)")
    return found


@pytest.mark.parametrize("module", MODULES, ids=lambda m: str(m.relative_to(PACKAGE)))
def test_a_module_imports_only_from_its_layer_and_below(module: Path) -> None:
    assert violations(module.read_text(), module.relative_to(PACKAGE)) == []


def test_every_layer_is_known_and_the_tree_stays_small() -> None:
    assert {layer_of(m.relative_to(PACKAGE)) for m in MODULES} <= set(ALLOWED)
    top = [m.name for m in PACKAGE.glob("*.py") if m.name not in ("__init__.py", "__main__.py")]
    assert len(top) <= 5, top
    for folder in {m.parent for m in MODULES}:
        modules = [m for m in folder.glob("*.py") if m.name != "__init__.py"]
        assert len(modules) <= 14, folder


def test_the_check_catches_an_upward_import() -> None:
    """The table is not vacuous: `fal/client.py` reaching into the MCP surface, or the SDK, would be reported."""
    where = Path("fal/client.py")
    source = (PACKAGE / where).read_text()
    assert violations(source, where) == []
    upward = "from fal_mcp.server.replies import success\n" + source
    assert violations(upward, where) == ["fal may not import fal_mcp.server.replies"]
    relative = "from ..server import replies\n" + source
    assert violations(relative, where) == [
        "fal may not import fal_mcp.server",
        "fal may not import fal_mcp.server.replies",
    ]
    sdk = "from mcp.types import TextContent\n" + source
    assert violations(sdk, where) == ["fal may not import mcp.types (it must work under any surface)"]
