"""One-click installs: the MCP Bundle for Claude Desktop and the entry for the official MCP registry.

The bundle's `manifest.json` is checked by the official `mcpb validate` (the pinned `@anthropic-ai/mcpb` CLI,
from `MCPB`, else `.tools/node`, else npx) and built by `scripts/build-mcpb`; what it packs starts and serves the
tools. `server.json` is validated against the registry's 2025-12-11 schema, as shipped (byte for byte, from the
registry's static-assets repository) in the pinned `skillsaw` package, so the check needs no network. Both name
the project's version.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from fal_mcp import __version__
from fal_mcp.server.build import create_server
from fal_mcp.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = json.loads((ROOT / "manifest.json").read_text())
SERVER_JSON = json.loads((ROOT / "server.json").read_text())
VERSION = metadata.version("fal-mcp")
"""What the installed package says it is: the build reads it from `__version__`, so the two must agree."""
MCPB_VERSION = "2.1.2"
REGISTRY_SCHEMA = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
REGISTRY_SCHEMA_SHA256 = "3fba09590c99f61735d234822279f4223fab9e300c0a81e81c91ab62a4114de0"


def mcpb_command() -> list[str] | None:
    if os.environ.get("MCPB"):
        return [os.environ["MCPB"]]
    installed = ROOT / ".tools" / "node" / "node_modules" / ".bin" / "mcpb"
    if installed.exists():
        return [str(installed)]
    npx = shutil.which("npx")
    return [npx, "--yes", f"@anthropic-ai/mcpb@{MCPB_VERSION}"] if npx else None


MCPB = mcpb_command()
needs_mcpb = pytest.mark.skipif(MCPB is None, reason="Node's npx is not installed, so the mcpb CLI cannot run")


# -- the MCP Bundle ---------------------------------------------------------------------------------------------


@needs_mcpb
def test_the_official_cli_validates_the_manifest() -> None:
    assert MCPB is not None
    done = subprocess.run([*MCPB, "validate", str(ROOT / "manifest.json")], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.anyio
async def test_the_manifest_says_what_the_server_is() -> None:
    assert MANIFEST["version"] == VERSION == __version__
    key = MANIFEST["user_config"]["fal_key"]
    assert key["sensitive"] is True and key["required"] is True and key["type"] == "string"
    assert MANIFEST["server"]["mcp_config"]["env"] == {"FAL_KEY": "${user_config.fal_key}"}
    async with Client(create_server(Settings(_env_file=None))) as client:  # pyright: ignore[reportCallIssue]
        tools = (await client.list_tools()).tools
    assert MANIFEST["tools"] == [{"name": tool.name, "description": tool.description} for tool in tools]


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`scripts/build-mcpb`'s bundle, unpacked."""
    out = tmp_path_factory.mktemp("mcpb")
    built = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-mcpb")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OUT": str(out)},
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    with zipfile.ZipFile(out / f"fal-mcp-{VERSION}.mcpb") as bundle:
        bundle.extractall(out / "unpacked")
    return out / "unpacked"


def bundle_env(unpacked: Path) -> dict[str, str]:
    """Only the packed code on the path (before this checkout's editable install), on the sandbox."""
    return {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(unpacked / "src"),
        "FAL_MCP_SANDBOX": "true",
        "FAL_MCP_STATE_DIR": str(unpacked.parent / "state"),
    }


@needs_mcpb
def test_the_bundle_holds_the_server_and_nothing_stale(unpacked: Path) -> None:
    names = {str(path.relative_to(unpacked)) for path in unpacked.rglob("*") if path.is_file()}
    assert {"manifest.json", "pyproject.toml", "README.md", "src/fal_mcp/cli.py"} <= names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    assert json.loads((unpacked / "manifest.json").read_text()) == MANIFEST
    where = subprocess.run(
        [sys.executable, "-c", "import fal_mcp; print(fal_mcp.__file__)"],
        env=bundle_env(unpacked),
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip().startswith(str(unpacked)), where


@needs_mcpb
@pytest.mark.anyio
async def test_the_bundled_server_serves_the_tools(unpacked: Path) -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "fal_mcp"], env=bundle_env(unpacked))
    with (unpacked.parent / "stderr").open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            listed = (await client.list_tools()).tools
    assert [tool.name for tool in listed] == [tool["name"] for tool in MANIFEST["tools"]]


# -- the MCP registry ---------------------------------------------------------------------------------------------


def registry_schema() -> dict[str, Any]:
    shipped = resources.files("skillsaw.schemas.mcp_registry.v2025_12_11") / "server.schema.json"
    data = shipped.read_bytes()
    assert hashlib.sha256(data).hexdigest() == REGISTRY_SCHEMA_SHA256, "not the registry's 2025-12-11 schema"
    return json.loads(data)


def test_server_json_validates_against_the_registry_schema() -> None:
    schema = registry_schema()
    assert schema["$id"] == SERVER_JSON["$schema"] == REGISTRY_SCHEMA
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(SERVER_JSON)]
    assert errors == []


def test_server_json_names_the_pypi_package_at_this_version_and_keeps_the_key_secret() -> None:
    assert SERVER_JSON["version"] == VERSION
    (package,) = SERVER_JSON["packages"]
    assert (package["registryType"], package["identifier"], package["version"]) == ("pypi", "fal-mcp", VERSION)
    assert package["transport"] == {"type": "stdio"}
    variables = {variable["name"]: variable for variable in package["environmentVariables"]}
    assert variables["FAL_KEY"]["isSecret"] is True and variables["FAL_KEY"]["isRequired"] is True
    # The registry checks that the PyPI package is ours by this line in its description (the README).
    assert f"mcp-name: {SERVER_JSON['name']}" in (ROOT / "README.md").read_text()


def test_a_wrong_server_json_is_caught() -> None:
    """The schema check has teeth: a version range and a package without a transport are refused."""
    wrong = json.loads(json.dumps(SERVER_JSON))
    wrong["packages"][0]["version"] = "latest"
    del wrong["packages"][0]["transport"]
    validator = jsonschema.Draft7Validator(registry_schema())
    assert len(list(validator.iter_errors(wrong))) >= 2


def test_scripts_test_installs_the_pinned_cli() -> None:
    assert f"@anthropic-ai/mcpb@{MCPB_VERSION}" in (ROOT / "scripts" / "test").read_text()
