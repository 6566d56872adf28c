"""What the benchmark brings up: its own database (created, migrated, emptied between scenarios),
its own Redis database or key prefix, the sandbox provider (in memory, for the whole run) and the
processes of `make up` (devstack/), with their peak memory and CPU sampled while they run."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import threading
import time
from datetime import datetime
from pathlib import Path

import psutil

from devstack.postgres import create_database
from devstack.processes import Process, free_port, start_together, stop_together
from devstack.sandbox import SandboxProcess
from devstack.stack import collect_static, default_web_workers, ready_line, stack_processes

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ledger_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
ROOT_DIR = Path(__file__).resolve().parent.parent
DVS = "dvs"  # the name of the provider that delivers the house catalog (PROVIDERS)


def open_database(database_url: str, redis_url: str, *, key_prefix: str = "", **environment: str) -> bool:
    """This process and its children (with `environment` besides) on the production settings,
    through `bench/settings.py`, against the benchmark's own database (created if need be, and
    migrated) and Redis; Django set up. Whether the database was created."""
    # TLS ends at the load balancer in production; the benchmark speaks plain HTTP on loopback.
    os.environ.update(DJANGO_SETTINGS_MODULE="bench.settings", DATABASE_URL=database_url, REDIS_URL=redis_url,
                      BENCH_REDIS_KEY_PREFIX=key_prefix, **environment, ALLOWED_HOSTS="127.0.0.1,localhost",
                      SECURE_SSL_REDIRECT="0", PYTHONUNBUFFERED="1")  # fmt: skip
    if len(os.environ.get("SECRET_KEY", "")) < 32 or "not-a-secret" in os.environ.get("SECRET_KEY", ""):
        os.environ["SECRET_KEY"] = secrets.token_urlsafe(48)
    if not os.environ.get("STATEMENT_SIGNING_KEY_FILE"):  # the statements' checkpoints are signed
        os.environ.setdefault("STATEMENT_SIGNING_KEY", base64.b64encode(secrets.token_bytes(32)).decode())
    created = create_database(database_url)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", "--noinput", verbosity=0)
    return created


def reset_ledger(*, house_catalog: bool = True) -> None:
    """Empty every table the scenarios write (TRUNCATE: the entries' append-only trigger does not
    apply), then load the house catalog the charges sell from, routed to the provider speaking DT
    One's dialect (`Stack`), unless not `house_catalog`.

    Not analyzed while empty: plans cached on "empty" statistics (the settle's foreign-key checks
    among them) would scan every row inserted since (docs/performance.md); scenarios analyze what
    they seed. Identities are not restarted: the run's sandbox would answer a reused external id
    from its record instead of processing it."""
    from django.db import connection

    from devstack.house_catalog import load_house_catalog, route_house_products

    with connection.cursor() as cur:
        cur.execute(
            "TRUNCATE ledger_entry, ledger_charge, ledger_chargebatch, ledger_deposit, ledger_account, core_seller, "
            "auth_user, django_celery_results_taskresult, notifications_event, catalog_quote, catalog_pricerule, "
            "catalog_pricelist, catalog_numberlookup, catalog_numberingprefix, catalog_productversion, "
            "catalog_product, catalog_operator, catalog_country CASCADE"
        )
    if house_catalog:
        load_house_catalog()
        route_house_products(DVS, dvs=[DVS])


def clear_broker(redis_url: str, key_prefix: str) -> None:
    """Drop the benchmark's own broker keys (its prefix, or the ledger queues of its Redis
    database); never a flush."""
    import redis

    client = redis.Redis.from_url(redis_url)
    queues = ["ledger.shard.*", "ledger.default*", "ledger.imports*", "ledger.fulfil*", "unacked*", "_kombu.binding.*"]
    for pattern in [f"{key_prefix}*"] if key_prefix else queues:
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)


def broker_backlog() -> int:
    """Wake-ups waiting in a shard queue or delivered and not yet acknowledged (`acks_late`)."""
    from workers.broker import broker_client, ops_key, queue_depths
    from workers.routing import all_shard_queues

    client = broker_client()
    return sum(queue_depths(all_shard_queues(), client).values()) + client.hlen(ops_key("unacked"))


def task_runs(process: Process, task: str) -> list[tuple[float, float]]:
    """(start time, run time in seconds) of each `task` a worker has run, from Celery's JSON log."""
    runs = []
    for line in process.log_path.read_text(errors="replace").splitlines():
        if f'"{task}"' in line and "succeeded in" in line:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                record = json.loads(line)
                runtime = float(record["data"]["runtime"])
                runs.append((datetime.strptime(record["time"], "%Y-%m-%d %H:%M:%S,%f").timestamp() - runtime, runtime))
    return runs


class Stack:
    """The processes of `make up` (`devstack.stack.stack_processes`, its process wrapper) but
    Flower, the webhook worker and the event stream; and the sandbox provider, serving the house
    catalog in DT One's dialect (`DVS`, through providers/dvs.py); charges naming no product (the
    settlement scenarios' seeded ones) go to it in its own dialect (`PROVIDER_DEFAULT`)."""

    def __init__(self, log_dir: Path, port: int, *, provider_latency_ms: float = 50.0):
        from devstack.house_catalog import HOUSE_DVS_CATALOG, sandbox_dvs_provider

        self.log_dir, self.port = log_dir, port
        (catalog := log_dir / "house-dvs-catalog.json").write_text(json.dumps(HOUSE_DVS_CATALOG))
        # Its own range: the web's port is chosen before gunicorn binds it.
        self.provider = SandboxProcess(
            log_dir, port=free_port(8500, 8599), latency_ms=provider_latency_ms, catalog=catalog
        )
        url, own = self.provider.url, {"kind": "sandbox", "url": self.provider.url}
        providers = json.dumps({"sandbox": own, DVS: sandbox_dvs_provider(url)})
        env = dict(os.environ, PROVIDER_URL=url, PROVIDERS=providers, PROVIDER_DEFAULT="sandbox")
        # The gate's default (2000/s) stands for a real provider's contract; the benchmark measures
        # the fulfilment itself, so the limit must not be what bounds it.
        env.setdefault("PROVIDER_RATE_LIMIT", "100000")
        os.environ.setdefault("BEAT_SCHEDULE_DIR", str(log_dir))
        processes = {s.name: Process(s.name, s.argv, env, log_dir) for s in stack_processes(port=port, flower_port=0)}
        self.workers = [process for name, process in processes.items() if name.startswith("shards")]
        # Beat runs as in production: its sweeper is what settles intents whose wake-up was lost.
        self.imports, self.fulfil, self.web, self.beat = (processes[n] for n in ("imports", "fulfil", "web", "beat"))
        self.static_collected, self.web_workers = False, default_web_workers()

    def start_workers(self) -> None:
        self.provider.start()
        start_together([(p, ready_line(p.name)) for p in [*self.workers, self.imports, self.fulfil, self.beat]])

    @contextlib.contextmanager
    def paused(self, process: Process):
        """A worker or beat stopped for the block, started again after it: the fulfilment worker
        while reservations are measured alone, beat while the audit is timed (its lock)."""
        process.stop()
        try:
            yield
        finally:
            process.start(ready_marker=ready_line(process.name), timeout=60)

    @contextlib.contextmanager
    def callbacks_to_web(self):
        """For the block, the fulfilment worker restarted with PROVIDER_CALLBACK_URL set to the
        web's callback endpoint, so every top-up it sends asks the provider for a callback."""
        shared = self.fulfil.env  # every process's environment: only the fulfilment worker's changes
        url = f"http://127.0.0.1:{self.port}/api/v1/provider/callbacks/"
        with self.paused(self.fulfil):
            self.fulfil.env = {**shared, "PROVIDER_CALLBACK_URL": url}
        try:
            yield
        finally:
            with self.paused(self.fulfil):
                self.fulfil.env = shared

    def start_web(self) -> None:
        if self.web.alive:
            return
        if not self.static_collected:
            collect_static(self.web.env)
            self.static_collected = True
        self.web.start()
        self.web.wait_http(f"http://127.0.0.1:{self.port}/api/v1/health/")
        # gunicorn answers as soon as one of its workers is up; give the rest time to boot.
        deadline = time.monotonic() + 30
        while len(psutil.Process(self.web.popen.pid).children()) < self.web_workers:
            if time.monotonic() > deadline:
                return
            time.sleep(0.1)
        time.sleep(0.5)

    def worker_for_seller(self, seller_id: int) -> Process:
        from workers.assignment import worker_groups
        from workers.routing import shard_for

        groups = worker_groups()
        return next(w for w, group in zip(self.workers, groups, strict=True) if shard_for(seller_id) in group)

    def worker_pids(self) -> dict[str, int]:
        return {w.name: w.popen.pid for w in self.workers if w.alive}

    def web_pid(self) -> int | None:
        return self.web.popen.pid if self.web.alive else None

    def stop(self) -> None:
        stop_together([self.web, self.beat, *self.workers, self.imports, self.fulfil])
        self.provider.stop()


class Usage:
    """CPU seconds and peak RSS of named processes (and their children with `children`) from
    creation to `stop()`, memory sampled every `interval` s inside a `with`; with `database`, also
    the CPU of this database's backends (`postgres`) and of the machine (`machine`)."""

    def __init__(self, pids: dict[str, int], *, children: bool = False, database: bool = False, interval=0.05):
        self.pids, self.children, self.database, self.interval = pids, children, database, interval
        self.peaks: dict[str, int] = {}
        self.cpu: dict[tuple[str, int], list[float]] = {}  # (name, pid) -> [first seen, last seen]
        self.machine = psutil.cpu_times()
        self._stop = threading.Event()
        self._sample(first=True)

    def __enter__(self) -> Usage:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self, *, first: bool = False, last: bool = False) -> None:
        targets = []  # (name, its label among the memory peaks or None, process)
        for name, pid in self.pids.items():
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                children = proc.children(recursive=True) if self.children else []
                targets += [(name, name, proc)] + [(name, f"{name}.{child.pid}", child) for child in children]
        if self.database and (first or last):
            from django.db import connection

            with connection.cursor() as cur:
                cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
                targets += [
                    ("postgres", None, psutil.Process(pid)) for (pid,) in cur.fetchall() if psutil.pid_exists(pid)
                ]
        for name, label, target in targets:
            with contextlib.suppress(psutil.Error):
                times, rss = target.cpu_times(), target.memory_info().rss
                cpu = times.user + times.system
                # A backend first seen at the end did all its work inside the window.
                self.cpu.setdefault((name, target.pid), [0.0 if last and name == "postgres" else cpu, 0.0])[1] = cpu
                if label is not None and rss > self.peaks.get(label, 0):
                    self.peaks[label] = rss

    def stop(self) -> dict[str, float]:
        """CPU seconds by name, `postgres` and `machine` included."""
        self._sample(last=True)
        used: dict[str, float] = {}
        for (name, _), (first, last) in self.cpu.items():
            used[name] = used.get(name, 0.0) + last - first
        if self.database:
            now = psutil.cpu_times()
            used["machine"] = sum(
                getattr(now, f) - getattr(self.machine, f) for f in ("user", "system", "nice", "softirq")
            )
        return {name: round(value, 3) for name, value in used.items()}

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the named processes used."""
        return round(sum(last - first for (name, _), (first, last) in self.cpu.items() if name in self.pids), 3)

    def peaks_mb(self) -> dict[str, float]:
        return {name: round(rss / 2**20, 1) for name, rss in sorted(self.peaks.items())}
