"""The provider's answer to "which operator serves this number", kept for NUMBER_LOOKUP_TTL:
run by a worker (catalog.lookup_number), read by the web (catalog.selectors.operator_for_number)."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from catalog.models import NumberLookup, Operator
from providers.base import Provider


def number_lookup_record(*, provider: Provider, msisdn: str) -> NumberLookup:
    """Asks the provider (raises ProviderError) and records its identified operator; an operator
    our catalog does not hold, or none identified, is recorded as None (the prefixes decide)."""
    answer = provider.lookup_number(msisdn)
    identified = next((op for op in answer if op.identified), None)
    operator = (
        None
        if identified is None
        else Operator.objects.filter(
            provider=provider.name, provider_operator_id=identified.provider_operator_id
        ).first()
    )
    now = timezone.now()
    lookup, _ = NumberLookup.objects.update_or_create(
        provider=provider.name,
        msisdn=msisdn,
        defaults={
            "operator": operator,
            "looked_up_at": now,
            "expires_at": now + timedelta(seconds=settings.NUMBER_LOOKUP_TTL),
        },
    )
    return lookup
