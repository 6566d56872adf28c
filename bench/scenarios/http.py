"""Scenario `http` (docs/performance.md): single-charge POSTs to gunicorn, JWT-authenticated, the
shard workers settling meanwhile. Closed loops at each number of clients; an open loop at half the
first one's rate, timed from the send to the charge's `settled_at`; the shard tasks' run time in the
first and last seconds of the closed loops (`shard_task_ms`: each settle slower than the last?)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

from bench import seed
from bench.profiling import profiled
from bench.scenarios import Context, check_settled
from bench.scenarios.http_load import percentiles, summarize, wrk_closed_loop
from bench.stack import ROOT_DIR, Usage, reset_ledger, task_runs

AMOUNT = 1_000


def _load(
    ctx: Context, seller_ids: list[int], *, clients: int, seconds: float, rate: float = 0.0, name: str, **target
) -> dict:
    """The load generator's raw rows; `target` overrides its spec (another `port`, `path`, ...)."""
    spec = {"host": "127.0.0.1", "port": ctx.stack.port, "tokens": seed.tokens(seller_ids), "clients": clients,
            "seconds": seconds, "rate": rate, "phone_number": seed.PHONE, "amount": AMOUNT, **target}  # fmt: skip
    spec_path = ctx.stack.log_dir / f"http-{name}.spec.json"
    out_path = ctx.stack.log_dir / f"http-{name}.out.json"
    spec_path.write_text(json.dumps(spec))
    argv = [sys.executable, "-m", "bench.scenarios.http_load", str(spec_path), str(out_path)]
    subprocess.run(argv, cwd=ROOT_DIR, check=True, timeout=seconds + 300)
    return json.loads(out_path.read_text())


def _closed_loop(ctx: Context, seller_ids: list[int], *, clients: int, seconds: float, name: str) -> dict:
    """A closed loop's summary (see `summarize`), from wrk or from the Python generator."""
    if ctx.load_generator != "wrk":
        return summarize(_load(ctx, seller_ids, clients=clients, seconds=seconds, name=name))
    body = {"phone_number": seed.PHONE, "amount": AMOUNT}
    return wrk_closed_loop(
        port=ctx.stack.port, tokens=seed.tokens(seller_ids), clients=clients, seconds=seconds, body=body
    )


def run(ctx: Context) -> dict:
    sizes = ctx.sizes
    limits, web_workers = [], ctx.stack.web_workers
    if ctx.limits:
        name = f"one queued-charge insert per transaction, {web_workers} connections"
        limits.append(ctx.limits.submits(name=name, clients=web_workers, transactions=200 if ctx.smoke else 8000))

    reset_ledger()
    seller_ids = seed.make_sellers(sizes.http_sellers, prefix="http")
    # Enough for every charge the scenario could submit, so every one of them must succeed.
    seed.fund(seller_ids, 10**12)
    ctx.stack.start_web()
    result: dict = {"sellers": len(seller_ids), "web_workers": ctx.stack.web_workers}
    # The web server stays up for the batch import; the run stops it at the end.
    with Usage({"web": ctx.stack.web_pid()}, children=True) as memory:
        # Not recorded: every gunicorn worker loads its views, serializers and connections lazily.
        first, warmup = sizes.http_clients[0], min(2.0, sizes.http_seconds / 2)
        _closed_loop(ctx, seller_ids, clients=first, seconds=warmup, name="warmup")
        measured_from = time.time()
        for clients in sizes.http_clients:
            with profiled(ctx, "http_web" * (clients == first), ctx.stack.web_pid(), into=result, subprocesses=True):
                usage = Usage({"web": ctx.stack.web_pid()}, children=True)
                summary = _closed_loop(ctx, seller_ids, clients=clients, seconds=sizes.http_seconds, name=f"c{clients}")
                cpu = usage.stop()["web"]
            per_request = round(cpu / summary["accepted"] * 1000, 2) if summary["accepted"] else None
            result[f"c{clients}"] = summary | {"web_cpu_ms_per_request": per_request}
        closed_loops_ended = time.time()
        base = result[f"c{first}"]["accepted_per_s"]
        rate = max(1.0, base / 2)
        # Submit -> settled at half load, not behind the backlog the 128-client phase may leave.
        seed.wait_until_settled(lambda: seed.unsettled(seller_ids), timeout=sizes.settle_timeout, interval=0.1)
        raw = _load(ctx, seller_ids, clients=first, seconds=sizes.http_seconds, rate=rate, name="settle")
        sent = {r[3]: r[0] for r in raw["requests"] if r[2] == 202 and r[3] is not None}
        seed.wait_until_settled(lambda: seed.unsettled(seller_ids), timeout=sizes.settle_timeout, interval=0.1)
    result["web_peak_rss_mb"] = memory.peaks_mb()
    result["shard_task_ms"] = _shard_task_growth(ctx.stack.workers, measured_from, closed_loops_ended)

    from ledger.models import Charge

    settled = dict(Charge.objects.filter(pk__in=list(sent)).values_list("pk", "settled_at"))
    latencies = [settled[cid].timestamp() - t for cid, t in sent.items() if settled.get(cid) is not None]
    summary = summarize(raw)
    result["settle"] = {"rate": round(rate, 1), "accepted": summary["accepted"], "errors": summary["errors"],
                        "submit_latency_ms": summary["latency_ms"], "latency_ms": percentiles(latencies)}  # fmt: skip
    check_settled("HTTP submission", "seller_id = ANY(%s)", [seller_ids])
    if limits:
        result["ratio_to_limit"] = round(base / limits[0]["rows_per_s"], 3)
    return result | {"limits": limits, "audit": "ok"}


def _shard_task_growth(workers, start: float, end: float, window: float = 5.0) -> dict:
    """Median run time of the `ledger.settle_shard` tasks started in the first and in the last
    `window` seconds of [start, end]: far above 1-2 when each settle reads more than the last."""
    runs = [run for worker in workers for run in task_runs(worker, "ledger.settle_shard")]
    first = [runtime * 1000 for began, runtime in runs if start <= began < start + window]
    last = [runtime * 1000 for began, runtime in runs if end - window <= began < end]
    p50 = [round(statistics.median(runs), 1) if runs else None for runs in (first, last)]
    growth = round(p50[1] / p50[0], 2) if first and last else None
    return {"first_p50": p50[0], "last_p50": p50[1], "tasks": [len(first), len(last)], "growth": growth}
