"""The fulfilment scenario: charges delivered through the provider, with the sandbox answering after
`--provider-latency-ms` (50 ms by default), in three parts:

a. the sandbox alone: closed loops of fresh `POST /v1/transactions` from the load generator, at
   PROVIDER_CONCURRENCY clients (the fulfilment worker's own concurrency: the denominator of every
   ratio) and at four times that (what the sandbox serves when latency does not bound it);
b. a 100,000-row import delivered end to end: uploaded over HTTP, reserved by the shard workers,
   sent by the fulfilment worker, posted by the shard workers; from the batch's first
   `reserved_at` to its last `settled_at`, with the CPU each process used meanwhile;
c. single charges POSTed over HTTP at a fixed rate (half of b's, at most 500/s): `settled_at -
   created_at` percentiles of those charges, read from the database.
Every charge must end succeeded and the audit clean."""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path

import psutil
from django.conf import settings
from django.db import connection

from bench import seed
from bench.profiling import Profile
from bench.scenarios import Context, ScenarioFailed, check_audit
from bench.scenarios.batch_import import AMOUNT, _funded_seller, _upload_or_fail, _wait_status, generate
from bench.scenarios.http import _load, percentiles
from bench.stack import Usage, reset_ledger

SINGLE_RATE_MAX = 500.0


def run(ctx: Context) -> dict:
    reset_ledger()
    sandbox = ctx.stack.provider
    sandbox.configure(latency_ms=ctx.provider_latency_ms)
    if not ctx.stack.web.alive:
        ctx.stack.start_web()
    result: dict = {"provider_latency_ms": ctx.provider_latency_ms}
    try:
        result["sandbox"] = _sandbox_alone(ctx)
        denominator = result["sandbox"][f"c{settings.PROVIDER_CONCURRENCY}"]["requests_per_s"]
        result["import"] = _import(ctx)
        result["import"]["ratio_to_sandbox"] = round(result["import"]["charges_per_s"] / denominator, 3)
        rate = min(result["import"]["charges_per_s"] / 2, SINGLE_RATE_MAX)
        result["single"] = _single(ctx, rate)
        result["single"]["ratio_to_sandbox"] = round(result["single"]["achieved_per_s"] / denominator, 3)
    except ScenarioFailed as exc:
        raise ScenarioFailed(str(exc), partial={**exc.partial, **result}) from exc
    finally:
        ctx.stack.stop_web()
    result["sandbox_stats"] = sandbox.stats()
    result["audit"] = "ok"
    return result


def _sandbox_alone(ctx: Context) -> dict:
    out = {}
    for clients in (settings.PROVIDER_CONCURRENCY, 4 * settings.PROVIDER_CONCURRENCY):
        cpu = Usage(children=True, pids={"provider": ctx.stack.provider.process.popen.pid})
        raw = _load(
            ctx,
            [],
            clients=clients,
            seconds=ctx.sizes.sandbox_seconds,
            name=f"sandbox-c{clients}",
            port=ctx.stack.provider.port,
            path="/v1/transactions",
            external_id_prefix=f"bench-c{clients}-",
        )
        used = cpu.stop()
        rows, seconds = raw["requests"], raw["ended"] - raw["started"]
        created = sum(1 for r in rows if r[2] == 201)
        out[f"c{clients}"] = {
            "clients": clients,
            "requests": len(rows),
            "errors": {str(s): sum(1 for r in rows if r[2] == s) for s in {r[2] for r in rows} - {201}},
            "seconds": round(seconds, 2),
            "requests_per_s": round(created / seconds, 1),
            "latency_ms": percentiles([r[1] for r in rows]),
            "sandbox_cpu_share": round(used["provider"] / seconds, 2),
            **_load_average(),
        }
    return out


def _import(ctx: Context) -> dict:
    """The file uploaded as in scenario 4, every row valid; CPU measured from the batch `queued`
    (its rows committed, the settles reserving) to `completed`, the window of the fulfilment."""
    rows = ctx.sizes.fulfil_rows
    stack = ctx.stack
    with tempfile.TemporaryDirectory(prefix="bench-fulfil-") as tmp:
        path = Path(tmp) / f"charges-{rows}.csv"
        valid = generate(path, rows, seed=6, invalid_every=0)
        token = _funded_seller("fulfil", valid * AMOUNT)
        started = time.monotonic()
        batch_id = _upload_or_fail(ctx, token, path, rows, started)
    processes = {
        "fulfil": stack.fulfil.popen.pid,
        "provider": stack.provider.process.popen.pid,
        **stack.worker_pids(),
        "imports": stack.imports.popen.pid,
    }
    _wait_status(batch_id, {"queued", "completed"}, ctx.sizes.fulfil_timeout)
    queued = time.monotonic()
    cpu = Usage(children=True, pids=processes, database=True)
    fulfil_tasks_before = _fulfil_tasks(stack)
    profile = Profile(stack.fulfil.popen.pid, ctx.out_dir / "profiles" / "fulfil.raw.txt") if ctx.profile else None
    with profile or contextlib.nullcontext():
        done = _wait_status(batch_id, {"completed"}, ctx.sizes.fulfil_timeout)
    used = cpu.stop()
    window = done - queued

    with connection.cursor() as cur:
        cur.execute(
            """SELECT count(*) FILTER (WHERE status = 'succeeded'), count(*),
                   extract(epoch FROM max(settled_at) - min(reserved_at))
             FROM ledger_charge WHERE batch_id = %s""",
            [batch_id],
        )
        succeeded, charges, seconds = cur.fetchone()
    if not succeeded == charges == valid:
        raise ScenarioFailed(f"fulfilment: {succeeded} of {charges} charges succeeded ({valid} rows)")
    check_audit(what="fulfilment (import)")
    seconds = float(seconds)
    return {
        "rows": rows,
        "charges": charges,
        "seconds": round(seconds, 2),
        "charges_per_s": round(charges / seconds),
        "upload_to_completed_seconds": round(done - started, 2),
        "fulfil_cpu_us_per_charge": round(used["fulfil"] / charges * 1e6, 1),
        "fulfil_tasks": _fulfil_tasks(stack) - fulfil_tasks_before,
        # CPU seconds per wall second from `queued` to `completed` (1.0: one core all the time).
        "cpu_share": {name: round(value / window, 2) for name, value in used.items()},
        "stages_ms": _stages("batch_id = %s", [batch_id]),
        **({"profile": profile.summary()} if profile and profile.summary() else {}),
        **_load_average(),
    }


def _single(ctx: Context, rate: float) -> dict:
    sellers = seed.make_sellers(ctx.sizes.http_sellers, prefix="fulfil-single")
    seed.fund(sellers, 10**12)
    # Enough threads that each has time for a slow answer before its next request is due.
    clients = ctx.sizes.http_clients[-1]
    stack = ctx.stack
    cpu = Usage(
        children=True,
        pids={"web": stack.web_pid(), "fulfil": stack.fulfil.popen.pid, **stack.worker_pids()},
        database=True,
    )
    raw = _load(ctx, sellers, clients=clients, seconds=ctx.sizes.single_seconds, rate=rate, name="fulfil-single")
    used = cpu.stop()
    seed.wait_until_settled(lambda: seed.unsettled(sellers), timeout=ctx.sizes.fulfil_timeout, interval=0.1)
    rows = raw["requests"]
    accepted = [r[3] for r in rows if r[2] == 202]
    with connection.cursor() as cur:
        cur.execute(
            """SELECT status, extract(epoch FROM settled_at - created_at) FROM ledger_charge
             WHERE seller_id = ANY(%s) AND id = ANY(%s)""",
            [sellers, accepted],
        )
        found = cur.fetchall()
    statuses = {status for status, _ in found}
    if len(found) != len(accepted) or statuses - {"succeeded"}:
        raise ScenarioFailed(f"fulfilment: {len(found)} of {len(accepted)} single charges found, statuses {statuses}")
    check_audit(what="fulfilment (single charges)")
    seconds = raw["ended"] - raw["started"]
    return {
        "rate": round(rate, 1),
        "clients": clients,
        "accepted": len(accepted),
        "errors": {str(s): sum(1 for r in rows if r[2] == s) for s in {r[2] for r in rows} - {202}},
        "achieved_per_s": round(len(accepted) / seconds, 1),
        "submit_latency_ms": percentiles([r[1] for r in rows]),
        "latency_ms": percentiles([float(latency) for _, latency in found]),
        "cpu_share": {name: round(value / seconds, 2) for name, value in used.items()},
        "stages_ms": _stages("seller_id = ANY(%s) AND id = ANY(%s)", [sellers, accepted]),
        **_load_average(),
    }


STAGES = {
    "created_to_reserved": "reserved_at - created_at",
    "reserved_to_submitted": "submitted_at - reserved_at",
    "submitted_to_answer": "outcome_at - submitted_at",
    "answer_to_settled": "settled_at - outcome_at",
}


def _stages(where: str, params: list) -> dict:
    """p50/p95/p99 (ms) of each hop of the charges' lifecycle: where the time to final goes."""
    columns = ", ".join(
        f"percentile_cont(array[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM {span}))"
        for span in STAGES.values()
    )
    with connection.cursor() as cur:
        cur.execute(f"SELECT {columns} FROM ledger_charge WHERE {where}", params)
        row = cur.fetchone()
    return {
        name: dict(zip(("p50", "p95", "p99"), (round(v * 1000, 1) for v in values), strict=True))
        for name, values in zip(STAGES, row, strict=True)
        if values is not None
    }


def _fulfil_tasks(stack) -> int:
    """`ledger.fulfil` tasks the fulfilment worker has run (from its log): the reconciler's
    resends of charges still waiting show up as more tasks than PROVIDER_BATCH-sized batches."""
    count = 0
    for line in stack.fulfil.log_path.read_text(errors="replace").splitlines():
        if '"ledger.fulfil"' in line and "succeeded in" in line:
            count += 1
    return count


def _load_average() -> dict:
    return {"load_average": [round(x, 2) for x in psutil.getloadavg()]}
