"""Proposals for the hot path, measured end to end with real shard workers without editing the
ledger core (`ledger/posting.py` and `ledger/services/settlement.py` belong to its owner).

`BENCH_EXPERIMENT=fast-posting` (read by `bench/settings.py`) installs `FastPostingExperiment`,
which, once a worker is ready, points `workers.tasks.settle_seller` at `settle_seller_fast`
below: a copy of `settle_seller` + `settle_batch` with exactly two changes,

1. each list parameter is sent as one array literal (`'{1,2,3}'`, cast by the statement's own
   `::bigint[]`) instead of psycopg2's `ARRAY[1,2,3]` constructor;
2. the drain continues from the last charge it took (`AND id > %s`), instead of re-reading the
   index entries of every charge it already settled.

Never set in a recorded run; see docs/performance.md, "Proposals"."""

from __future__ import annotations

import time

from django.apps import AppConfig
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from ledger import posting
from ledger.locks import account_lock
from ledger.posting import INSUFFICIENT_FUNDS, BatchOutcome, _expect
from ledger.services.settlement import SettleOutcome

_SELECT_QUEUED_CHARGES_AFTER = """
    SELECT id, amount FROM ledger_charge
    WHERE seller_id = %s AND status = 'queued' AND id > %s ORDER BY id LIMIT %s
"""


def _array(values: list) -> str:
    return "{" + ",".join("NULL" if v is None else str(v) for v in values) + "}"


def settle_batch_fast(*, seller_id: int, limit: int, after_id: int = 0) -> tuple[BatchOutcome, int]:
    with transaction.atomic(), connection.cursor() as cursor:
        account = account_lock(cursor, seller_id=seller_id)
        if account is None:
            return BatchOutcome(), after_id
        cursor.execute(posting._SELECT_APPROVING_DEPOSITS, [seller_id, limit])
        deposits = cursor.fetchall()
        cursor.execute(_SELECT_QUEUED_CHARGES_AFTER, [seller_id, after_id, limit - len(deposits)])
        charges = cursor.fetchall()
        if not deposits and not charges:
            return BatchOutcome(balance=account.balance), after_id

        balance, seq = account.balance, account.last_seq
        seqs, kinds, amounts, afters, charge_ids, deposit_ids = [], [], [], [], [], []
        approved_ids, approved_afters = [], []
        for deposit_id, amount in deposits:
            balance += amount
            seq += 1
            seqs.append(seq), kinds.append("deposit"), amounts.append(amount), afters.append(balance)
            charge_ids.append(None), deposit_ids.append(deposit_id)
            approved_ids.append(deposit_id), approved_afters.append(balance)
        succeeded_ids, succeeded_afters, failed_ids = [], [], []
        for charge_id, amount in charges:
            if amount > balance:
                failed_ids.append(charge_id)
                continue
            balance -= amount
            seq += 1
            seqs.append(seq), kinds.append("charge"), amounts.append(-amount), afters.append(balance)
            charge_ids.append(charge_id), deposit_ids.append(None)
            succeeded_ids.append(charge_id), succeeded_afters.append(balance)

        now = timezone.now()
        if seqs:
            cursor.execute(
                posting._INSERT_ENTRIES,
                [
                    seller_id,
                    now,
                    _array(seqs),
                    _array(kinds),
                    _array(amounts),
                    _array(afters),
                    _array(charge_ids),
                    _array(deposit_ids),
                ],
            )
        if approved_ids:
            cursor.execute(posting._APPROVE_DEPOSITS, [now, _array(approved_ids), _array(approved_afters)])
            _expect(cursor.rowcount, len(approved_ids), "deposits")
        if succeeded_ids:
            cursor.execute(posting._SUCCEED_CHARGES, [now, _array(succeeded_ids), _array(succeeded_afters)])
            _expect(cursor.rowcount, len(succeeded_ids), "succeeded charges")
        if failed_ids:
            cursor.execute(posting._FAIL_CHARGES, [now, INSUFFICIENT_FUNDS, _array(failed_ids)])
            _expect(cursor.rowcount, len(failed_ids), "failed charges")
        cursor.execute(posting._UPDATE_ACCOUNT, [balance, seq, now, seller_id])

    last = charges[-1][0] if charges else after_id
    return BatchOutcome(
        deposits_applied=len(approved_ids),
        charges_succeeded=len(succeeded_ids),
        charges_failed=len(failed_ids),
        balance=balance,
        more_pending=len(deposits) + len(charges) >= limit,
    ), last


def settle_seller_fast(*, seller_id: int, time_budget: float | None = None, batch_size: int | None = None):
    budget = settings.LEDGER_SETTLE_TIME_BUDGET if time_budget is None else time_budget
    limit = batch_size or settings.LEDGER_SETTLE_BATCH_SIZE
    deadline = time.monotonic() + budget
    outcome = SettleOutcome()
    after_id = 0
    while True:
        batch, after_id = settle_batch_fast(seller_id=seller_id, limit=limit, after_id=after_id)
        outcome.batches += 1
        outcome.intents += batch.intents
        if not batch.more_pending:
            return outcome
        if time.monotonic() >= deadline:
            outcome.more_pending = True
            return outcome


class FastPostingExperiment(AppConfig):
    name = "bench"
    label = "bench_fast_posting"
    verbose_name = "benchmark experiment: fast posting"

    def ready(self) -> None:
        from celery.signals import worker_ready

        def install(**_):
            import workers.tasks

            workers.tasks.settle_seller = settle_seller_fast

        worker_ready.connect(install, weak=False)
