"""The container and the two-replica deployment: read statically always, built and run where the tools exist.

`docker build` runs only when a Docker engine answers, and nginx in front of two real replicas only when an
`nginx` binary is installed; otherwise those tests are skipped with the reason shown (`pytest -ra`).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from fal_mcp.sandbox import SANDBOX_KEY, FakeFal, SandboxServer
from tests.conftest import OTHER_KEY, env_for
from tests.harness import HttpServer, bearer_client, start_http_server

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "deploy" / "compose.yaml"
NGINX_CONF = ROOT / "deploy" / "nginx.conf"


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    found: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    steps = instructions(dockerfile)
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_dockerfile_runs_a_slim_image_as_a_non_root_user_with_a_healthcheck() -> None:
    stage = final_stage(DOCKERFILE)
    values = dict(stage)  # the last of each
    assert re.fullmatch(r"python:3\.1[1-9]-slim", values["FROM"]), values["FROM"]
    user = values["USER"].split(":")[0]
    assert user not in ("root", "0") and [k for k, _ in stage].index("USER") > [k for k, _ in stage].index("RUN")
    assert "HEALTHCHECK" in values and "/healthz" in values["HEALTHCHECK"] and "FAL_MCP_PORT" in values["HEALTHCHECK"]
    assert json.loads(values["ENTRYPOINT"]) == ["fal-mcp"]
    assert json.loads(values["CMD"]) == ["--transport", "http"]
    assert values["EXPOSE"] == "8000"
    env = values["ENV"]
    assert "FAL_MCP_HOST=0.0.0.0" in env and "FAL_KEY" not in env  # no key baked into the image
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".git", "tests"} <= set(ignored)


def test_compose_runs_two_stateless_replicas_behind_nginx() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    replicas = {name: service for name, service in services.items() if service.get("image") == "fal-mcp:local"}
    assert len(replicas) == 2
    database = services["postgres"]
    assert database["image"].startswith("postgres:") and "pg_isready" in " ".join(database["healthcheck"]["test"])
    (volume,) = database["volumes"]  # the shared store outlives `docker compose down && up`
    assert volume.split(":")[1] == "/var/lib/postgresql/data" and volume.split(":")[0] in compose["volumes"]
    assert "${POSTGRES_PASSWORD:?" in database["environment"]["POSTGRES_PASSWORD"]  # no default password
    for service in replicas.values():
        env = service["environment"]
        assert service["build"]["context"] == ".." and (COMPOSE.parent / ".." / "Dockerfile").exists()
        assert env["FAL_MCP_STATELESS"] == "true"  # any replica can answer: no sticky sessions
        assert env["FAL_MCP_AUTH"] in ("fal-key", "token") and env["FAL_MCP_ALLOWED_HOSTS"]
        assert "FAL_KEY" not in env
        assert (
            env["FAL_MCP_DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env["FAL_MCP_DATABASE_URL"]
        )
        assert env["FAL_MCP_STATE_SECRET"].startswith("${FAL_MCP_STATE_SECRET:?")  # one secret, set by the operator
        assert env["FAL_MCP_PUBLIC_URL"]
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert len({yaml.safe_dump(s["environment"]) for s in replicas.values()}) == 1  # the replicas agree
    nginx = services["nginx"]
    assert nginx["image"].startswith("nginx:") and "./nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    assert {name: dep["condition"] for name, dep in nginx["depends_on"].items()} == dict.fromkeys(
        replicas, "service_healthy"
    )
    conf = NGINX_CONF.read_text()
    for name in replicas:
        assert f"server {name}:8000" in conf


def test_nginx_conf_streams_and_passes_the_host_through() -> None:
    conf = NGINX_CONF.read_text()
    assert re.search(r"^\s*proxy_buffering off;", conf, flags=re.M)
    assert re.search(r"^\s*proxy_set_header Host \$http_host;", conf, flags=re.M)
    assert re.search(r"^\s*proxy_http_version 1\.1;", conf, flags=re.M)
    read_timeout = re.search(r"^\s*proxy_read_timeout (\d+)s;", conf, flags=re.M)
    assert read_timeout is not None and int(read_timeout.group(1)) >= 3600
    assert "non_idempotent" not in conf  # a submit is never re-sent to the other replica


def test_nginx_conf_drops_slow_clients_and_limits_each_address() -> None:
    """Behind the proxy every client has its address: slow senders and floods must be stopped there."""
    conf = NGINX_CONF.read_text()
    for timeout in ("client_header_timeout", "client_body_timeout"):
        found = re.search(rf"^\s*{timeout} (\d+)s;", conf, flags=re.M)
        assert found is not None and int(found.group(1)) <= 30, timeout
    zones = re.findall(r"^\s*limit_(?:conn|req)_zone \$binary_remote_addr zone=(\w+):", conf, flags=re.M)
    assert len(zones) == 2
    assert re.search(rf"^\s*limit_conn {zones[0]} \d+;", conf, flags=re.M)
    assert re.search(rf"^\s*limit_req zone={zones[1]} burst=\d+", conf, flags=re.M)
    assert re.search(r"^\s*limit_req_status 429;", conf, flags=re.M)


def docker_engine() -> str | None:
    """Why Docker cannot build here, or None when an engine answers."""
    if shutil.which("docker") is None:
        return "no docker command"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return "docker info timed out"
    return None if info.returncode == 0 else "no Docker engine answers (docker info failed)"


def test_docker_build() -> None:
    reason = docker_engine()
    if reason is not None:
        pytest.skip(f"docker build not run: {reason}")
    tag = "fal-mcp:test"
    built = subprocess.run(["docker", "build", "-t", tag, str(ROOT)], capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stderr[-3000:]
    version = subprocess.run(["docker", "run", "--rm", tag, "--version"], capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("fal-mcp ")
    refused = subprocess.run(["docker", "run", "--rm", tag], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--allow-unauthenticated" in refused.stderr  # 0.0.0.0 without --auth


# -- the compose topology for real: nginx (this repo's config) in front of two replicas on loopback ---------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def replicas(
    sandbox: SandboxServer, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[HttpServer]]:
    """The compose file's replicas: each its own folder, one PostgreSQL database and one state secret shared."""
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed: the proxied two-replica test needs it (apt install nginx-light)")
    env = env_for(
        sandbox,
        key=None,
        FAL_MCP_AUTH="fal-key",
        FAL_MCP_ALLOWED_HOSTS="mcp.example.com",
        FAL_MCP_DATABASE_URL=database_url,
        FAL_MCP_STATE_SECRET="the-same-secret-on-every-replica-0123456789",
    )
    homes = [tmp_path_factory.mktemp(f"replica{i}") for i in (1, 2)]
    servers = [
        start_http_server({**env, "FAL_MCP_STATE_DIR": str(home)}, home, "--stateless", "--rest", "-v")
        for home in homes
    ]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def proxy(replicas: list[HttpServer], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """deploy/nginx.conf with only the replica addresses, the port and the file paths changed."""
    workdir = tmp_path_factory.mktemp("nginx")
    port = free_port()
    conf = NGINX_CONF.read_text()
    for name, server in zip(("fal-mcp-1", "fal-mcp-2"), replicas, strict=True):
        conf = conf.replace(f"server {name}:8000", f"server {server.base.removeprefix('http://')}")
    conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    conf = conf.replace(
        "worker_processes auto;", f"worker_processes 1;\npid {workdir}/nginx.pid;\nerror_log {workdir}/error.log;"
    )
    conf = conf.replace(
        "http {",
        f"http {{\n    access_log off;\n    client_body_temp_path {workdir}/body;\n    proxy_temp_path {workdir}/proxy;",
        1,
    )
    (workdir / "nginx.conf").write_text(conf)
    nginx = subprocess.Popen(
        ["nginx", "-p", str(workdir), "-c", str(workdir / "nginx.conf"), "-g", "daemon off; user root;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # it logs to error.log in its workdir
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert nginx.poll() is None and time.monotonic() < deadline, (workdir / "error.log").read_text(errors="replace")
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    nginx.terminate()
    nginx.wait(timeout=10)


@pytest.mark.anyio
async def test_two_replicas_behind_nginx_serve_any_request(
    proxy: str, replicas: list[HttpServer], fake: FakeFal
) -> None:
    """Stateless replicas, round robin, no sticky sessions: MCP and REST calls land on both and all succeed, and
    whichever replica answers lists every request (they share one database)."""
    async with bearer_client(f"{proxy}/mcp", SANDBOX_KEY, mode="legacy") as client:
        sent: list[str] = []
        for _ in range(4):
            result = await client.call_tool(
                "run-model", {"endpoint_id": "fal-ai/flux/schnell", "input": {"prompt": "x"}}
            )
            assert not result.is_error and (result.structured_content or {})["status"] == "COMPLETED"
            sent.insert(0, (result.structured_content or {})["request_id"])
        for _ in range(2):  # one listing per replica
            listed = await client.call_tool("list-requests", {"limit": 4})
            assert [r["request_id"] for r in (listed.structured_content or {})["requests"]] == sent
    headers = {"Authorization": f"Bearer {OTHER_KEY}", "Host": "mcp.example.com"}
    async with httpx.AsyncClient(base_url=proxy, headers=headers, timeout=20) as http:
        submitted = (await http.post("/v1/models/fal-ai/flux/schnell/requests", json={"prompt": "x"})).json()
        statuses = [await http.get(submitted["status_url"]) for _ in range(4)]
        evil = await http.get(submitted["status_url"], headers={"Host": "evil.example"})
    assert all(status.status_code in (200, 202) for status in statuses)
    assert evil.status_code == 421  # the replica still checks the Host nginx passed through
    for server in replicas:
        assert "run-model ok" in server.stderr() or "rest get-status ok" in server.stderr()
    assert fake.jobs[submitted["request_id"]].owner_key == OTHER_KEY
