"""Quotes: a price locked for one seller, number, product version and amount until `expires_at`.

A charge consumes a quote at most once (`quote_consume`: one conditional update, so two charges
racing for one quote get one success and one 409); the charge integration calls it in the
charge's own transaction."""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from catalog import pricing
from catalog.errors import (
    AmountNotOfferedError,
    NoPriceError,
    ProductUnavailableError,
    QuoteExpiredError,
    QuoteUsedError,
)
from catalog.models import ProductKind, Quote
from catalog.selectors import PriceBook, operator_for_number, product_on_sale
from core.errors import NotFoundError
from core.models import Seller


def quote_create(
    *, seller: Seller, msisdn: str, product_id: int, amount: int | None = None, operator_id: int | None = None
) -> Quote:
    """Raises NoOperatorError, OperatorMismatchError, UnknownOperatorError, ProductUnavailableError,
    AmountNotOfferedError, NoPriceError (all 400)."""
    resolved = operator_for_number(msisdn=msisdn, operator_id=operator_id)
    product = product_on_sale(product_id=product_id)
    if product is None or product.current_version is None or product.operator_id != resolved.operator.pk:
        raise ProductUnavailableError()
    version = product.current_version
    if version.kind == ProductKind.FIXED:
        amount = version.amount if amount is None else amount
        if amount != version.amount:
            raise AmountNotOfferedError(f"This product sells exactly {version.amount} {version.destination_currency}.")
    elif amount is None or not pricing.in_range(version, amount):
        step = f" in steps of {version.amount_step}" if version.amount_step else ""
        raise AmountNotOfferedError(
            f"amount: between {version.min_amount} and {version.max_amount}{step} {version.destination_currency}."
        )
    now = timezone.now()
    price = PriceBook(seller=seller, products=[product], at=now).price(product, version, amount)
    if price is None:
        raise NoPriceError()
    return Quote.objects.create(
        seller=seller,
        msisdn=msisdn,
        operator=resolved.operator,
        product_version=version,
        rule=price.rule,
        destination_amount=amount,
        price=price.price,
        cost=price.cost,
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


def quote_usable(*, seller: Seller, quote_id: int) -> Quote:
    """The quote a charge may consume now: 404 foreign or missing, 409 expired or used."""
    quote = quote_get(seller=seller, quote_id=quote_id)
    if quote.used_at is not None:
        raise QuoteUsedError()
    if quote.expires_at <= timezone.now():
        raise QuoteExpiredError()
    return quote


def quote_consume(*, seller: Seller, quote_id: int, charge_id: int | None) -> Quote:
    """Marks the quote used by the charge, once: must run inside the charge's transaction."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("quote_consume must run inside the transaction that records the charge")
    quote = quote_usable(seller=seller, quote_id=quote_id)
    updated = Quote.objects.filter(pk=quote.pk, used_at__isnull=True, expires_at__gt=timezone.now()).update(
        used_at=timezone.now(), charge_id=charge_id
    )
    if updated != 1:
        raise QuoteUsedError()
    quote.refresh_from_db()
    return quote
