"""Scenario 2: 1,000 sellers x 100 queued charges, one wake-up each, reserved by all the shard
workers. Measured from the first publish to the moment no charge is left unreserved, with the
fulfilment worker stopped (as in scenario 1); then every charge must end succeeded through the
sandbox provider (not timed)."""

from __future__ import annotations

import contextlib
import time

from bench import seed
from bench.profiling import Profile
from bench.scenarios import Context, ScenarioFailed, check_audit
from bench.stack import Usage, reset_ledger

AMOUNT = 1_000


def _anything_queued() -> bool:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT EXISTS (SELECT 1 FROM ledger_charge WHERE stage = 'queued')")
        return cur.fetchone()[0]


def run(ctx: Context) -> dict:
    sellers, per_seller = ctx.sizes.many_sellers, ctx.sizes.many_per_seller
    n = sellers * per_seller
    processes = len(ctx.stack.workers)
    limits = []
    if ctx.limits is not None:
        limits = [
            ctx.limits.debits(
                name=f"{per_seller} debits per transaction, {sellers} rows, {processes} connections",
                debits_per_txn=per_seller,
                sellers=sellers,
                transactions=sellers,
                clients=processes,
            ),
        ]

    reset_ledger()
    seller_ids = seed.make_sellers(sellers, prefix="many")
    funding = per_seller * AMOUNT + 1_000_000
    seed.fund(seller_ids, funding)
    copy_seconds = seed.queue_charges(seller_ids, per_seller=per_seller, amount=AMOUNT)

    from workers.dispatch import wake_seller

    ctx.stack.pause_fulfilment()
    profile = (
        Profile(ctx.stack.workers[0].popen.pid, ctx.out_dir / "profiles" / "many_sellers.raw.txt")
        if ctx.profile
        else None
    )
    with Usage(ctx.stack.worker_pids()) as memory, profile or contextlib.nullcontext():
        started = time.time()
        for seller_id in seller_ids:
            wake_seller(seller_id)
        published = time.time()
        finished = seed.wait_until_settled(_anything_queued, timeout=ctx.sizes.settle_timeout, interval=0.05)
    seconds = finished - started
    ctx.stack.resume_fulfilment()
    fulfilled = seed.wait_until_settled(seed.any_open, timeout=ctx.sizes.fulfil_timeout, interval=0.1)

    _check(seller_ids, n, per_seller, funding)
    empty = _empty_tasks(ctx, count=sellers)
    rate = n / seconds
    result = {
        "sellers": sellers,
        "charges": n,
        "seconds": round(seconds, 3),
        "publish_seconds": round(published - started, 3),
        "charges_per_s": round(rate),
        "measures": "reservations",
        "fulfilled_after_seconds": round(fulfilled - finished, 1),
        "worker_processes": processes,
        "copy_seconds": round(copy_seconds, 2),
        "worker_peak_rss_mb": memory.peaks_mb(),
        "worker_cpu_seconds": memory.cpu_seconds(),
        "worker_cpu_us_per_charge": round(memory.cpu_seconds() / n * 1e6, 1),
        "empty_tasks": empty,
        **({"profile": profile.summary()} if profile and profile.summary() else {}),
        "limits": limits,
        "audit": "ok",
    }
    if limits:
        result["ratio_to_limit"] = round(rate / limits[0]["rows_per_s"], 3)
    return result


def _empty_tasks(ctx: Context, *, count: int) -> dict:
    """The same number of wake-ups for sellers that do not exist: each task takes its lock query
    and finds nothing. What is left is Celery's and Django's cost per task, the floor under
    scenario 2's time whatever the posting code does."""
    from bench.stack import broker_backlog
    from workers.dispatch import wake_seller

    first = 10_000_000
    with Usage(ctx.stack.worker_pids()) as usage:
        started = time.time()
        for seller_id in range(first, first + count):
            wake_seller(seller_id)
        finished = seed.wait_until_settled(
            lambda: broker_backlog() > 0, timeout=ctx.sizes.settle_timeout, interval=0.05
        )
    seconds = finished - started
    return {
        "tasks": count,
        "seconds": round(seconds, 3),
        "tasks_per_s": round(count / seconds),
        "worker_cpu_ms_per_task": round(usage.cpu_seconds() / count * 1000, 2),
    }


def _check(seller_ids: list[int], n: int, per_seller: int, funding: int) -> None:
    from django.db.models import Count

    from ledger.models import Account, Charge

    succeeded = Charge.objects.filter(status=Charge.Status.SUCCEEDED).count()
    wrong = Account.objects.filter(seller_id__in=seller_ids).exclude(balance=funding - per_seller * AMOUNT).count()
    statuses = dict(Charge.objects.values_list("status").annotate(n=Count("id")))
    if succeeded != n or wrong:
        raise ScenarioFailed(
            f"many sellers: {statuses} (expected {n} succeeded), {wrong} accounts with a wrong balance"
        )
    check_audit(what="many sellers")
