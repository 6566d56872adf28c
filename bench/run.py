"""`python -m bench`: bring up the benchmark's own database, broker keys and production processes,
run the scenarios with the database limit measured next to each, write the results and print the
summary. Exit status 1 when any scenario fails: the ledger wrong afterwards (the audit, the charges
that should have succeeded), or the system not doing the scenario's work (an error answer, a time-out)."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import platform
import subprocess
import time
import traceback
from pathlib import Path

from bench.scenarios.http_load import wrk_available
from bench.stack import DATABASE_URL, REDIS_URL
from devstack.processes import free_port
from devstack.stack import default_web_workers

ROOT = Path(__file__).resolve().parent.parent
LEDGER_SETTINGS = ("LEDGER_SHARDS", "LEDGER_SETTLE_BATCH_SIZE", "LEDGER_SETTLE_TIME_BUDGET", "LEDGER_SWEEP_INTERVAL",
                   "LEDGER_SWEEP_AFTER")  # fmt: skip
PROVIDER_SETTINGS = ("PROVIDER_RATE_LIMIT", "PROVIDER_CONCURRENCY", "PROVIDER_BATCH")
# Each scenario: its module in bench/scenarios/ and function.
RUNNERS = {
    "hot_seller": "settlement:hot_seller",
    "many_sellers": "settlement:many_sellers",
    "http": "http:run",
    "batch_import": "batch_import:run",
    "fulfilment": "fulfilment:run",
    "catalog_sync": "catalog_sync:run",
    "provider_close": "provider_close:run",
    "statements": "statements:run",
    "audit": "audit:run",
}
SCENARIOS = list(RUNNERS)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    add, env = parser.add_argument, os.environ.get
    add("--smoke", action="store_true", help="tiny sizes: checks that the benchmark works, measures nothing")
    add("--only", nargs="+", choices=SCENARIOS, help="run only these scenarios")
    add("--database-url", default=DATABASE_URL)
    add("--redis-url", default=REDIS_URL)
    add("--redis-key-prefix", default=env("BENCH_REDIS_KEY_PREFIX", ""), help="isolates the run on a shared Redis db")
    add("--out", type=Path, help="results folder (default bench/results, smoke: bench/results/smoke)")
    add("--port", type=int, default=int(env("BENCH_PORT", "0")) or None)
    add("--worker-processes", type=int, default=int(env("LEDGER_WORKER_PROCESSES", "2")))
    add("--web-workers", type=int, default=default_web_workers())
    generator = "wrk" if wrk_available() else "python"
    add("--load-generator", choices=["wrk", "python"], default=generator, help="of the HTTP closed loops")
    latency = float(env("BENCH_PROVIDER_LATENCY_MS", "50"))
    add("--provider-latency-ms", type=float, default=latency, help="the sandbox provider's wait before each answer")
    add("--profile", action="store_true", help="py-spy profiles of the shard, web and fulfilment workers")
    add("--no-limits", action="store_true", help="skip the pgbench limits")
    return parser.parse_args(argv)


def run_kind(args: argparse.Namespace) -> str:
    """ "smoke", "partial" (`--only` some scenarios) or "full": the copy it leaves (`report.LATEST`)."""
    return "smoke" if args.smoke else "partial" if args.only and set(args.only) != set(SCENARIOS) else "full"


def run_identity(args: argparse.Namespace) -> dict:
    """The fields of the results' `meta` that say what was run (`bench.report.copy_prefix` reads them)."""
    return {"smoke": args.smoke, "run": run_kind(args), "scenarios_run": list(args.only or SCENARIOS)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from bench.stack import clear_broker, open_database

    if args.smoke:
        # The sweeper at the pace the test suite uses, so a lost wake-up costs seconds, not a minute.
        os.environ.setdefault("LEDGER_SWEEP_INTERVAL", "1")
        os.environ.setdefault("LEDGER_SWEEP_AFTER", "2")
    out_dir = args.out or (ROOT / "bench" / "results" / ("smoke" if args.smoke else ""))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    log_dir = out_dir / "logs" / stamp
    log_dir.mkdir(parents=True, exist_ok=True)

    began = time.monotonic()
    print(f"bench: database {args.database_url}, redis {args.redis_url} prefix {args.redis_key_prefix!r}", flush=True)
    processes = {"LEDGER_WORKER_PROCESSES": str(args.worker_processes), "WEB_WORKERS": str(args.web_workers)}
    created = open_database(args.database_url, args.redis_url, key_prefix=args.redis_key_prefix, **processes)
    from django.conf import settings

    import celery_app  # noqa: F401  (binds the tasks to the configured app before any publish)
    from bench import report
    from bench.limits import PgbenchLimits
    from bench.scenarios import Context, ScenarioFailed, Sizes
    from bench.stack import Stack

    clear_broker(args.redis_url, args.redis_key_prefix)
    sizes = Sizes.smoke() if args.smoke else Sizes()
    notes: list[str] = []
    limits = None if args.no_limits else PgbenchLimits(args.database_url)
    if limits is not None and not limits.available:
        notes.append("pgbench not found (Debian: postgresql-client): no database limit, no ratios")
        print(f"bench: {notes[-1]}", flush=True)
        limits = None
    port = free_port() if args.port is None else args.port
    stack = Stack(log_dir, port, provider_latency_ms=args.provider_latency_ms)
    options = {name: getattr(args, name) for name in ("smoke", "profile", "load_generator", "provider_latency_ms")}
    ctx = Context(sizes=sizes, stack=stack, limits=limits, out_dir=out_dir, notes=notes, **options)
    meta = {
        "timestamp": stamp, **run_identity(args), "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")), "host": platform.node(),
        "cpus": os.cpu_count(), "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(), "postgres": _postgres_version(), "database_created": created,
        "settings": {
            **{name: getattr(settings, name) for name in LEDGER_SETTINGS}, "worker_processes": len(stack.workers),
            "web_workers": args.web_workers, "DJANGO_SETTINGS_MODULE": os.environ["DJANGO_SETTINGS_MODULE"],
            "provider_latency_ms": args.provider_latency_ms, "load_generator": args.load_generator,
            **{name: stack.fulfil.env.get(name) or getattr(settings, name) for name in PROVIDER_SETTINGS},
        },
        "sizes": sizes.__dict__,
        "commands": {p.name: p.argv for p in [*stack.workers, stack.web, stack.fulfil, stack.provider.process]},
    }  # fmt: skip
    results: dict = {"meta": meta, "scenarios": {}}
    try:
        stack.start_workers()
        for name in args.only or SCENARIOS:
            print(f"bench: scenario {name} ...", flush=True)
            t0 = time.monotonic()
            try:
                module, _, function = RUNNERS[name].partition(":")
                outcome = getattr(importlib.import_module(f"bench.scenarios.{module}"), function)(ctx)
                outcome.setdefault("status", "ok")
            except ScenarioFailed as exc:
                outcome = {**exc.partial, "status": "failed", "error": str(exc)}
            except Exception as exc:  # a crashed scenario is reported, and the others still run
                error, trace = f"{type(exc).__name__}: {exc}", traceback.format_exc()[-4000:]
                outcome = {"status": "error", "error": error, "traceback": trace}
            outcome["wall_seconds"] = round(time.monotonic() - t0, 1)
            results["scenarios"][name] = outcome
            print(f"bench: scenario {name}: {outcome['status']} in {outcome['wall_seconds']} s", flush=True)
    finally:
        stack.stop()
        clear_broker(args.redis_url, args.redis_key_prefix)
    meta["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    meta["total_seconds"] = round(time.monotonic() - began, 1)
    meta["notes"] = ctx.notes

    paths = report.write(results, out_dir, stamp)
    print(paths["markdown"].read_text())
    print(f"bench: wrote {', '.join(str(p) for p in paths.values())}")
    return 0 if all(s["status"] == "ok" for s in results["scenarios"].values()) else 1


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return ""


def _postgres_version() -> str:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SHOW server_version")
        return cur.fetchone()[0]
