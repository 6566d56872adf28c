"""The stack the fault suite breaks: a private redis-server it can kill, a sandbox provider of its
own it can take down, slow, kill and restart with its record, a second sandbox provider (`backup`,
its own record and balance, spoken to in DT One's dialect, selling one product that delivers what
the house catalog sells) that routing fails over to and that can refuse for balance, gunicorn, the shard workers, the fulfilment worker and
beat, each started with the production command (`workers.commands`, `devstack.stack`) and
production settings, against the test database."""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from pathlib import Path

import psutil
import psycopg2
from django.conf import settings
from django.db import connection

from core import redis_client
from devstack.house_catalog import HOUSE_DVS_CATALOG, sandbox_dvs_provider
from devstack.processes import free_port, start_together, stop_together
from devstack.sandbox import SandboxProcess
from devstack.stack import collect_static, ready_line, web_argv
from tests.support import Process, sandbox_options, subprocess_env
from workers.assignment import shard_assignment
from workers.commands import beat_argv, fulfil_worker_argv, worker_argv

WORKER_READY = " ready."
PRIMARY, BACKUP = "sandbox", "backup"  # the providers' names (PROVIDERS)
BACKUP_BALANCE = 10**9  # US cents
PROVIDER_OPTIONS = sandbox_options(latency_ms=5)
# What ensure_running puts back, whatever a test left the provider doing.
PROVIDER_DEFAULTS = {
    name: PROVIDER_OPTIONS[name] for name in ("latency_ms", "decline_rate", "drop_rate", "stale_rate", "reverse_rate")
} | {"down": False}
# Settings of a production deployment behind TLS, served over plain http on loopback.
PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "SECRET_KEY": secrets.token_urlsafe(48),
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "SECURE_SSL_REDIRECT": "false",
    "SESSION_COOKIE_SECURE": "false",
    "CSRF_COOKIE_SECURE": "false",
    "LOG_FORMAT": "plain",
    "WEB_ACCESS_LOG": "0",
}


class PrivateRedis:
    """A redis-server of the suite's own, without persistence: killed, it comes back empty."""

    def __init__(self, log_dir: Path):
        self.port = free_port(6400, 6499)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = Process("redis", argv, dict(os.environ), log_dir)

    @property
    def env(self) -> dict:
        """What the stack's processes need to reach it."""
        return {"REDIS_URL": self.url}

    def start(self) -> None:
        self.process.start(ready_marker="Ready to accept connections")

    @property
    def alive(self) -> bool:
        return self.process.alive

    def client(self):
        return redis_client.client(self.url)

    def kill(self) -> None:
        self.process.kill()

    def stop(self) -> None:
        self.process.stop()


class FaultStack:
    def __init__(self, log_dir: Path, redis, *, worker_processes: int = 2, web_workers: int = 2):
        """`redis`: a PrivateRedis, or anything with its `env`, `start`, `alive`, `client` and `stop`
        (tests/broker/sentinel.py: a Sentinel-managed pair)."""
        self.redis = redis
        # The provider, its transactions in a file so that a killed one comes back with them.
        self.sandbox = SandboxProcess(
            log_dir, port=free_port(8300, 8399), name="provider", db=log_dir / "provider.db", **PROVIDER_OPTIONS
        )
        # The provider routing moves charges to when the first refuses them before processing; no
        # product is routed to it until a fault adds routes (suite.py, provider_failover).
        self.backup = SandboxProcess(
            log_dir, port=_another_port(self.sandbox.port), name="backup", db=log_dir / "backup.db", **PROVIDER_OPTIONS
        )
        self.port = free_port(8200, 8299)
        self.url = f"http://127.0.0.1:{self.port}"
        # The providers call back as real ones do (every final status, reversals included), signed
        # with the secret the sandboxes were started with.
        secret = PROVIDER_OPTIONS["callback_secret"]
        providers = {
            PRIMARY: {"kind": "sandbox", "url": self.sandbox.url, "callback_secret": secret},
            BACKUP: sandbox_dvs_provider(self.backup.url, callback_secret=secret),
        }
        self.env = subprocess_env(
            {
                **PRODUCTION_ENV,
                **redis.env,
                "PROVIDER_URL": self.sandbox.url,
                "PROVIDERS": json.dumps(providers),
                "PROVIDER_DEFAULT": PRIMARY,
                # A provider that refused for balance is used again once a poll sees it funded.
                "PROVIDER_FLOAT_INTERVAL": "1",
                "PROVIDER_CALLBACK_URL": f"{self.url}/api/v1/provider/callbacks/",
                "PROVIDER_CALLBACK_SECRET": secret,
            }
        )
        for name in ("LEDGER_SWEEP_INTERVAL", "LEDGER_SWEEP_AFTER"):
            self.env.pop(name)  # the production defaults: recovery must not lean on a fast sweeper
        self.web = Process("web", web_argv(host="127.0.0.1", port=self.port, workers=web_workers), self.env, log_dir)
        self.static_collected = False
        self.workers = [
            Process(f"shards{i}", worker_argv(shards, name=f"faults{i}", with_default_queue=i == 0), self.env, log_dir)
            for i, shards in enumerate(shard_assignment(settings.LEDGER_SHARDS, worker_processes))
        ]
        # Charges are final only once the provider answered: the fulfilment worker, on the same broker.
        self.fulfil = Process("fulfil", fulfil_worker_argv(name="faults-fulfil"), self.env, log_dir)
        self.beat = Process("beat", beat_argv(schedule=str(log_dir / "beat-schedule")), self.env, log_dir)

    def start(self) -> FaultStack:
        self.redis.start()
        self.sandbox.start()
        self.backup.start()
        _serve_backup_catalog(self.backup)
        start_together([(process, ready_line(process.name)) for process in [*self.workers, self.fulfil, self.beat]])
        self.start_web()
        return self

    def ensure_running(self) -> None:
        """Restart whatever an earlier test left killed."""
        if not self.redis.alive:
            self.redis.start()
        for sandbox in (self.sandbox, self.backup):
            if not sandbox.alive:
                sandbox.start()
            sandbox.configure(**PROVIDER_DEFAULTS)
        _serve_backup_catalog(self.backup)
        self.backup.set_balance(BACKUP_BALANCE)
        for worker in [*self.workers, self.fulfil]:
            if not worker.alive:
                worker.start(ready_marker=WORKER_READY)
        if not self.beat.alive:
            self.beat.start(ready_marker="beat: Starting")
        if not self.web.alive:
            self.start_web()

    def worker_for_shard(self, shard: int) -> Process:
        return self.workers[shard % len(self.workers)]

    def broker(self):
        return self.redis.client()

    def start_web(self) -> None:
        if not self.static_collected:
            collect_static(self.env)
            self.static_collected = True
        self.web.start()
        self.wait_web()

    def wait_web(self, timeout: float = 60) -> None:
        self.web.wait_http(f"{self.url}/api/v1/health/", timeout)

    def web_children(self) -> list[psutil.Process]:
        return psutil.Process(self.web.popen.pid).children()

    def kill_web_worker(self, index: int) -> float:
        """SIGKILL one gunicorn worker; the master forks a new one. Returns when it is serving."""
        children = self.web_children()
        victim = children[index % len(children)]
        victim.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            alive = [c for c in self.web_children() if c.pid != victim.pid and c.is_running()]
            if len(alive) >= len(children):
                break
            time.sleep(0.05)
        self.wait_web()
        return time.time()

    def broker_depth(self) -> int:
        client = self.broker()
        # Settlement's queues; the fault stack runs no webhook worker (deliveries have their own
        # fault tests, tests/notifications), so `ledger.webhooks` only fills up here.
        return sum(
            client.llen(key)
            for key in client.scan_iter("ledger.*")
            if key != b"ledger.webhooks" and client.type(key) == b"list"
        )

    def stop(self) -> None:
        stop_together([self.web, *self.workers, self.fulfil, self.beat])
        self.sandbox.stop()
        self.backup.stop()
        self.redis.stop()


def _serve_backup_catalog(sandbox: SandboxProcess) -> None:
    """The house catalog in DT One's dialect, every house product routed to it (suite.py)."""
    sandbox.session.post(f"{sandbox.url}/_sandbox/catalog", json=HOUSE_DVS_CATALOG, timeout=10).raise_for_status()


def _another_port(taken: int) -> int:
    while (port := free_port(8300, 8399)) == taken:
        pass
    return port


def terminate_database_backends() -> int:
    """pg_terminate_backend for every other session of the test database, as a failover does."""
    admin = psycopg2.connect(**connection.get_connection_params())
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND pid <> %s",
            [connection.connection.info.backend_pid if connection.connection else 0],
        )
        (count,) = cursor.fetchone()
    admin.close()
    return count
