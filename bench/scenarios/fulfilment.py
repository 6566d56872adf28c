"""Scenario `fulfilment` (docs/performance.md): charges delivered through the DT One adapter
(providers/dvs.py) to the sandbox, which answers after `--provider-latency-ms`: a. the sandbox alone
in the same dialect and request, closed loops at PROVIDER_CONCURRENCY clients (the denominator of
every ratio) and at four times that; b. an import delivered end to end; c. single charges POSTed at
half what the path sustains (the web's closed loop, b's rate, 1,000/s at most), from `created_at` to
`settled_at`; d. the same at c's rate with every answer by callback (DT One's asynchronous flow)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import psutil
from django.conf import settings
from django.db import connection

from bench import seed
from bench.profiling import profiled
from bench.scenarios import Context, ScenarioFailed, check_settled, cpu_per_charge, stages
from bench.scenarios.batch_import import import_file
from bench.scenarios.http import AMOUNT, _closed_loop, _load
from bench.scenarios.http_load import percentiles, summarize
from bench.stack import Usage, reset_ledger


def run(ctx: Context) -> dict:
    reset_ledger()
    sandbox = ctx.stack.provider
    sandbox.configure(latency_ms=ctx.provider_latency_ms)
    ctx.stack.start_web()
    result: dict = {"provider_latency_ms": ctx.provider_latency_ms}
    try:
        result["sandbox"] = _sandbox_alone(ctx)
        denominator = result["sandbox"][f"c{settings.PROVIDER_CONCURRENCY}"]["accepted_per_s"]
        with tempfile.TemporaryDirectory(prefix="bench-fulfil-") as tmp:
            delivered = import_file(ctx, Path(tmp), ctx.sizes.fulfil_rows, seed=6, invalid_every=0, profile="fulfil")
        ratio = round(delivered["charges_per_s"] / denominator, 3)
        result["import"] = delivered | _load_average() | {"ratio_to_sandbox": ratio}
        result["single"] = _single(ctx, delivered["charges_per_s"])
        result["single"]["ratio_to_sandbox"] = round(result["single"]["achieved_per_s"] / denominator, 3)
        result["by_callback"] = _by_callback(ctx, result["single"]["rate"])
    except ScenarioFailed as exc:
        raise ScenarioFailed(str(exc), partial={**exc.partial, **result}) from exc
    finally:
        ctx.stack.web.stop()
    result["sandbox_stats"] = sandbox.stats()
    result["audit"] = "ok"
    return result


def _sandbox_alone(ctx: Context) -> dict:
    from devstack.house_catalog import house_dvs_request, sandbox_dvs_headers

    out, path, body = {}, "/dvs/v1/async/transactions", house_dvs_request(seed.PHONE, AMOUNT)
    target = {"port": ctx.stack.provider.port, "path": path, "headers": sandbox_dvs_headers(), "provider_body": body}
    for clients in (settings.PROVIDER_CONCURRENCY, 4 * settings.PROVIDER_CONCURRENCY):
        cpu = Usage(children=True, pids={"provider": ctx.stack.provider.process.popen.pid})
        raw = _load(ctx, [], clients=clients, seconds=ctx.sizes.sandbox_seconds, name=f"sandbox-c{clients}",
                    external_id_prefix=f"bench-c{clients}-", **target)  # fmt: skip
        used, summary = cpu.stop(), summarize(raw, ok=201)  # a transaction created
        share = {"sandbox_cpu_share": round(used["provider"] / summary["seconds"], 2)}
        out[f"c{clients}"] = {"clients": clients, **summary, **share, **_load_average()}
    return out


def _single(ctx: Context, delivered_per_s: float) -> dict:
    sellers = seed.make_sellers(ctx.sizes.http_sellers, prefix="fulfil-single")
    seed.fund(sellers, 10**12)
    closed = _closed_loop(ctx, sellers, clients=ctx.sizes.http_clients[0], seconds=ctx.sizes.sandbox_seconds, name="f")
    seed.wait_until_settled(lambda: seed.unsettled(sellers), timeout=ctx.sizes.fulfil_timeout, interval=0.1)
    rate = max(1.0, min(closed["accepted_per_s"], delivered_per_s, 1_000) / 2)  # half what the path sustains
    return {"rate": round(rate, 1), "closed_loop_per_s": closed["accepted_per_s"]} | _open_loop(ctx, sellers, rate)


def _by_callback(ctx: Context, rate: float) -> dict:
    """d. single charges at c's rate, answered as DT One's asynchronous API answers as we read it
    (docs/provider.md): the create SUBMITTED, the final status POSTed to our callback URL one
    provider latency later, unsigned, so the fulfilment worker reads the transaction back."""
    sellers = seed.make_sellers(ctx.sizes.http_sellers, prefix="fulfil-callback")
    seed.fund(sellers, 10**12)
    sandbox, pending_seconds = ctx.stack.provider, ctx.provider_latency_ms / 1000
    with ctx.stack.callbacks_to_web():
        before = sandbox.configure()  # what it is, to put back
        sandbox.configure(pending_rate=1.0, pending_seconds=pending_seconds)
        try:
            measured = _open_loop(ctx, sellers, rate, label="fulfil-callback")
        finally:
            sandbox.configure(pending_rate=before["pending_rate"], pending_seconds=before["pending_seconds"])
    return {"rate": round(rate, 1), "pending_seconds": pending_seconds} | measured


def _open_loop(ctx: Context, sellers: list[int], rate: float, label: str = "fulfil-single") -> dict:
    """Single charges POSTed at `rate` for `single_seconds`, each timed from `created_at` to
    `settled_at`, with the server's CPU until the last is final."""
    clients = ctx.sizes.http_clients[-1]  # enough that each has time for a slow answer before its next is due
    pids = {"web": ctx.stack.web_pid(), "fulfil": ctx.stack.fulfil.popen.pid, **ctx.stack.worker_pids()}
    cpu, profile = Usage(pids, children=True, database=True), {}
    with profiled(ctx, label, pids["fulfil"], into=profile):
        raw = _load(ctx, sellers, clients=clients, seconds=ctx.sizes.single_seconds, rate=rate, name=label)
        seed.wait_until_settled(lambda: seed.unsettled(sellers), timeout=ctx.sizes.fulfil_timeout, interval=0.1)
        used = cpu.stop()  # once every charge is final: all the work of delivering them
    accepted = [r[3] for r in raw["requests"] if r[2] == 202]
    where = ("seller_id = ANY(%s) AND id = ANY(%s)", [sellers, accepted])
    check_settled(f"fulfilment ({label})", *where, charges=len(accepted))
    with connection.cursor() as cur:
        cur.execute(f"SELECT extract(epoch FROM settled_at - created_at) FROM ledger_charge WHERE {where[0]}", where[1])
        final = [float(seconds) for (seconds,) in cur.fetchall()]
    sent = summarize(raw)
    return {"clients": clients, "accepted": sent["accepted"], "errors": sent["errors"], "achieved_per_s": sent["accepted_per_s"],
            "submit_latency_ms": sent["latency_ms"], "latency_ms": percentiles(final), "stages_ms": stages(*where),
            **_load_average(), "cpu_share": {name: round(value / sent["seconds"], 2) for name, value in used.items()},
            "cpu_us_per_charge": cpu_per_charge(used, len(accepted)), **profile}  # fmt: skip


def _load_average() -> dict:
    return {"load_average": [round(x, 2) for x in psutil.getloadavg()]}
