"""Single-charge submission over HTTP: accepted charges/s and latency p50/p99 at N concurrent
clients, against gunicorn (production settings) with the shard workers settling at the same time.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ledger_http_bench REDIS_URL=redis://127.0.0.1:6379/11 \\
        .venv/bin/python -m bench.http_submit --clients 32 --seconds 20

Self-contained: creates and migrates the database if needed, starts its own gunicorn and shard
workers on a free port (8100-8199 unless --port), funds fresh sellers, runs a closed loop (each
client sends its next POST when the previous one answered), waits until every accepted charge is
settled, runs the ledger audit for those sellers, stops everything. The load generator is wrk
(bench/wrk.py) where installed, else standard-library threads in a separate process."""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import resource
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

from bench import processes as processes_
from bench import wrk
from bench.stack import create_database, free_port
from workers.stack import default_web_workers

PHONE = "+989121234567"
AMOUNT = 1_000
_BODY = {"phone_number": PHONE, "amount": AMOUNT}


def _environment(args) -> dict:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE=args.settings,
        DATABASE_URL=args.database_url,
        REDIS_URL=args.redis_url,
        SECRET_KEY=os.environ.get("BENCH_SECRET_KEY") or secrets.token_urlsafe(48),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="0",
        # LOG_LEVEL stays production's (INFO): each charge's JSON log line is part of its cost.
        PYTHONUNBUFFERED="1",
    )
    return env


# --- load generator (runs in its own process) ------------------------------------------------


def _client(host: str, port: int, token: str, deadline: float, out: list, start: threading.Barrier) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    body = json.dumps({"phone_number": PHONE, "amount": AMOUNT})
    conn = http.client.HTTPConnection(host, port, timeout=30)
    start.wait()
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/api/v1/charges/", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            conn.close()
            status = 0
        out.append((time.perf_counter() - t0, status))
    conn.close()


def _load(host: str, port: int, tokens: list[str], clients: int, seconds: float, queue) -> None:
    start = threading.Barrier(clients + 1)
    results: list[list] = [[] for _ in range(clients)]
    deadline = time.monotonic() + seconds + 1.0  # barrier release happens within that extra second
    threads = [
        threading.Thread(target=_client, args=(host, port, tokens[i % len(tokens)], deadline, results[i], start))
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.monotonic()
    for thread in threads:
        thread.join()
    queue.put({"elapsed": time.monotonic() - began, "requests": [r for per in results for r in per]})


def _percentile(ordered: list[float], p: float) -> float:
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000 if ordered else float("nan")


# --- orchestration ---------------------------------------------------------------------------


def _wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(url, timeout=5)
            conn.request("GET", "/api/v1/health/")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError("gunicorn did not answer")


def run(args) -> dict:
    env = _environment(args)
    os.environ.update(
        {
            k: env[k]
            for k in (
                "DJANGO_SETTINGS_MODULE",
                "DATABASE_URL",
                "REDIS_URL",
                "SECRET_KEY",
                "ALLOWED_HOSTS",
                "SECURE_SSL_REDIRECT",
            )
        }
    )
    create_database(args.database_url)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from rest_framework_simplejwt.tokens import AccessToken

    from ledger.models import Account, Charge, Deposit
    from ledger.services.deposits import deposit_approve, deposit_request
    from ledger.services.sellers import seller_create
    from workers.stack import shard_assignment, web_argv, worker_argv

    call_command("migrate", "--noinput", verbosity=0)
    port = args.port or free_port(8100, 8199)
    log_dir = Path(args.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen] = []

    def spawn(name: str, argv: list[str]) -> None:
        processes.append(processes_.spawn(argv, log_dir / f"{name}.log", env=env))

    try:
        web = web_argv(host="127.0.0.1", port=port, workers=args.web_workers)
        spawn("gunicorn", web + args.gunicorn_arg)
        for index, shards in enumerate(shard_assignment(settings.LEDGER_SHARDS, args.worker_processes)):
            spawn(
                f"shards{index}", worker_argv(shards, name=f"bench-http{index}-{port}", with_default_queue=index == 0)
            )
        _wait_http(f"127.0.0.1:{port}")
        groups = {"web": processes[:1], "workers": processes[1:]}

        run_id = secrets.token_hex(3)
        admin = None
        sellers = [
            seller_create(username=f"bench-http-{run_id}-{n}", password=secrets.token_urlsafe(16), name=f"bench {n}")
            for n in range(args.sellers)
        ]
        for seller in sellers:
            deposit, _ = deposit_request(seller=seller, amount=10**12)
            deposit_approve(deposit_id=deposit.pk, approved_by=admin)
        ids = [s.pk for s in sellers]
        _wait_settled(ids, Charge, Deposit, timeout=60)
        tokens = [str(AccessToken.for_user(seller.user)) for seller in sellers]

        # Not recorded: every gunicorn worker thread opens its connections, prepares its statement
        # and fills its caches on its first requests (the first half second's latencies are 2-5x).
        warmup_accepted = 0
        if args.load_generator == "wrk":
            warmup = wrk.closed_loop(port=port, tokens=tokens, clients=args.clients, seconds=2, body=_BODY)
            warmup_accepted = warmup["statuses"].get(202, 0)
        cpu_before = {name: _cpu(procs) for name, procs in groups.items()}
        pg_before = _postgres_cpu(args.database_url)
        loader_cpu_before = _children_cpu()
        if args.load_generator == "wrk":
            loaded = wrk.closed_loop(
                port=port,
                tokens=tokens,
                clients=args.clients,
                seconds=args.seconds,
                body=_BODY,
            )
            print("wrk latency ms:", loaded["latency_ms"], file=sys.stderr)
            outcome = {
                "elapsed": loaded["elapsed"],
                "count": loaded["requests"],
                "statuses": loaded["statuses"],
                "p50": loaded["latency_ms"]["p50"],
                "p99": loaded["latency_ms"]["p99"],
                "max": loaded["latency_ms"]["max"],
            }
        else:
            queue = multiprocessing.get_context("spawn").Queue()
            loader = multiprocessing.get_context("spawn").Process(
                target=_load, args=("127.0.0.1", port, tokens, args.clients, args.seconds, queue)
            )
            loader.start()
            outcome = queue.get(timeout=args.seconds + 300)
            loader.join()
        loader_cpu = _children_cpu() - loader_cpu_before  # the generator is the only child reaped meanwhile
        settle_started = time.monotonic()
        _wait_settled(ids, Charge, Deposit, timeout=600)
        settle_tail = time.monotonic() - settle_started
        cpu = {name: _cpu(procs) - cpu_before[name] for name, procs in groups.items()}
        pg_after = _postgres_cpu(args.database_url)
        cpu["postgres"] = sum(pg_after[pid] - pg_before.get(pid, 0.0) for pid in pg_after)

        if "requests" in outcome:  # the Python load generator: every request's latency and status
            latencies = sorted(latency for latency, _ in outcome["requests"])
            statuses: dict[int, int] = {}
            for _, status in outcome["requests"]:
                statuses[status] = statuses.get(status, 0) + 1
            outcome.update(
                count=len(latencies),
                statuses=statuses,
                p50=_percentile(latencies, 50),
                p99=_percentile(latencies, 99),
                max=latencies[-1] * 1000 if latencies else None,
            )
        accepted = outcome["statuses"].get(202, 0)
        succeeded = Charge.objects.filter(seller_id__in=ids, status="succeeded").count()
        balance = sum(Account.objects.filter(seller_id__in=ids).values_list("balance", flat=True))
        for seller_id in ids:
            call_command("ledger_audit", "--seller", str(seller_id), verbosity=0)
        return {
            "clients": args.clients,
            "web_workers": args.web_workers,
            "seconds": round(outcome["elapsed"], 2),
            "load_generator": args.load_generator,
            "requests": outcome["count"],
            "statuses": outcome["statuses"],
            "accepted_per_s": round(accepted / outcome["elapsed"], 1),
            "p50_ms": round(outcome["p50"], 1),
            "p99_ms": round(outcome["p99"], 1),
            "max_ms": round(outcome["max"], 1) if outcome["max"] is not None else None,
            "settle_tail_s": round(settle_tail, 2),
            # CPU per accepted charge barely moves with the machine's load, unlike wall time.
            "web_cpu_ms_per_charge": round(cpu["web"] / max(accepted, 1) * 1000, 2),
            "worker_cpu_ms_per_charge": round(cpu["workers"] / max(accepted, 1) * 1000, 2),
            "postgres_cpu_ms_per_charge": round(cpu["postgres"] / max(accepted, 1) * 1000, 2),
            "load_generator_cpu_ms_per_request": round(loader_cpu / max(outcome["count"], 1) * 1000, 3),
            # What the machine's cores could accept if this were all they ran.
            "cpu_bound_capacity_per_s": round((os.cpu_count() or 1) / max(sum(cpu.values()) / max(accepted, 1), 1e-9)),
            "succeeded": succeeded,
            # wrk stops at its deadline without counting the answers still in flight (at most one
            # per client), which the API did accept and the workers did settle.
            "balance_ok": balance == len(ids) * 10**12 - succeeded * AMOUNT
            and accepted + warmup_accepted <= succeeded <= accepted + warmup_accepted + 2 * args.clients,
        }
    finally:
        processes_.stop_all(processes)


def _cpu(processes: list[subprocess.Popen]) -> float:
    """CPU seconds used so far by these processes and their children (gunicorn's workers)."""
    import psutil

    total = 0.0
    for proc in processes:
        try:
            parent = psutil.Process(proc.pid)
            for member in [parent, *parent.children(recursive=True)]:
                times = member.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _postgres_cpu(database_url: str) -> dict[int, float]:
    """CPU seconds of the PostgreSQL backends serving this database, by pid."""
    import psutil

    name = urlparse(database_url).path.lstrip("/")
    found = {}
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if cmdline.startswith("postgres:") and f" {name} " in f"{cmdline} ":
            try:
                times = proc.cpu_times()
                found[proc.pid] = times.user + times.system
            except psutil.NoSuchProcess:
                continue
    return found


def _wait_settled(seller_ids, Charge, Deposit, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (
        Charge.objects.filter(seller_id__in=seller_ids, status="queued").exists()
        or Deposit.objects.filter(seller_id__in=seller_ids, status="approving").exists()
    ):
        if time.monotonic() > deadline:
            raise TimeoutError("charges still queued")
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--sellers", type=int, default=4, help="charges are spread over this many sellers")
    parser.add_argument("--web-workers", type=int, default=default_web_workers())
    parser.add_argument("--worker-processes", type=int, default=2)
    parser.add_argument("--gunicorn-arg", action="append", default=[], help="extra gunicorn argument (repeatable)")
    parser.add_argument(
        "--load-generator",
        choices=["wrk", "python"],
        default="wrk" if wrk.available() else "python",
        help="wrk (Debian's package, the default when installed) or the standard-library threads",
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--settings", default="config.settings.production", help="to compare a settings variant")
    parser.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ledger_http_bench")
    )
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/11"))
    parser.add_argument("--log-dir", default="/tmp/ledger-http-bench")
    args = parser.parse_args(argv)
    result = run(args)
    print(json.dumps(result))
    print(
        f"{result['accepted_per_s']} accepted charges/s, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms "
        f"at {args.clients} clients ({result['requests']} requests, statuses {result['statuses']}, "
        f"settled {result['settle_tail_s']} s after the load, balances {'exact' if result['balance_ok'] else 'WRONG'}; "
        f"CPU per charge: web {result['web_cpu_ms_per_charge']} ms, workers {result['worker_cpu_ms_per_charge']} ms, "
        f"postgres {result['postgres_cpu_ms_per_charge']} ms, load generator "
        f"{result['load_generator_cpu_ms_per_request']} ms, i.e. at most {result['cpu_bound_capacity_per_s']}/s "
        f"on {os.cpu_count()} otherwise idle cores)"
    )
    return 0 if result["balance_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
