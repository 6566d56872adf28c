"""PostgreSQL servers of a run's own, in a temporary directory: `Cluster` (initdb, settings,
start and stop, optionally inside a network namespace: devstack/hosts/), and `StreamingPair`, a
primary and a streaming standby of it (`pg_basebackup -R`), each on a free port (tests/replica/).

The machine's own server is not used as the primary: basebackup needs a `replication` line in its
pg_hba.conf, which a shared server need not have and the tests must not add. Both clusters run
without fsync (their data dies with the test run). initdb and postgres refuse to run as root, so
as root they run as the `postgres` OS user."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import closing
from pathlib import Path
from urllib.parse import urlparse

import psycopg2

_BINDIRS = ["/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin"]
_NO_FSYNC = {"fsync": "off", "full_page_writes": "off"}


def server_bindir() -> Path | None:
    """Where initdb, pg_ctl and pg_basebackup are: PG_BINDIR, a Debian path, or pg_config's."""
    candidates = [os.environ.get("PG_BINDIR", ""), *_BINDIRS]
    if shutil.which("pg_config"):
        candidates.append(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip())
    return next((Path(c) for c in candidates if c and (Path(c) / "initdb").exists()), None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    """One PostgreSQL server whose settings, port included, live in its data directory, so that
    `Cluster(data).stop()` and `.start()` work from any process (the tests stop the standby)."""

    def __init__(self, data: Path | str, bindir: Path | None = None, *, within: tuple[str, ...] = ()):
        """`within`: a command prefix the tools run under, e.g. `ip netns exec NS` (a host of its own)."""
        self.data = Path(data)
        self.bindir = bindir or server_bindir()
        self.within = within

    def run(self, tool: str, *args: str) -> None:
        command = [str(self.bindir / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run([*self.within, *command], check=True, capture_output=True, timeout=60)

    def configure(self, port: int, settings: dict[str, str], *, listen: str = "127.0.0.1") -> None:
        # Appended: a later line wins, so the standby's port overrides the one copied from its primary.
        base = {
            "port": str(port),
            "listen_addresses": f"'{listen}'",
            "unix_socket_directories": f"'{self.data.parent}'",
        }
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in {**base, **settings}.items())

    def start(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-l", f"{self.data}.log", "-w", "-t", "30", "start")

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


def wait_streaming(port: int, timeout: float = 30.0) -> None:
    """Until the standby on `port` answers and its WAL receiver streams."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with closing(psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")) as conn:
                with conn.cursor() as cursor:
                    cursor.execute("SELECT status FROM pg_stat_wal_receiver")
                    if cursor.fetchone() == ("streaming",):
                        return
        except psycopg2.OperationalError:
            pass  # still starting
        if time.monotonic() > deadline:
            raise TimeoutError(f"the standby on port {port} is not streaming")
        time.sleep(0.05)


def owned_tmpdir(prefix: str) -> Path:
    """A temporary directory the clusters' `postgres` user may write (as root, its owner)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        os.chown(root, pwd.getpwnam("postgres").pw_uid, -1)
    return root


def why_unavailable() -> str | None:
    """None if a cluster of our own can be made here, else why not (the callers skip with it)."""
    if server_bindir() is None:
        return "no PostgreSQL server binaries (initdb, pg_basebackup) here; PG_BINDIR names them"
    if os.geteuid() == 0 and not shutil.which("runuser"):
        return "running as root without runuser: initdb and postgres refuse to run as root"
    return None


class StreamingPair:
    """A primary with `wal_level=replica` and a hot standby streaming from it."""

    def __init__(self, bindir: Path):
        self.root = owned_tmpdir("ledger-replica-")
        self.primary = Cluster(self.root / "primary", bindir)
        self.standby = Cluster(self.root / "standby", bindir)
        self.primary_port, self.standby_port = _free_port(), _free_port()

    def start(self) -> StreamingPair:
        # initdb's pg_hba.conf trusts local replication connections: what basebackup needs.
        self.primary.run("initdb", "-D", str(self.primary.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.primary.configure(
            self.primary_port, {"wal_level": "replica", "max_wal_senders": "4", "max_connections": "60", **_NO_FSYNC}
        )
        self.primary.start()
        self.primary.run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary_port), "-U", "postgres",
            "-D", str(self.standby.data), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        self.standby.configure(self.standby_port, {"hot_standby": "on"})
        self.standby.start()
        wait_streaming(self.standby_port)
        return self

    def url(self, port: int, dbname: str) -> str:
        return f"postgres://postgres@127.0.0.1:{port}/{dbname}"

    def stop(self) -> None:
        for cluster in (self.standby, self.primary):
            try:
                cluster.stop()
            except subprocess.CalledProcessError:
                pass  # not running (a test stopped it), or never started
        shutil.rmtree(self.root, ignore_errors=True)


def create_database(database_url: str) -> bool:
    """CREATE DATABASE for `database_url`'s database unless it exists; whether it was created."""
    from psycopg2 import sql

    url = urlparse(database_url)
    name = url.path.lstrip("/")
    conn = psycopg2.connect(url._replace(path="/postgres").geturl(), connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            if cur.fetchone() is not None:
                return False
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True
    finally:
        conn.close()
