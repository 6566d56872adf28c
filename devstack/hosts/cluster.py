"""The whole stack on six hosts (devstack/hosts/network.py), each process started with its
production command and production settings; tests/hosts/ and `python -m bench.hosts` use it:

    db     PostgreSQL (a cluster of its own) and Redis
    web1   gunicorn            web2   gunicorn
    w1     shardworker 0, shardworker 1 --standby, fulfilment worker
    w2     shardworker 1, shardworker 0 --standby, fulfilment worker, import worker
    ops    beat, Flower, and the sandbox provider (standing in for the provider's own network)

The process that builds it, on the bridge, is the client and the operator."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psycopg2

from devstack.hosts.network import Host, Network, env_for
from devstack.postgres import Cluster as PostgresCluster
from devstack.postgres import owned_tmpdir
from devstack.sandbox import READY_MARKER, sandbox_argv
from devstack.stack import ROOT, flower_argv, web_argv
from workers.commands import beat_argv, fulfil_worker_argv, import_worker_argv

MANAGE = [sys.executable, str(ROOT / "manage.py")]
ADMIN_PASSWORD = secrets.token_urlsafe(16)
CALLBACK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Cluster:
    def __init__(self, tmp: Path):
        self.network = Network(tmp)
        names = ("db", "web1", "web2", "w1", "w2", "ops")
        self.hosts: dict[str, Host] = {name: self.network.add(name) for name in names}
        db = self.hosts["db"].address
        self.database_url = f"postgres://postgres@{db}:5432/ledger"
        # A Redis reachable from other hosts needs a password (else protected mode refuses them).
        self.redis_password = secrets.token_urlsafe(16)
        self.pg_dir = owned_tmpdir("ledger-hosts-pg-")
        # Started with pg_ctl inside the db host's namespace: the server is that host's.
        self.postgres = PostgresCluster(self.pg_dir / "data", within=self.hosts["db"].run_prefix)
        self.env = {
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": ",".join(self.hosts[h].address for h in ("web1", "web2")),
            "SECURE_SSL_REDIRECT": "false",  # no TLS-terminating balancer in front here
            "DATABASE_URL": self.database_url,
            "REDIS_URL": f"redis://:{self.redis_password}@{db}:6379/0",
            "PROVIDER_URL": f"http://{self.hosts['ops'].address}:8090",
            "PROVIDER_CALLBACK_SECRET": CALLBACK_SECRET,
            "PROVIDER_LOOKUP_AFTER": "1",
            "PROVIDER_READ_TIMEOUT": "1",
            "PROVIDER_REDISPATCH_AFTER": "2",
            "PROVIDER_RECONCILE_INTERVAL": "0.5",
            "LEDGER_WORKER_PROCESSES": "2",
            "LEDGER_SWEEP_INTERVAL": "2",
            "FLOWER_BASIC_AUTH": f"ops:{secrets.token_urlsafe(16)}",
            "LOG_FORMAT": "plain",
            "PYTHONUNBUFFERED": "1",
        }

    def web_url(self, name: str) -> str:
        return f"http://{self.hosts[name].address}:8000"

    def start(self) -> Cluster:
        self._start_database_host()
        self._manage("migrate", "--noinput")
        # What the charges sell: the house catalog (the amount asked is the amount held).
        self._manage("shell", "-c", "from devstack.house_catalog import load_house_catalog; load_house_catalog()")
        self._manage("collectstatic", "--noinput", "--verbosity", "0")  # the production web needs them
        admin_env = {"DJANGO_SUPERUSER_USERNAME": "admin", "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD}
        self._manage("createsuperuser", "--noinput", "--email", "admin@example.com", extra=admin_env)
        ops, w1, w2 = self.hosts["ops"], self.hosts["w1"], self.hosts["w2"]
        sandbox = sandbox_argv(host=ops.address, port=8090, latency_ms=1, callback_secret=CALLBACK_SECRET,
                               db=ops.tmp / "sandbox.db")  # fmt: skip
        booting = [(ops, "provider", sandbox, READY_MARKER)]
        for name in ("web1", "web2"):
            host = self.hosts[name]
            booting.append((host, "web", web_argv(host=host.address, port=8000, workers=1), "Booting worker"))
        booting += self.worker_host(w1, active=0, standby=1) + self.worker_host(w2, active=1, standby=0)
        booting.append((w2, "imports", import_worker_argv(name="imports"), " ready."))
        booting.append((ops, "beat", beat_argv(schedule=str(ops.tmp / "beat-schedule")), "beat: Starting"))
        booting.append((ops, "flower", flower_argv(host=ops.address, port=5555), "Visit me at"))
        self._boot(booting)
        return self

    def worker_host(self, host: Host, *, active: int, standby: int) -> list[tuple]:
        return [
            (host, f"shards{active}", [*MANAGE, "shardworker", str(active)], " ready."),
            (host, f"standby{standby}", [*MANAGE, "shardworker", str(standby), "--standby"], "waiting for their"),
            (host, "fulfil", fulfil_worker_argv(name=f"fulfil-{host.name}"), " ready."),
        ]

    def _boot(self, booting: list[tuple], env: dict | None = None) -> None:
        """Start every process at once, then wait for each one's ready line."""
        started = [(host.start(name, argv, env_for(host, self.env if env is None else env)), ready)
                   for host, name, argv, ready in booting]  # fmt: skip
        for process, ready in started:
            process.wait_for_log(ready, timeout=90)

    def _start_database_host(self) -> None:
        db = self.hosts["db"]
        self.postgres.run("initdb", "-D", str(self.postgres.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.postgres.configure(5432, {"fsync": "off", "max_connections": "200"}, listen=db.address)
        with open(self.postgres.data / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {self.network.subnet}.0/24 trust\n")
        self.postgres.start()
        redis = ["redis-server", "--bind", db.address, "--port", "6379", "--save", "", "--appendonly", "no"]
        redis += ["--requirepass", self.redis_password]
        self._boot([(db, "redis", redis, "Ready to accept connections")], env={})
        conn = psycopg2.connect(f"postgres://postgres@{db.address}:5432/postgres")
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute("CREATE DATABASE ledger")
        conn.close()

    def _manage(self, *args: str, extra: dict | None = None) -> str:
        env = {**os.environ, **self.env, **(extra or {})}
        result = subprocess.run([*MANAGE, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def audit(self) -> str:
        return self._manage("ledger_audit")

    def sql(self, query: str, *params) -> list[tuple]:
        conn = psycopg2.connect(self.database_url)
        try:
            with conn.cursor() as cursor:
                cursor.execute(query, params)
                return cursor.fetchall()
        finally:
            conn.close()

    def wait_sql(self, query: str, expected, timeout: float, *params) -> float:
        """Seconds until `query` answers `expected` (its first column of its first row)."""
        started = time.monotonic()
        while True:
            value = self.sql(query, *params)[0][0]
            if value == expected:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{query!r} is {value!r}, not {expected!r}, after {timeout}s")
            time.sleep(0.2)

    def wait_reserved(self, charge_ids: list[int], timeout: float) -> None:
        """Until no charge of `charge_ids` waits for its shard worker (each is held or failed)."""
        placeholders = ",".join(["%s"] * len(charge_ids))
        query = f"SELECT count(*) FROM ledger_charge WHERE stage = 'queued' AND id IN ({placeholders})"
        self.wait_sql(query, 0, timeout, *charge_ids)

    def close(self) -> None:
        try:
            self.postgres.stop()
        except subprocess.CalledProcessError:
            pass  # never started
        self.network.close()
        shutil.rmtree(self.pg_dir, ignore_errors=True)
