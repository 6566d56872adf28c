"""Scenario 3: single-charge POSTs over real HTTP to gunicorn (the production command, one
process per core), JWT-authenticated, with the shard workers settling at the same time.

1. Closed loop from 32 and from 128 concurrent clients: accepted charges/s and latency
   p50/p99/p99.9 of every request (wrk where installed: bench/wrk.py).
2. Open loop at half the 32-client throughput: submit-to-settled latency p50/p99, from the
   client's send time to the charge's `settled_at` (stamped inside the settling transaction,
   just before its commit).
3. The shard tasks' run time in the first and the last seconds of the closed loops (both at full
   load), from the workers' logs: if each settle gets slower than the one before, their ratio
   shows it (`shard_task_ms`)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from datetime import datetime

from bench import seed, wrk
from bench.profiling import Profile
from bench.scenarios import Context, ScenarioFailed, check_audit
from bench.stack import ROOT_DIR, Usage, reset_ledger
from devstack.stack import default_web_workers

AMOUNT = 1_000


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "p99.9": None, "max": None}
    ordered = sorted(values)

    def pct(p: float) -> float:
        k = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
        return round(ordered[k] * 1000, 1)

    return {
        "p50": pct(50),
        "p95": pct(95),
        "p99": pct(99),
        "p99.9": pct(99.9),
        "max": round(ordered[-1] * 1000, 1),
    }


def _tokens(seller_ids: list[int]) -> list[str]:
    from rest_framework_simplejwt.tokens import AccessToken

    from core.models import Seller

    users = {s.pk: s.user for s in Seller.objects.select_related("user").filter(pk__in=seller_ids)}
    return [str(AccessToken.for_user(users[sid])) for sid in seller_ids]


def _load(
    ctx: Context, seller_ids: list[int], *, clients: int, seconds: float, rate: float = 0.0, name: str, **target
) -> dict:
    """The load generator's raw rows; `target` overrides its spec (another `port`, `path`, ...)."""
    spec = {
        "host": "127.0.0.1",
        "port": ctx.stack.port,
        "tokens": _tokens(seller_ids),
        "clients": clients,
        "seconds": seconds,
        "rate": rate,
        "phone_number": seed.PHONE,
        "amount": AMOUNT,
        **target,
    }
    spec_path = ctx.stack.log_dir / f"http-{name}.spec.json"
    out_path = ctx.stack.log_dir / f"http-{name}.out.json"
    spec_path.write_text(json.dumps(spec))
    subprocess.run(
        [sys.executable, "-m", "bench.scenarios.http_load", str(spec_path), str(out_path)],
        cwd=ROOT_DIR,
        check=True,
        timeout=seconds + 300,
    )
    return json.loads(out_path.read_text())


def _closed_loop(ctx: Context, seller_ids: list[int], *, clients: int, seconds: float, name: str) -> dict:
    """A closed loop's summary (see `_summary`), from wrk or from the Python generator."""
    if ctx.load_generator != "wrk":
        return _summary(_load(ctx, seller_ids, clients=clients, seconds=seconds, name=name))
    loaded = wrk.closed_loop(
        port=ctx.stack.port,
        tokens=_tokens(seller_ids),
        clients=clients,
        seconds=seconds,
        body={"phone_number": seed.PHONE, "amount": AMOUNT},
    )
    accepted = loaded["statuses"].get(202, 0)
    return {
        "requests": loaded["requests"],
        "accepted": accepted,
        "errors": {str(status): n for status, n in loaded["statuses"].items() if status != 202},
        "seconds": round(loaded["elapsed"], 2),
        "accepted_per_s": round(accepted / loaded["elapsed"], 1),
        "latency_ms": loaded["latency_ms"],
        "load_generator": "wrk",
    }


def _summary(raw: dict) -> dict:
    rows = raw["requests"]
    accepted = [r for r in rows if r[2] == 202]
    errors: dict[str, int] = {}
    for r in rows:
        if r[2] != 202:
            errors[str(r[2])] = errors.get(str(r[2]), 0) + 1
    duration = raw["ended"] - raw["started"]
    return {
        "requests": len(rows),
        "accepted": len(accepted),
        "errors": errors,
        "seconds": round(duration, 2),
        "accepted_per_s": round(len(accepted) / duration, 1),
        "latency_ms": percentiles([r[1] for r in rows]),
    }


def run(ctx: Context) -> dict:
    sizes = ctx.sizes
    limits = []
    if ctx.limits is not None:
        web_workers = default_web_workers()
        limits = [
            ctx.limits.submits(
                name=f"one queued-charge insert per transaction, {web_workers} connections",
                clients=web_workers,
                transactions=200 if ctx.smoke else 8000,
            )
        ]

    reset_ledger()
    seller_ids = seed.make_sellers(sizes.http_sellers, prefix="http")
    # Enough for every charge the scenario could submit, so every one of them must succeed.
    funding = 10**12
    seed.fund(seller_ids, funding)
    ctx.stack.start_web()
    result: dict = {"sellers": len(seller_ids), "web_workers": ctx.stack.web_workers}
    # The web server stays up for the batch import; the run stops it at the end.
    with Usage({"web": ctx.stack.web_pid()}, children=True) as memory:
        # Not recorded: every gunicorn worker loads its views, serializers and connections lazily.
        _closed_loop(
            ctx, seller_ids, clients=sizes.http_clients[0], seconds=min(2.0, sizes.http_seconds / 2), name="warmup"
        )
        measured_from = time.time()
        for clients in sizes.http_clients:
            profile = None
            if ctx.profile and clients == sizes.http_clients[0]:
                profile = Profile(ctx.stack.web_pid(), ctx.out_dir / "profiles" / "http_web.raw.txt", subprocesses=True)
                profile.__enter__()
            usage = Usage({"web": ctx.stack.web_pid()}, children=True)
            summary = _closed_loop(ctx, seller_ids, clients=clients, seconds=sizes.http_seconds, name=f"c{clients}")
            cpu = usage.stop()["web"]
            if profile:
                profile.__exit__(None, None, None)
                if profile.summary():
                    result["profile"] = profile.summary()
            result[f"c{clients}"] = summary
            accepted = result[f"c{clients}"]["accepted"]
            result[f"c{clients}"]["web_cpu_ms_per_request"] = round(cpu / accepted * 1000, 2) if accepted else None
        closed_loops_ended = time.time()
        base = result[f"c{sizes.http_clients[0]}"]["accepted_per_s"]
        rate = max(1.0, base / 2)
        # Submit -> settled at half load, not behind the backlog the 128-client phase may leave.
        seed.wait_until_settled(lambda: seed.unsettled(seller_ids), timeout=sizes.settle_timeout, interval=0.1)
        raw = _load(
            ctx, seller_ids, clients=sizes.http_clients[0], seconds=sizes.http_seconds, rate=rate, name="settle"
        )
        sent = {r[3]: r[0] for r in raw["requests"] if r[2] == 202 and r[3] is not None}
        seed.wait_until_settled(lambda: seed.unsettled(seller_ids), timeout=sizes.settle_timeout, interval=0.1)
    result["web_peak_rss_mb"] = memory.peaks_mb()
    result["shard_task_ms"] = _shard_task_growth(ctx.stack.workers, measured_from, closed_loops_ended)

    from ledger.models import Charge

    settled = dict(Charge.objects.filter(pk__in=list(sent)).values_list("pk", "settled_at"))
    latencies = [settled[cid].timestamp() - t for cid, t in sent.items() if settled.get(cid) is not None]
    summary = _summary(raw)
    result["settle"] = {
        "rate": round(rate, 1),
        "accepted": summary["accepted"],
        "errors": summary["errors"],
        "submit_latency_ms": summary["latency_ms"],
        "latency_ms": percentiles(latencies),
    }
    _check(seller_ids, funding)
    result["limits"] = limits
    if limits:
        result["ratio_to_limit"] = round(
            result[f"c{sizes.http_clients[0]}"]["accepted_per_s"] / limits[0]["rows_per_s"], 3
        )
    result["audit"] = "ok"
    return result


def _shard_task_growth(workers, start: float, end: float, window: float = 5.0) -> dict:
    """Median run time of the `ledger.settle_shard` tasks that started in the first and in the
    last `window` seconds of [start, end], from Celery's JSON log line for each ("succeeded in",
    with its run time). Around 1-2 when settling keeps its pace; far more when each settle reads
    more than the one before, as when plans cached while the tables looked empty made every
    settle read every charge inserted so far (docs/performance.md)."""
    first, last = [], []
    for worker in workers:
        for line in worker.log_path.read_text(errors="replace").splitlines():
            if '"ledger.settle_shard"' not in line or "succeeded in" not in line:
                continue
            try:
                record = json.loads(line)
                runtime = float(record["data"]["runtime"])
                finished = datetime.strptime(record["time"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            except (ValueError, KeyError, TypeError):
                continue
            started = finished - runtime
            if start <= started < start + window:
                first.append(runtime * 1000)
            elif end - window <= started < end:
                last.append(runtime * 1000)
    result = {
        "first_p50": round(statistics.median(first), 1) if first else None,
        "last_p50": round(statistics.median(last), 1) if last else None,
        "tasks": [len(first), len(last)],
    }
    result["growth"] = round(result["last_p50"] / result["first_p50"], 2) if first and last else None
    return result


def _check(seller_ids: list[int], funding: int) -> None:
    from django.db.models import Count, Sum

    from ledger.models import Account, Charge

    statuses = dict(Charge.objects.filter(seller_id__in=seller_ids).values_list("status").annotate(n=Count("id")))
    if set(statuses) - {Charge.Status.SUCCEEDED}:
        raise ScenarioFailed(f"HTTP: every charge should have succeeded, got {statuses}")
    charged = Charge.objects.filter(seller_id__in=seller_ids).aggregate(s=Sum("amount"))["s"] or 0
    balances = Account.objects.filter(seller_id__in=seller_ids).aggregate(s=Sum("balance"))["s"]
    if balances != funding * len(seller_ids) - charged:
        raise ScenarioFailed(f"HTTP: balances sum to {balances}, expected {funding * len(seller_ids) - charged}")
    check_audit(what="HTTP submission")
