"""The float: our balance at each provider, polled by a beat task (`ledger.poll_provider_float`,
every PROVIDER_FLOAT_INTERVAL seconds), kept as the latest state (ProviderFloat) and as snapshots
for the daily close (ProviderBalanceSnapshot).

Below PROVIDER_FLOAT_LOW the float is *low*: one WARNING (`ledger.provider_float_low`) when a poll
first finds it so, one INFO (`ledger.provider_float_recovered`) when a poll finds it above again;
never one a poll. `provider_float_ok(name)` is what routing asks before sending a sale there."""

import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ledger.provider_account.models import ProviderBalanceSnapshot, ProviderFloat
from providers.base import Provider, ProviderError

logger = logging.getLogger(__name__)


def low_threshold(provider: str) -> int | None:
    """PROVIDER_FLOAT_LOW: one amount for every provider, or a mapping of provider name to amount
    (a provider it does not name has no alert). None: no alert."""
    setting = getattr(settings, "PROVIDER_FLOAT_LOW", None)
    if isinstance(setting, dict):
        return setting.get(provider)
    return setting


def poll_float(provider: Provider) -> ProviderFloat:
    """Ask the provider for our balance and record it; a failure is recorded on the row (the last
    values stay, with their time) and never raised: the next poll tries again."""
    now = timezone.now()
    try:
        balance = provider.balance()
    except ProviderError as exc:
        return _record_error(provider.name, str(exc)[:500], now)
    threshold = low_threshold(provider.name)
    low = threshold is not None and balance.available < threshold
    with transaction.atomic():
        row, _ = ProviderFloat.objects.select_for_update().get_or_create(provider=provider.name)
        was_low = row.low
        row.available, row.currency = balance.available, balance.currency
        row.holding, row.credit_limit = balance.holding, balance.credit_limit
        row.polled_at, row.error, row.error_at = now, "", None
        row.low = low
        row.low_since = (row.low_since or now) if low else None
        if not low and balance.available > 0:
            row.refused_at = None  # recovered: routing may send there again
        row.save()
        ProviderBalanceSnapshot.objects.create(
            provider=provider.name, available=balance.available, currency=balance.currency, polled_at=now
        )
    event = {"provider": provider.name, "available": balance.available, "currency": balance.currency}
    if low and not was_low:
        logger.warning(
            "float at %s is low: %s %s, below %s",
            provider.name,
            balance.available,
            balance.currency,
            threshold,
            extra={"event": "ledger.provider_float_low", "threshold": threshold, **event},
        )
    elif was_low and not low:
        logger.info(
            "float at %s recovered: %s %s",
            provider.name,
            balance.available,
            balance.currency,
            extra={"event": "ledger.provider_float_recovered", **event},
        )
    return row


def _record_error(name: str, error: str, now) -> ProviderFloat:
    with transaction.atomic():
        row, _ = ProviderFloat.objects.select_for_update().get_or_create(provider=name)
        first = not row.error
        row.error, row.error_at = error, now
        row.save(update_fields=["error", "error_at"])
    if first:  # once while it lasts, not every poll
        logger.warning(
            "float at %s could not be read: %s",
            name,
            error,
            extra={"event": "ledger.provider_float_unreadable", "provider": name, "error": error},
        )
    return row


def provider_float_refused(name: str) -> None:
    """Routing calls this when the provider refused a top-up for insufficient balance
    (`refusal="insufficient_balance"`): `provider_float_ok` answers False until a poll finds the
    float above its low threshold (or above zero without a threshold)."""
    ProviderFloat.objects.update_or_create(provider=name, defaults={"refused_at": timezone.now()})


def provider_float_ok(name: str) -> bool:
    """May routing send a sale to this provider, as far as our money there goes? False when the
    last answered poll found nothing available, or when the provider refused a top-up for
    insufficient balance since the float was last seen above its low threshold. True for a
    provider never polled (nothing says otherwise); a low float alone alerts, it does not stop."""
    row = ProviderFloat.objects.filter(provider=name).only("available", "refused_at").first()
    if row is None:
        return True
    if row.refused_at is not None:
        return False
    return row.available is None or row.available > 0


def floats_report() -> list[dict]:
    """Every provider's float for ops/queues and the metrics."""
    return [
        {
            "provider": row.provider,
            "available": row.available,
            "currency": row.currency,
            "holding": row.holding,
            "polled_at": row.polled_at,
            "low_threshold": low_threshold(row.provider),
            "low": row.low,
            "low_since": row.low_since,
            "ok": row.refused_at is None and (row.available is None or row.available > 0),
            "error": row.error or None,
            "error_at": row.error_at,
        }
        for row in ProviderFloat.objects.order_by("provider")
    ]
