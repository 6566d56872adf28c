"""What the benchmark brings up, for every scenario and tool of `bench/`: its own database
(created, migrated, emptied between scenarios), its own Redis database or key prefix, the sandbox
provider (provider_sandbox/, in memory, for the whole run) and the production processes with the
commands of `workers/stack.py` (shard workers, the import and fulfilment workers, beat, gunicorn),
with their peak memory and CPU sampled while they run."""

from __future__ import annotations

import os
import secrets
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import psutil
import psycopg2
from psycopg2 import sql

from devstack.processes import Process, free_port
from devstack.sandbox import SandboxProcess
from devstack.stack import collect_static, default_web_workers

BENCH_SETTINGS = "bench.settings"
ROOT_DIR = Path(__file__).resolve().parent.parent


def default_database_url() -> str:
    return os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ledger_bench")


def default_redis_url() -> str:
    return os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def configure_environment(
    *, database_url: str, redis_url: str, key_prefix: str, worker_processes: int, web_workers: int
) -> None:
    """Environment for this process and every child: production settings against the bench's
    own database and Redis. Runs before Django is imported."""
    os.environ.update(
        DJANGO_SETTINGS_MODULE=BENCH_SETTINGS,
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        BENCH_REDIS_KEY_PREFIX=key_prefix,
        LEDGER_WORKER_PROCESSES=str(worker_processes),
        WEB_WORKERS=str(web_workers),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        # TLS ends at the load balancer in production; the benchmark speaks plain HTTP on loopback.
        SECURE_SSL_REDIRECT="0",
        PYTHONUNBUFFERED="1",
    )
    if len(os.environ.get("SECRET_KEY", "")) < 32 or "not-a-secret" in os.environ.get("SECRET_KEY", ""):
        os.environ["SECRET_KEY"] = secrets.token_urlsafe(48)


def create_database(database_url: str) -> bool:
    url = urlparse(database_url)
    name = url.path.lstrip("/")
    conn = psycopg2.connect(
        host=url.hostname,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname="postgres",
        connect_timeout=5,
    )
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                return True
    finally:
        conn.close()
    return False


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", "--noinput", verbosity=0)


def reset_ledger() -> None:
    """Empty every table the scenarios write (TRUNCATE is not a row operation, so the entries'
    append-only trigger does not apply).

    The emptied tables are left without statistics, as a new deployment's are, and not analyzed
    while empty: statistics that say "empty" make the planner scan tables whole, and the plans
    the processes cache in their first seconds (the foreign-key checks run at every settle's
    commit among them) then read every row inserted since, each settle slower than the one
    before, until autovacuum analyzes the table (docs/performance.md). Scenarios analyze what
    they seed (`seed.queue_charges`).

    Identities are not restarted: a charge's external id at the provider is derived from its id,
    and the run's sandbox keeps every transaction it saw, so a reused id would be answered from
    its record (200, the stored transaction, or 409 for another amount) instead of processed."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "TRUNCATE ledger_entry, ledger_charge, ledger_chargebatch, ledger_deposit, ledger_account, core_seller, "
            "auth_user, django_celery_results_taskresult, notifications_event CASCADE"
        )


def clear_broker(redis_url: str, key_prefix: str) -> None:
    """Drop the benchmark's own broker keys (its prefix, or the ledger queues of its Redis
    database); never a flush."""
    import redis

    client = redis.Redis.from_url(redis_url)
    patterns = (
        [f"{key_prefix}*"]
        if key_prefix
        else [
            "ledger.shard.*",
            "ledger.default*",
            "ledger.imports*",
            "ledger.fulfil*",
            "unacked*",
            "_kombu.binding.*",
        ]
    )
    for pattern in patterns:
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)


def broker_backlog(redis_url: str, key_prefix: str) -> int:
    """Wake-ups not yet finished: waiting in a shard queue, or delivered and not yet acknowledged
    (`acks_late`: a message is acknowledged after its task ran)."""
    import redis

    from workers.routing import all_shard_queues

    client = redis.Redis.from_url(redis_url)
    pipe = client.pipeline()
    for queue in all_shard_queues():
        pipe.llen(f"{key_prefix}{queue}")
    pipe.hlen(f"{key_prefix}unacked")
    return sum(pipe.execute())


class Stack:
    """The production processes, started with the commands of `workers.stack.stack_processes`,
    and the sandbox provider the fulfilment worker sends the charges to."""

    def __init__(self, log_dir: Path, port: int, *, provider_latency_ms: float = 50.0):
        from devstack.stack import stack_processes

        self.log_dir = log_dir
        self.port = port
        # Its own range: the web's port is chosen before gunicorn binds it.
        self.provider = SandboxProcess(log_dir, port=free_port(8500, 8599), latency_ms=provider_latency_ms)
        env = dict(os.environ, PROVIDER_URL=self.provider.url)
        # The gate's default (2000/s) stands for a real provider's contract; the benchmark measures
        # the fulfilment itself, so the limit must not be what bounds it.
        env.setdefault("PROVIDER_RATE_LIMIT", "100000")
        os.environ.setdefault("BEAT_SCHEDULE_DIR", str(log_dir))
        specs = {spec.name: spec for spec in stack_processes(port=port, flower_port=0)}
        self.workers = [
            Process(name, spec.argv, env, log_dir) for name, spec in specs.items() if name.startswith("shards")
        ]
        self.imports = Process("imports", specs["imports"].argv, env, log_dir)
        self.fulfil = Process("fulfil", specs["fulfil"].argv, env, log_dir)
        self.web = Process("web", specs["web"].argv, env, log_dir)
        self.static_collected = False
        # Beat runs as in production: its sweeper is what settles intents whose wake-up was lost.
        self.beat = Process("beat", specs["beat"].argv, env, log_dir)
        self.web_workers = default_web_workers()

    def start_workers(self) -> None:
        self.provider.start()
        for worker in [*self.workers, self.imports, self.fulfil]:
            worker.start()
        for worker in [*self.workers, self.imports, self.fulfil]:
            worker.wait_for_log(" ready.", timeout=60)
        self.beat.start(ready_marker="beat: Starting", timeout=60)

    def pause_fulfilment(self) -> None:
        """Stop the fulfilment worker: the settle's reservations are then measured alone, their
        `ledger.fulfil` tasks waiting in the broker (charges held) until `resume_fulfilment`."""
        self.fulfil.stop()

    def resume_fulfilment(self) -> None:
        if not self.fulfil.alive:
            self.fulfil.start(ready_marker=" ready.", timeout=60)

    def start_web(self) -> None:
        if not self.static_collected:
            collect_static(self.web.env)
            self.static_collected = True
        self.web.start()
        deadline = time.monotonic() + 60
        url = f"http://127.0.0.1:{self.port}/api/v1/health/"
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if not self.web.alive:
                raise RuntimeError(f"web exited:\n{self.web.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"web not answering on {url}")
            time.sleep(0.2)
        # gunicorn answers as soon as one of its workers is up; give the rest time to boot.
        self._wait_web_workers(default_web_workers())

    def _wait_web_workers(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(psutil.Process(self.web.popen.pid).children()) >= count:
                time.sleep(0.5)
                return
            time.sleep(0.1)

    def worker_for_seller(self, seller_id: int):
        from workers.assignment import worker_groups
        from workers.routing import shard_for

        shard = shard_for(seller_id)
        return next(w for w, group in zip(self.workers, worker_groups(), strict=True) if shard in group)

    def worker_pids(self) -> dict[str, int]:
        return {w.name: w.popen.pid for w in self.workers if w.alive}

    def web_pid(self) -> int | None:
        return self.web.popen.pid if self.web.alive else None

    def stop_web(self) -> None:
        self.web.stop()

    def stop(self) -> None:
        for process in [self.web, self.beat, *self.workers, self.imports, self.fulfil]:
            process.stop()
        self.provider.stop()


class MemorySampler:
    """Peak resident memory of named processes (and, for gunicorn, each of its workers) sampled
    every `interval` seconds in a background thread."""

    def __init__(self, pids: dict[str, int], *, include_children: bool = False, interval: float = 0.05):
        self.pids = pids
        self.include_children = include_children
        self.interval = interval
        self.peaks: dict[str, int] = {}
        self.cpu_start: dict[int, float] = {}
        self.cpu_end: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        for name, pid in self.pids.items():
            try:
                proc = psutil.Process(pid)
                targets = [(name, proc)]
                if self.include_children:
                    targets += [(f"{name}.{child.pid}", child) for child in proc.children()]
                for label, target in targets:
                    times = target.cpu_times()
                    self.cpu_start.setdefault(target.pid, times.user + times.system)
                    self.cpu_end[target.pid] = times.user + times.system
                    rss = target.memory_info().rss
                    if rss > self.peaks.get(label, 0):
                        self.peaks[label] = rss
            except psutil.Error:
                continue

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the sampled processes used while the block ran: unlike wall
        time, it barely moves when other work shares the machine."""
        return round(sum(self.cpu_end[pid] - start for pid, start in self.cpu_start.items()), 3)

    def peaks_mb(self) -> dict[str, float]:
        return {name: round(rss / 2**20, 1) for name, rss in sorted(self.peaks.items())}
