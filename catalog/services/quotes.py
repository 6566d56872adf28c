"""Quotes: a price locked for one seller, number, product version and amount until `expires_at`.

A charge uses a quote at most once: `quote_use` locks it and marks it used in the transaction
that records the charge, and the charge's `quote` is unique (ledger.Charge.quote)."""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from catalog.errors import QuoteExpiredError, QuoteUsedError
from catalog.models import Quote
from catalog.sales import sale_for_charge
from core.errors import DomainError, NotFoundError
from core.models import Seller


def quote_create(
    *, seller: Seller, msisdn: str, product_id: int, amount: int | None = None, operator_id: int | None = None
) -> Quote:
    """Raises the errors of `catalog.sales.sale_for_charge` (400), recording nothing."""
    sale = sale_for_charge(
        seller_id=seller.pk, msisdn=msisdn, amount=amount, product_id=product_id, operator_id=operator_id
    )
    now = timezone.now()
    return Quote.objects.create(
        seller=seller,
        msisdn=msisdn,
        operator_id=sale.operator_id,
        product_version_id=sale.product_version_id,
        rule_id=sale.rule_id,
        destination_amount=sale.destination_amount,
        price=sale.price,
        cost=sale.cost,
        currency=settings.PLATFORM_CURRENCY,
        expires_at=now + timedelta(seconds=settings.QUOTE_TTL),
    )


def quote_get(*, seller: Seller, quote_id: int) -> Quote:
    """The seller's quote; another seller's is not found (404), as any other object."""
    quote = (
        Quote.objects.select_related("product_version__product", "operator").filter(pk=quote_id, seller=seller).first()
    )
    if quote is None:
        raise NotFoundError()
    return quote


def quote_use(*, seller_id: int, quote_id: int, msisdn: str | None = None) -> Quote:
    """Lock the seller's quote and mark it used: 404 foreign or missing, 409 used or expired, 400
    for another number. Must run inside the transaction that records the charge, so that a charge
    that is not recorded leaves the quote unused."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("quote_use must run inside the transaction that records the charge")
    quote = (
        Quote.objects.select_for_update(of=("self",))
        .select_related("product_version")
        .filter(pk=quote_id, seller_id=seller_id)
        .first()
    )
    if quote is None:
        raise NotFoundError("No quote of yours has this id.")
    if quote.used_at is not None:
        raise QuoteUsedError()
    now = timezone.now()
    if quote.expires_at <= now:
        raise QuoteExpiredError()
    if msisdn is not None and msisdn != quote.msisdn:
        raise DomainError(f"phone_number: the quote is for {quote.msisdn}.")
    quote.used_at = now
    quote.save(update_fields=["used_at"])
    return quote
