"""The official MCP conformance suite against fal-mcp over streamable HTTP (the sandbox behind it).

`@modelcontextprotocol/conformance` needs Node 22. It comes from `MCP_CONFORMANCE` (what CI installs, with Node 22
first on PATH), else from `npx` (which fetches Node 22 and the suite from the npm registry); the test skips, saying
why, only where neither exists. Scenarios that test fixtures a fal server does not have are listed, each with its
reason, in `conformance-baseline.yml`; any other failure, or a listed scenario that starts passing, fails the run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness import http_server

SUITE = "@modelcontextprotocol/conformance@0.1.16"
BASELINE = Path(__file__).with_name("conformance-baseline.yml")
STATELESS_ALSO = {
    # A stateless server issues no session id, by design (any replica answers any request); the suite then
    # warns that it cannot open several streams on one session, and a warning counts as a failure.
    "server-sse-multiple-streams",
}


def conformance_command() -> list[str] | None:
    installed = os.environ.get("MCP_CONFORMANCE")
    if installed and Path(installed).exists():
        return [installed]
    npx = shutil.which("npx")
    if npx:
        return [npx, "--yes", "-p", "node@22", "-p", SUITE, "--", "conformance"]
    return None


CONFORMANCE = conformance_command()


@pytest.mark.skipif(CONFORMANCE is None, reason="Node's npx is not installed, so the conformance suite cannot run")
@pytest.mark.parametrize("mode", [[], ["--stateless"]], ids=["stateful", "stateless"])
def test_official_conformance_suite(mode: list[str], tmp_path: Path) -> None:
    assert CONFORMANCE is not None
    baseline = BASELINE
    if mode:
        baseline = tmp_path / "baseline.yml"
        baseline.write_text(BASELINE.read_text() + "".join(f"  - {name}\n" for name in sorted(STATELESS_ALSO)))
    # The suite's launcher runs on the first `node` on PATH: put the folder it came from first (CI installs Node 22
    # into that same folder), so a machine whose own Node is older still runs it on 22.
    path = os.pathsep.join([str(Path(CONFORMANCE[0]).parent), os.environ.get("PATH", "")])
    with http_server({}, tmp_path, "--sandbox", *mode) as server:
        done = subprocess.run(
            [*CONFORMANCE, "server", "--url", server.url, "--expected-failures", str(baseline), "-o", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
            check=False,
            env={**os.environ, "PATH": path},
        )
    report = done.stdout[-4000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    assert "Expected failures (in baseline)" in done.stdout, report  # the baseline was really read
