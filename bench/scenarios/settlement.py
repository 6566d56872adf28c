"""Scenarios `hot_seller` and `many_sellers` (docs/performance.md, *What is measured*): queued
charges reserved by the shard workers, from the first wake-up's publish until the poller sees no
unreserved charge left (Celery's delivery and every commit included), with the fulfilment worker
stopped so that the settle is measured alone. Then, untimed (the `fulfilment` scenario measures
it), every charge must end succeeded through the provider with a clean audit. `many_sellers` then
times as many wake-ups for sellers that do not exist: the floor under its time."""

from __future__ import annotations

import time

from django.conf import settings

from bench import seed
from bench.profiling import profiled
from bench.scenarios import Context, check_settled
from bench.stack import Usage, broker_backlog, reset_ledger

AMOUNT = 1_000


def hot_seller(ctx: Context) -> dict:
    n, batch = ctx.sizes.hot_charges, settings.LEDGER_SETTLE_BATCH_SIZE
    runs = [("one debit", 1, ctx.sizes.limit_single_txns), ("100 debits", 100, max(1, n // 100))]
    runs.append((f"{batch} debits", batch, max(2, n // batch)))
    limits = [
        ctx.limits.debits(name=f"{what} per transaction, one row", debits_per_txn=d, sellers=1, transactions=t)
        for what, d, t in (runs if ctx.limits else [])
    ]
    [seller_id], copy_seconds = _prepare(sellers=1, per_seller=n, prefix="hot")
    worker = ctx.stack.worker_for_seller(seller_id)
    result = _reserve_and_fulfil(ctx, [seller_id], n, copy_seconds, profile_pid=worker.popen.pid, name="hot_seller")
    result.update(batch_size=batch, worker=worker.name, limits=limits)
    if limits:
        result["ratio_to_limit"] = round(result["charges_per_s"] / limits[-1]["rows_per_s"], 3)
        result["times_one_debit_per_txn"] = round(result["charges_per_s"] / limits[0]["rows_per_s"], 1)
    return result


def many_sellers(ctx: Context) -> dict:
    sellers, per_seller, processes = ctx.sizes.many_sellers, ctx.sizes.many_per_seller, len(ctx.stack.workers)
    limits = []
    if ctx.limits:
        limits.append(
            ctx.limits.debits(
                name=f"{per_seller} debits per transaction, {sellers} rows, {processes} connections",
                debits_per_txn=per_seller,
                sellers=sellers,
                transactions=sellers,
                clients=processes,
            )
        )
    seller_ids, copy_seconds = _prepare(sellers=sellers, per_seller=per_seller, prefix="many")
    profile_pid = ctx.stack.workers[0].popen.pid
    result = _reserve_and_fulfil(
        ctx, seller_ids, sellers * per_seller, copy_seconds, profile_pid=profile_pid, name="many_sellers"
    )
    result.update(sellers=sellers, worker_processes=processes, empty_tasks=_empty_tasks(ctx, count=sellers))
    result["limits"] = limits
    if limits:
        result["ratio_to_limit"] = round(result["charges_per_s"] / limits[0]["rows_per_s"], 3)
    return result


def _prepare(*, sellers: int, per_seller: int, prefix: str) -> tuple[list[int], float]:
    """Funded sellers (1,000,000 left once their charges succeed) and their queued charges; the
    seconds their COPY took."""
    reset_ledger()
    seller_ids = seed.make_sellers(sellers, prefix=prefix)
    seed.fund(seller_ids, per_seller * AMOUNT + 1_000_000)
    return seller_ids, seed.queue_charges(seller_ids, per_seller=per_seller, amount=AMOUNT)


def _reserve_and_fulfil(
    ctx: Context, seller_ids: list[int], n: int, copy_seconds: float, *, profile_pid: int, name: str
) -> dict:
    from workers.dispatch import wake_seller

    result: dict = {}
    with ctx.stack.paused(ctx.stack.fulfil), Usage(ctx.stack.worker_pids()) as usage:
        with profiled(ctx, name, profile_pid, into=result):
            started = time.time()
            for seller_id in seller_ids:
                wake_seller(seller_id)
            published = time.time()
            finished = seed.wait_until_settled(
                lambda: seed.unsettled(seller_ids, reserved=True), timeout=ctx.sizes.settle_timeout
            )
    fulfilled = seed.wait_until_settled(
        lambda: seed.unsettled(seller_ids), timeout=ctx.sizes.fulfil_timeout, interval=0.1
    )
    check_settled(name.replace("_", " "), "seller_id = ANY(%s)", [seller_ids], charges=n)
    seconds = finished - started
    return result | {
        "charges": n,
        "seconds": round(seconds, 3),
        "publish_seconds": round(published - started, 3),
        # Reservations: what the settle does to a queued charge now (the fulfilment scenario
        # measures the provider's side). The key keeps its name for the report and its history.
        "charges_per_s": round(n / seconds),
        "measures": "reservations",
        "fulfilled_after_seconds": round(fulfilled - finished, 1),
        "copy_seconds": round(copy_seconds, 2),
        "worker_peak_rss_mb": usage.peaks_mb(),
        "worker_cpu_seconds": usage.cpu_seconds(),
        "worker_cpu_us_per_charge": round(usage.cpu_seconds() / n * 1e6, 1),
        "audit": "ok",
    }


def _empty_tasks(ctx: Context, *, count: int) -> dict:
    """The same number of wake-ups for sellers that do not exist: each task takes its lock query
    and finds nothing. What is left is Celery's and Django's cost per task, the floor under
    scenario 2's time whatever the posting code does."""
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
