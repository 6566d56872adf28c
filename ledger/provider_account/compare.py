"""Our charges against a provider's record of transactions, in memory by external id: one pass
over the provider's list (streamed page by page, taken in chunks) and one over ours. Used by the
daily close (close.py) and the reconciler's window (ledger/fulfilment/reconcile.py)."""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice

from providers.base import Outcome, ProviderTransaction

SUCCEEDED, FAILED, OPEN = "succeeded", "failed", "open"
CHUNK = 1000


@dataclass(frozen=True)
class Ours:
    """One of our charges as the comparison sees it. `state`: succeeded, failed or open (not
    final); `amount`/`currency`: what the provider should have delivered; `cost`: what we recorded
    it charges us (None: not recorded)."""

    charge_id: int
    state: str
    amount: int
    currency: str | None = None
    cost: int | None = None


@dataclass
class Comparison:
    matched: int = 0
    agreed_failed: int = 0  # failed on both sides: nothing moved
    still_open: int = 0  # not final on one side: left out
    transactions: int = 0  # theirs, of this installation
    missing_at_provider: list[int] = field(default_factory=list)  # ours succeeded, not completed there
    missing_here: list[str] = field(default_factory=list)  # completed there, not succeeded here
    amount_mismatches: list[tuple[int, int, int]] = field(default_factory=list)  # (charge, ours, theirs)
    currency_mismatches: list[tuple[int, str, str]] = field(default_factory=list)  # (charge, ours, theirs)
    # (charge, external id, our state, cost): completed there, then reversed (our cost came back)
    reversals: list[tuple[int, str, str, int | None]] = field(default_factory=list)
    reversed_cost: int = 0  # of reversals of charges that succeeded here
    reversal_reasons: dict[int, str] = field(default_factory=dict)  # charge -> the provider's status
    late_successes: list[int] = field(default_factory=list)  # ours failed, completed there


def compare(
    ours: dict[str, Ours],
    transactions: Iterable[ProviderTransaction],
    *,
    prefix: str,
    ours_elsewhere: Callable[[list[str]], set[str]] | None = None,
) -> Comparison:
    """`ours` by external id; `transactions` the provider's. A transaction whose id does not start
    with `prefix` is another installation's on the same account: left out. `ours_elsewhere(ids)`
    names the ids among a chunk that are our charges outside `ours` (another day's, sent near the
    bound): left out too; without it such a completed transaction is missing here."""
    result = Comparison()
    seen: set[str] = set()
    stream = (t for t in transactions if t.external_id.startswith(prefix))
    while chunk := list(islice(stream, CHUNK)):
        unknown = [t.external_id for t in chunk if t.external_id not in ours]
        elsewhere = ours_elsewhere(unknown) if ours_elsewhere and unknown else set()
        for transaction in chunk:
            charge = ours.get(transaction.external_id)
            if charge is None:
                if transaction.external_id not in elsewhere and transaction.outcome is Outcome.SUCCEEDED:
                    result.transactions += 1
                    result.missing_here.append(transaction.external_id)
                continue
            result.transactions += 1
            seen.add(transaction.external_id)
            _classify(result, charge, transaction)
    for external_id, charge in ours.items():
        if external_id in seen:
            continue
        if charge.state == SUCCEEDED:
            result.missing_at_provider.append(charge.charge_id)
        elif charge.state == OPEN:
            result.still_open += 1
    result.missing_at_provider.sort()
    return result


def _classify(result: Comparison, charge: Ours, transaction: ProviderTransaction) -> None:
    outcome = transaction.outcome
    if charge.state == OPEN or outcome not in (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.REVERSED):
        result.still_open += 1
    elif outcome is Outcome.REVERSED:
        cost = charge.cost if charge.cost is not None else transaction.cost
        result.reversals.append((charge.charge_id, transaction.external_id, charge.state, cost))
        result.reversal_reasons[charge.charge_id] = transaction.provider_status or "reversed"
        if charge.state == SUCCEEDED:
            result.reversed_cost += cost or 0
    elif outcome is Outcome.FAILED:
        if charge.state == SUCCEEDED:
            result.missing_at_provider.append(charge.charge_id)
        else:
            result.agreed_failed += 1
    elif charge.state != SUCCEEDED:
        result.missing_here.append(transaction.external_id)
        result.late_successes.append(charge.charge_id)
    elif charge.amount != transaction.amount:
        result.amount_mismatches.append((charge.charge_id, charge.amount, transaction.amount))
    elif charge.currency and transaction.currency and charge.currency != transaction.currency:
        result.currency_mismatches.append((charge.charge_id, charge.currency, transaction.currency))
    else:
        result.matched += 1
