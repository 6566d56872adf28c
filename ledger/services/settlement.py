"""Draining a seller's queue of intents: the service behind the `settle_seller` task."""

import time
from dataclasses import dataclass

from django.conf import settings

from ledger.posting import settle_batch, settle_sellers_batch


@dataclass
class SettleOutcome:
    batches: int = 0
    intents: int = 0
    more_pending: bool = False


def settle_seller(*, seller_id: int, time_budget: float | None = None, batch_size: int | None = None) -> SettleOutcome:
    """Apply the seller's queued intents batch by batch until none is left or the time budget is
    spent (then `more_pending` asks the caller to come back later, so one hot seller cannot
    starve the others on its shard)."""
    budget = settings.LEDGER_SETTLE_TIME_BUDGET if time_budget is None else time_budget
    limit = batch_size or settings.LEDGER_SETTLE_BATCH_SIZE
    deadline = time.monotonic() + budget
    outcome = SettleOutcome()
    after_charge_id = after_answered_id = 0
    while True:
        batch = settle_batch(
            seller_id=seller_id, limit=limit, after_charge_id=after_charge_id, after_answered_id=after_answered_id
        )
        after_charge_id, after_answered_id = batch.last_charge_id, batch.last_answered_id
        outcome.batches += 1
        outcome.intents += batch.intents
        if not batch.more_pending:
            return outcome
        if time.monotonic() >= deadline:
            outcome.more_pending = True
            return outcome


def settle_sellers(*, seller_ids: list[int], batch_size: int | None = None) -> dict[int, SettleOutcome]:
    """Several sellers (a shard task's): one transaction for all of them while their backlogs are
    small, which is the common case under a busy API; if that batch is full, each of them is then
    drained on its own by `settle_seller`. Sellers without an account are left out."""
    ids = sorted(set(seller_ids))
    if len(ids) == 1:
        return {ids[0]: settle_seller(seller_id=ids[0], batch_size=batch_size)}
    limit = batch_size or settings.LEDGER_SETTLE_BATCH_SIZE
    batch = settle_sellers_batch(seller_ids=ids, limit=limit)
    outcomes = {sid: SettleOutcome(batches=1, intents=o.intents) for sid, o in batch.items()}
    if any(o.more_pending for o in batch.values()):
        for sid, outcome in outcomes.items():
            rest = settle_seller(seller_id=sid, batch_size=batch_size)
            outcome.batches += rest.batches
            outcome.intents += rest.intents
            outcome.more_pending = rest.more_pending
    return outcomes
