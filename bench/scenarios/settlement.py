"""Scenarios `hot_seller` and `many_sellers` (docs/performance.md): queued charges reserved by the
shard workers, from the first wake-up's publish until no unreserved charge is left, the fulfilment
worker stopped so that the settle is measured alone; then, untimed, every charge must end succeeded
through the provider with a clean audit. `many_sellers` then times as many wake-ups for sellers
that do not exist: the floor under its time."""

from __future__ import annotations

import time

from django.conf import settings
from django.utils import timezone

from bench import seed
from bench.profiling import profiled
from bench.scenarios import Context, check_settled
from bench.stack import Usage, broker_backlog, reset_ledger

AMOUNT = 1_000


def hot_seller(ctx: Context) -> dict:
    n, batch, limits = ctx.sizes.hot_charges, settings.LEDGER_SETTLE_BATCH_SIZE, []
    runs = [("one debit", 1, ctx.sizes.limit_single_txns, True), ("100 debits", 100, max(1, n // 100), True)]
    # At the settle's batch size with and without the hash step, the database's side of hashing:
    # each twice, in turn, the better run the limit (the machine's other work moves any one run).
    runs += [(f"{batch} debits", batch, max(2, n // batch), hashed) for hashed in (True, False) * 2]
    for what, debits, txns, hashed in runs if ctx.limits else []:
        name = f"{what} per transaction, one row{'' if hashed else ', no hash'}"
        limits.append(ctx.limits.debits(name=name, debits_per_txn=debits, sellers=1, transactions=txns, hashed=hashed))
    [seller_id], copy_seconds = _prepare(sellers=1, per_seller=n, prefix="hot")
    worker = ctx.stack.worker_for_seller(seller_id)
    result = _reserve_and_fulfil(ctx, [seller_id], n, copy_seconds, profile_pid=worker.popen.pid, name="hot_seller")
    result.update(batch_size=batch, worker=worker.name, limits=limits, hash_us_per_entry=_hash_cost(batch))
    # The worker's share of a core spent hashing while it drained the seller.
    result["hashing_share"] = round(result["hash_us_per_entry"] * result["charges_per_s"] / 1e6, 3)
    if limits:
        hashed, unhashed = (max(limits[k::2], key=lambda run: run["rows_per_s"]) for k in (2, 3))
        result["ratio_to_limit"] = round(result["charges_per_s"] / hashed["rows_per_s"], 3)
        result["ratio_to_unhashed_limit"] = round(result["charges_per_s"] / unhashed["rows_per_s"], 3)
        result["times_one_debit_per_txn"] = round(result["charges_per_s"] / limits[0]["rows_per_s"], 1)
        # Without hashing, estimated: the drain's time less the worker's hashing (serial, under the
        # lock) and the database's share per entry (the difference of the two limits, if any).
        saved = n * (result["hash_us_per_entry"] / 1e6 + max(0, 1 / hashed["rows_per_s"] - 1 / unhashed["rows_per_s"]))
        result["unhashed_estimate_per_s"] = round(n / (result["seconds"] - saved))
    return result


def _hash_cost(batch: int) -> float:
    """Worker µs per entry of the settle's hashing (`entry_hashes`) over a batch of charge entries."""
    from ledger.statements.chain import GENESIS, entry_hashes

    rows = [(1, seq, "charge", -AMOUNT, 10**9 - seq * AMOUNT, 10**7 + seq, None) for seq in range(batch)]
    began = time.perf_counter()
    for _ in range(5):
        entry_hashes(GENESIS, rows, timezone.now())
    return round((time.perf_counter() - began) / (5 * batch) * 1e6, 2)


def many_sellers(ctx: Context) -> dict:
    sellers, per_seller, processes = ctx.sizes.many_sellers, ctx.sizes.many_per_seller, len(ctx.stack.workers)
    name = f"{per_seller} debits per transaction, {sellers} rows, {processes} connections"
    spec = {"debits_per_txn": per_seller, "sellers": sellers, "transactions": sellers, "clients": processes}
    limits = [ctx.limits.debits(name=name, **spec)] if ctx.limits else []
    seller_ids, copy_seconds = _prepare(sellers=sellers, per_seller=per_seller, prefix="many")
    pid = ctx.stack.workers[0].popen.pid
    result = _reserve_and_fulfil(
        ctx, seller_ids, sellers * per_seller, copy_seconds, profile_pid=pid, name="many_sellers"
    )
    result.update(
        sellers=sellers, worker_processes=processes, empty_tasks=_empty_tasks(ctx, count=sellers), limits=limits
    )
    if limits:
        result["ratio_to_limit"] = round(result["charges_per_s"] / limits[0]["rows_per_s"], 3)
    return result  # fmt: skip


def _prepare(*, sellers: int, per_seller: int, prefix: str) -> tuple[list[int], float]:
    """Funded sellers (1,000,000 left once their charges succeed), their queued charges; the COPY's seconds."""
    reset_ledger()
    seller_ids = seed.make_sellers(sellers, prefix=prefix)
    seed.fund(seller_ids, per_seller * AMOUNT + 1_000_000)
    return seller_ids, seed.queue_charges(seller_ids, per_seller=per_seller, amount=AMOUNT)


def _reserve_and_fulfil(ctx: Context, seller_ids: list[int], n: int, copy_seconds: float, *, profile_pid, name) -> dict:
    from workers.dispatch import wake_seller

    result: dict = {}
    with ctx.stack.paused(ctx.stack.fulfil), Usage(ctx.stack.worker_pids()) as usage:
        with profiled(ctx, name, profile_pid, into=result):
            started = time.time()
            for seller_id in seller_ids:
                wake_seller(seller_id)
            published = time.time()
            reserved = lambda: seed.unsettled(seller_ids, reserved=True)  # noqa: E731
            finished = seed.wait_until_settled(reserved, timeout=ctx.sizes.settle_timeout)
    fulfilled = seed.wait_until_settled(
        lambda: seed.unsettled(seller_ids), timeout=ctx.sizes.fulfil_timeout, interval=0.1
    )
    check_settled(name.replace("_", " "), "seller_id = ANY(%s)", [seller_ids], charges=n)
    seconds, cpu = finished - started, usage.cpu_seconds()
    # `charges_per_s`: reservations (the fulfilment scenario measures the provider's side).
    return result | {
        "charges": n, "seconds": round(seconds, 3), "publish_seconds": round(published - started, 3),
        "charges_per_s": round(n / seconds), "measures": "reservations",
        "fulfilled_after_seconds": round(fulfilled - finished, 1), "copy_seconds": round(copy_seconds, 2),
        "worker_peak_rss_mb": usage.peaks_mb(), "worker_cpu_seconds": cpu,
        "worker_cpu_us_per_charge": round(cpu / n * 1e6, 1), "audit": "ok",
    }  # fmt: skip


def _empty_tasks(ctx: Context, *, count: int) -> dict:
    """As many wake-ups for sellers that do not exist: each task's lock query finds nothing, what is
    left is Celery's and Django's cost per task, the floor under `many_sellers` whatever the posting
    does."""
    from workers.dispatch import wake_seller

    with Usage(ctx.stack.worker_pids()) as usage:
        started = time.time()
        for seller_id in range(10_000_000, 10_000_000 + count):
            wake_seller(seller_id)
        seconds = seed.wait_until_settled(lambda: broker_backlog() > 0, timeout=ctx.sizes.settle_timeout) - started
    return {"tasks": count, "seconds": round(seconds, 3), "tasks_per_s": round(count / seconds),
            "worker_cpu_ms_per_task": round(usage.cpu_seconds() / count * 1000, 2)}  # fmt: skip
