"""The daily close of one provider for one UTC day: its record against ours, and the money
equation of our account there (docs/operations.md, "The daily close per provider").

- **Records.** Our charges sent that day (`submitted_at` in the day, an external id) against the
  provider's transactions created that day, widened by PROVIDER_CLOCK_SKEW on both sides so a
  charge sent just before midnight finds its transaction; a transaction in the margin, or in the
  day, whose charge was sent on another day belongs to that day's close and is left out here.
  Compared in memory by external id (compare.py), the provider's list streamed page by page.
- **The equation.** end - start = funding - delivered_cost + reversed_cost, where start and end
  are our balance there at the day's bounds, read from the float snapshots nearest each bound
  (floats.py polls every PROVIDER_FLOAT_INTERVAL: the balance can be off by what moved between
  the snapshot and the bound); delivered_cost the recorded cost of our charges of the day that
  succeeded; reversed_cost the cost of those the provider reversed (counted on the day of the
  top-up, as the provider's list shows it when the close runs); funding the ProviderFunding rows
  of the day. `balanced` is null when a bound has no snapshot or the currencies differ.
- **What it acts on.** A reversal of a charge that succeeded here is recorded as a refund through
  the charge's lifecycle (as a callback's would be), and a top-up completed there whose charge we
  failed is recorded as a late-success conflict for an admin (ledger/conflicts.py). Nothing else
  is repaired: the other discrepancies are reported."""

import logging
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db.models import Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from ledger import conflicts
from ledger.charge_lifecycle import POSTED, Reversal
from ledger.fulfilment.identity import external_id_prefix
from ledger.fulfilment.service import record_reversals
from ledger.models import Charge
from ledger.provider_account.compare import FAILED, OPEN, SUCCEEDED, Comparison, Ours, compare
from ledger.provider_account.models import ProviderBalanceSnapshot, ProviderClose, ProviderFunding
from providers import default_provider_name
from providers.base import Provider, ProviderError

logger = logging.getLogger(__name__)

CLOSE_LIST_LIMIT = 1000  # discrepancies kept per kind (the counts are complete)
EARLIEST_DAY = date(2000, 1, 1)  # before any charge; keeps a day's bounds within datetime's range


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def sent_to(provider: str) -> Q:
    """Our charges at this provider: routed there, or sent before routing when it is the default."""
    return Q(provider__in=[provider, ""]) if provider == default_provider_name() else Q(provider=provider)


def our_charges(start: datetime, end: datetime, provider: str | None = None) -> dict[str, Ours]:
    """Our charges sent in [start, end) to the provider (None: the default one), by external id:
    one query, in memory. A charge routing moved elsewhere is the next provider's; its refused
    attempt here left nothing to compare (a transaction there, if any, is a failed one)."""
    rows = Charge.objects.filter(
        sent_to(provider or default_provider_name()),
        submitted_at__gte=start,
        submitted_at__lt=end,
        external_id__isnull=False,
    )
    columns = ("id", "external_id", "status", "amount", "destination_amount", "destination_currency", "cost")
    return {
        external_id: Ours(
            charge_id,
            SUCCEEDED if status in POSTED else FAILED if status == FAILED else OPEN,
            destination_amount if destination_amount is not None else amount,
            currency,
            cost,
        )
        for charge_id, external_id, status, amount, destination_amount, currency, cost in rows.values_list(*columns)
    }


def _sent_on_other_days(start: datetime, end: datetime):
    def ours_elsewhere(external_ids: list[str]) -> set[str]:
        other = Charge.objects.filter(external_id__in=external_ids).exclude(
            submitted_at__gte=start, submitted_at__lt=end
        )
        return set(other.values_list("external_id", flat=True))

    return ours_elsewhere


def balance_near(provider: str, moment: datetime) -> ProviderBalanceSnapshot | None:
    """The float snapshot nearest `moment`: the last at or before it, or the first after it,
    whichever is closer (two reads of the (provider, polled_at) index)."""
    snapshots = ProviderBalanceSnapshot.objects.filter(provider=provider)
    before = snapshots.filter(polled_at__lte=moment).order_by("-polled_at").first()
    after = snapshots.filter(polled_at__gt=moment).order_by("polled_at").first()
    if before is None or after is None:
        return before or after
    return before if moment - before.polled_at <= after.polled_at - moment else after


def close_day(provider: Provider, day: date) -> ProviderClose:
    """Run the close and keep its result (one row per provider and day, replaced by a rerun). A
    provider that cannot be read leaves the row `failed` with the reason."""
    start, end = day_bounds(day)
    close, _ = ProviderClose.objects.update_or_create(
        provider=provider.name, day=day, defaults={"status": ProviderClose.Status.RUNNING, "error": ""}
    )
    skew = timedelta(seconds=settings.PROVIDER_CLOCK_SKEW)
    ours = our_charges(start, end, provider.name)
    try:
        found = compare(
            ours,
            provider.transactions(created_after=start - skew, created_before=end + skew),
            prefix=external_id_prefix(),
            ours_elsewhere=_sent_on_other_days(start, end),
        )
    except ProviderError as exc:
        close.status, close.error, close.finished_at = ProviderClose.Status.FAILED, str(exc)[:1000], timezone.now()
        close.save()
        logger.warning(
            "close of %s on %s failed: %s",
            provider.name,
            day,
            exc,
            extra={"event": "ledger.provider_close_failed", "provider": provider.name, "day": str(day)},
        )
        return close
    _record_comparison(close, ours, found)
    _record_equation(close, ours, found, start, end)
    _act_on_provider_word(close, found)
    close.status, close.finished_at = ProviderClose.Status.DONE, timezone.now()
    close.save()
    clean = not (close.missing_at_provider or close.missing_here or close.mismatched) and close.balanced is not False
    logger.log(
        logging.INFO if clean else logging.WARNING,
        "close of %s on %s: %s matched, %s missing there, %s missing here, %s mismatched, %s reversed, balanced=%s",
        provider.name,
        day,
        close.matched,
        close.missing_at_provider,
        close.missing_here,
        close.mismatched,
        close.reversed,
        close.balanced,
        extra={"event": "ledger.provider_close", "provider": provider.name, "day": str(day), "clean": clean},
    )
    return close


def _record_comparison(close: ProviderClose, ours: dict[str, Ours], found: Comparison) -> None:
    close.charges, close.transactions = len(ours), found.transactions
    close.matched, close.still_open = found.matched, found.still_open
    close.missing_at_provider, close.missing_here = len(found.missing_at_provider), len(found.missing_here)
    close.mismatched = len(found.amount_mismatches) + len(found.currency_mismatches)
    close.reversed = len(found.reversals)
    limit = CLOSE_LIST_LIMIT
    close.discrepancies = {
        "missing_at_provider": found.missing_at_provider[:limit],
        "missing_here": found.missing_here[:limit],
        "amount_mismatches": [
            {"charge": charge, "ours": a, "theirs": b} for charge, a, b in found.amount_mismatches[:limit]
        ],
        "currency_mismatches": [
            {"charge": charge, "ours": a, "theirs": b} for charge, a, b in found.currency_mismatches[:limit]
        ],
        "reversals": [
            {"charge": charge, "external_id": external_id, "ours": state, "cost": cost}
            for charge, external_id, state, cost in found.reversals[:limit]
        ],
    }


def _act_on_provider_word(close: ProviderClose, found: Comparison) -> None:
    """What the provider's record says that we have not applied: reversals of charges that succeeded
    here become refunds (the lifecycle's one function; a reversal applied already records nothing),
    and completed top-ups of charges we failed become late-success conflicts for an admin."""
    reversals = [
        Reversal(charge_id, found.reversal_reasons.get(charge_id, "reversed"))
        for charge_id, _, state, _ in found.reversals
        if state == SUCCEEDED
    ]
    record_reversals(reversals)
    late = [
        conflicts.LateSuccess(charge_id, f"the provider's record of {close.day} shows it completed", {})
        for charge_id in found.late_successes
    ]
    conflicts.record_late_successes(late)


def _record_equation(close: ProviderClose, ours: dict[str, Ours], found: Comparison, start, end) -> None:
    delivered = [charge.cost for charge in ours.values() if charge.state == SUCCEEDED]
    close.delivered_cost = sum(cost for cost in delivered if cost is not None)
    close.uncosted = sum(1 for cost in delivered if cost is None)
    close.reversed_cost = found.reversed_cost
    first, last = balance_near(close.provider, start), balance_near(close.provider, end)
    close.currency = (last or first).currency if (last or first) else settings.PLATFORM_CURRENCY
    close.funding = ProviderFunding.objects.filter(
        provider=close.provider, currency=close.currency, at__gte=start, at__lt=end
    ).aggregate(total=Coalesce(Sum("amount"), 0))["total"]
    close.start_balance = first.available if first else None
    close.start_polled_at = first.polled_at if first else None
    close.end_balance = last.available if last else None
    close.end_polled_at = last.polled_at if last else None
    comparable = first is not None and last is not None and first.pk != last.pk
    comparable = comparable and first.currency == last.currency == settings.PLATFORM_CURRENCY
    day_funding = ProviderFunding.objects.filter(provider=close.provider, at__gte=start, at__lt=end)
    if day_funding.exclude(currency=close.currency).exists():
        close.error = f"funding recorded in another currency than the balance's ({close.currency}): not counted"
        comparable = False
    if not comparable:
        close.difference = close.balanced = None
        return
    expected = close.funding - close.delivered_cost + close.reversed_cost
    close.difference = (last.available - first.available) - expected
    close.balanced = close.difference == 0 and close.uncosted == 0
