"""Scenario 1: 100,000 queued charges of one seller, one wake-up, reserved by the one shard worker
that owns the seller (the settle holds each charge's credit; the provider's answers come later).
Measured from the wake-up's publish to the moment the poller sees no unreserved charge left (so it
includes Celery's delivery and every commit), with the fulfilment worker stopped so the settle is
measured alone. Then the fulfilment worker sends them to the sandbox provider, the settle posts the
holds, and every charge must end succeeded (not timed: the `fulfilment` scenario measures that)."""

from __future__ import annotations

import time

from django.conf import settings

from bench import seed
from bench.profiling import Profile
from bench.scenarios import Context, ScenarioFailed, check_audit
from bench.stack import Usage, reset_ledger

AMOUNT = 1_000


def run(ctx: Context) -> dict:
    n = ctx.sizes.hot_charges
    batch = settings.LEDGER_SETTLE_BATCH_SIZE
    limits = []
    if ctx.limits is not None:
        limits = [
            ctx.limits.debits(
                name="one debit per transaction, one row",
                debits_per_txn=1,
                sellers=1,
                transactions=ctx.sizes.limit_single_txns,
            ),
            ctx.limits.debits(
                name="100 debits per transaction, one row", debits_per_txn=100, sellers=1, transactions=max(1, n // 100)
            ),
            ctx.limits.debits(
                name=f"{batch} debits per transaction, one row",
                debits_per_txn=batch,
                sellers=1,
                transactions=max(2, n // batch),
            ),
        ]

    reset_ledger()
    [seller_id] = seed.make_sellers(1, prefix="hot")
    funding = n * AMOUNT + 1_000_000
    seed.fund([seller_id], funding)
    copy_seconds = seed.queue_charges([seller_id], per_seller=n, amount=AMOUNT)

    from workers.dispatch import wake_seller

    ctx.stack.pause_fulfilment()
    worker = ctx.stack.worker_for_seller(seller_id)
    profile = Profile(worker.popen.pid, ctx.out_dir / "profiles" / "hot_seller.raw.txt") if ctx.profile else None
    with Usage(ctx.stack.worker_pids()) as memory:
        if profile:
            profile.__enter__()
        started = time.time()
        wake_seller(seller_id)
        finished = seed.wait_until_settled(lambda: seed.any_queued(seller_id), timeout=ctx.sizes.settle_timeout)
        if profile:
            profile.__exit__(None, None, None)
    seconds = finished - started
    ctx.stack.resume_fulfilment()
    fulfilled = seed.wait_until_settled(lambda: seed.any_open([seller_id]), timeout=ctx.sizes.fulfil_timeout)

    _check(seller_id, n, funding)
    rate = n / seconds
    result = {
        "charges": n,
        "seconds": round(seconds, 3),
        # Reservations: what the settle does to a queued charge now (the fulfilment scenario
        # measures the provider's side). The key keeps its name for the report and its history.
        "charges_per_s": round(rate),
        "measures": "reservations",
        "fulfilled_after_seconds": round(fulfilled - finished, 1),
        "batch_size": batch,
        "copy_seconds": round(copy_seconds, 2),
        "worker": worker.name,
        "worker_peak_rss_mb": memory.peaks_mb(),
        "worker_cpu_seconds": memory.cpu_seconds(),
        "worker_cpu_us_per_charge": round(memory.cpu_seconds() / n * 1e6, 1),
        "limits": limits,
        "audit": "ok",
    }
    if limits:
        result["ratio_to_limit"] = round(rate / limits[-1]["rows_per_s"], 3)
        result["times_one_debit_per_txn"] = round(rate / limits[0]["rows_per_s"], 1)
    if profile and profile.summary():
        result["profile"] = profile.summary()
    return result


def _check(seller_id: int, n: int, funding: int) -> None:
    from ledger.models import Account, Charge, Entry

    succeeded = Charge.objects.filter(seller_id=seller_id, status=Charge.Status.SUCCEEDED).count()
    balance = Account.objects.get(seller_id=seller_id).balance
    entries = Entry.objects.filter(seller_id=seller_id).count()
    if succeeded != n or balance != funding - n * AMOUNT or entries != n + 1:
        raise ScenarioFailed(
            f"hot seller: {succeeded}/{n} succeeded, balance {balance} (expected {funding - n * AMOUNT}), "
            f"{entries} entries (expected {n + 1})"
        )
    check_audit(what="hot seller")
