"""A real PostgreSQL server for the tests: `initdb` and `pg_ctl` into a temporary folder, with the machine's binaries.

One cluster per test session (`cluster` fixture in conftest), a fresh database per module or test. `initdb` refuses
to run as root, so as root the cluster runs as an unprivileged user (`postgres` when the Debian package made one,
else `nobody`), whose folder it is. When no PostgreSQL binaries are installed the tests that need them skip, saying
so (`scripts/test` installs Debian's `postgresql` package when it is missing).

`Relay` is a TCP relay in front of the cluster that a test can close and open again: the database "goes down" and
"comes back" for the server under test without disturbing anyone else's connections.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def binaries() -> Path | None:
    """The folder of the newest installed PostgreSQL server binaries, or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _runner() -> tuple[int, int] | None:
    """(uid, gid) to run the cluster as when we are root, else None (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
    raise RuntimeError("running as root with neither a postgres nor a nobody user to run PostgreSQL as")


@dataclass
class Cluster:
    """A running PostgreSQL cluster on 127.0.0.1:`port`, trust authentication for user `fal`."""

    bindir: Path
    folder: Path
    port: int
    user: tuple[int, int] | None

    def url(self, database: str = "postgres", *, port: int | None = None) -> str:
        return f"postgresql://fal:secret-in-the-url@127.0.0.1:{port or self.port}/{database}"

    def create_database(self) -> str:
        """A fresh, empty database; returns its name."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return name

    def _run(self, *args: str) -> None:
        subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            user=self.user[0] if self.user else None,
            group=self.user[1] if self.user else None,
            cwd=self.folder,
        )

    def start(self) -> None:
        data = self.folder / "data"
        self._run("initdb", "-D", str(data), "-U", "fal", "--auth=trust", "--encoding=UTF8", "--locale=C", "-N")
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(data), "-o", options, "-l", str(self.folder / "log"), "-w", "-t", "60", "start")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")


@contextlib.contextmanager
def running_cluster() -> Iterator[Cluster | str]:
    """A cluster for the session, or why there is none (the tests that need one skip with that reason)."""
    bindir = binaries()
    if bindir is None:
        yield "PostgreSQL server binaries not found (Debian: apt-get install postgresql; scripts/test does it)"
        return
    try:
        import psycopg  # noqa: F401
    except ImportError:
        yield "psycopg is not installed: pip install -e '.[test]' (it brings fal-mcp[postgres])"
        return
    user = _runner()
    folder = Path(tempfile.mkdtemp(prefix="fal-mcp-pg-"))
    if user is not None:
        os.chown(folder, *user)
    cluster = Cluster(bindir, folder, _free_port(), user)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


class Relay:
    """Forwards 127.0.0.1:`port` to a target port; `close()` drops every connection and refuses new ones (the
    database is down), `open()` serves again on the same port (it is back)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = _free_port()
        self._server: socket.socket | None = None
        self._links: list[socket.socket] = []
        self._lock = threading.Lock()

    def open(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._links += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread, so the port really closes
            self._server.close()
            self._server = None
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            with contextlib.suppress(OSError):
                link.shutdown(socket.SHUT_RDWR)
            link.close()
