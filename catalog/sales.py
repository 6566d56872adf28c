"""What a charge sells: the operator, the product version, the destination amount, the seller's
price and the provider's cost, resolved from the catalog with no network call and no write.

A charge (the POST, or a row of a charge list) names a `product` (with an `amount` within a ranged
product's range), or only an `amount`: then the number's operator sells it through its fixed
airtime denomination equal to the amount, else its ranged airtime product covering it, else the
charge is refused (`no_product`, with the amounts that would work). A quote is a sale resolved
earlier, its price locked (`sale_of_quote`).

The charge POST resolves one sale with a few indexed reads (`sale_for_charge`); a charge list's
import reads the catalog once for all its rows (`CatalogSnapshot`): both pick the product and the
price with the same functions."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q
from django.utils import timezone

from catalog import pricing
from catalog.errors import (
    AmountNotOfferedError,
    NoOperatorError,
    NoPriceError,
    NoProductError,
    OperatorMismatchError,
    ProductRequiredError,
    ProductUnavailableError,
    UnknownOperatorError,
)
from catalog.models import NumberingPrefix, NumberLookup, Operator, Product, ProductKind, ProductService, Quote
from catalog.selectors import ON_SALE, PriceBook, operator_for_number, products_for_number


@dataclass(frozen=True)
class Sale:
    operator_id: int
    product_id: int
    product_version_id: int
    destination_amount: int
    destination_currency: str
    price: int  # what the seller pays, in the platform currency: the charge's hold
    cost: int  # what the provider charges us for it
    rule_id: int | None = None  # the price rule that made the price (None: the face value)
    quote_id: int | None = None


def pick_product(products: Iterable[Product], *, amount: int | None, product_id: int | None) -> tuple[Product, int]:
    """The product (on sale, of the number's operator) and the destination amount a charge sells."""
    products = list(products)
    if product_id is not None:
        product = next((p for p in products if p.pk == product_id), None)
        if product is None:
            raise ProductUnavailableError()
        version = product.current_version
        if version.kind == ProductKind.FIXED:
            if amount is not None and amount != version.amount:
                raise AmountNotOfferedError(
                    f"This product sells exactly {version.amount} {version.destination_currency}.",
                    amounts=[version.amount],
                )
            return product, version.amount
        if amount is None or not pricing.in_range(version, amount):
            step = f" in steps of {version.amount_step}" if version.amount_step else ""
            raise AmountNotOfferedError(
                f"amount: between {version.min_amount} and {version.max_amount}{step} {version.destination_currency}.",
                ranges=[_range(version)],
            )
        return product, amount
    if amount is None:
        raise ProductRequiredError()
    airtime = [p for p in products if p.current_version.service == ProductService.AIRTIME]
    fixed = [p for p in airtime if p.current_version.kind == ProductKind.FIXED]
    ranged = [p for p in airtime if p.current_version.kind == ProductKind.RANGED]
    for product in fixed + ranged:  # the exact denomination first
        if pricing.in_range(product.current_version, amount):
            return product, amount
    amounts = sorted({p.current_version.amount for p in fixed})
    ranges = [_range(p.current_version) for p in ranged]
    currency = airtime[0].current_version.destination_currency if airtime else None
    raise NoProductError(
        f"No airtime product of this number's operator sells {amount} {currency or ''}".rstrip()
        + (f"; it sells {_amounts_text(amounts, ranges)}." if airtime else ": it sells no airtime."),
        amounts=amounts,
        ranges=ranges,
        destination_currency=currency,
    )


def _amounts_text(amounts: list[int], ranges: list[dict]) -> str:
    parts = [str(a) for a in amounts] + [
        f"{r['min']} to {r['max']}" + (f" in steps of {r['step']}" if r["step"] else "") for r in ranges
    ]
    return ", ".join(parts[:-1]) + (" or " if len(parts) > 1 else "") + parts[-1]


def _range(version) -> dict:
    return {"min": version.min_amount, "max": version.max_amount, "step": version.amount_step}


def sale_of(*, operator_id: int, product: Product, amount: int, book: PriceBook) -> Sale:
    version = product.current_version
    price = book.price(product, version, amount)
    if price is None:
        raise NoPriceError()
    return Sale(
        operator_id=operator_id,
        product_id=product.pk,
        product_version_id=version.pk,
        destination_amount=amount,
        destination_currency=version.destination_currency,
        price=price.price,
        cost=price.cost,
        rule_id=price.rule and price.rule.pk,
    )


def sale_for_charge(
    *, seller_id: int, msisdn: str, amount: int | None, product_id: int | None = None, operator_id: int | None = None
) -> Sale:
    """One charge's sale, now, in two reads (the number's products, the seller's rules). Raises
    the catalog's errors (400), each with its stable code."""
    products = products_for_number(msisdn=msisdn, operator_id=operator_id)
    if not products:  # which error: no operator, or one that sells nothing
        operator_for_number(msisdn=msisdn, operator_id=operator_id)
    product, amount = pick_product(products, amount=amount, product_id=product_id)
    book = PriceBook(seller=seller_id, products=[product])
    return sale_of(operator_id=product.operator_id, product=product, amount=amount, book=book)


def sale_of_quote(quote: Quote) -> Sale:
    """The sale a quote locked: its price and cost, whatever the price lists say now."""
    version = quote.product_version
    return Sale(
        operator_id=quote.operator_id,
        product_id=version.product_id,
        product_version_id=version.pk,
        destination_amount=quote.destination_amount,
        destination_currency=version.destination_currency,
        price=quote.price,
        cost=quote.cost,
        rule_id=quote.rule_id,
        quote_id=quote.pk,
    )


class CatalogSnapshot:
    """The catalog on sale and one seller's prices, read once for a charge list's rows: the
    numbering prefixes, the products of every operator, the price rules in force at `at`, and the
    provider's cached number lookups."""

    # A larger lookup cache is read per number instead of whole.
    MAX_LOOKUPS_IN_MEMORY = 200_000

    def __init__(self, *, seller_id: int, at: datetime | None = None):
        self.at = at or timezone.now()
        operators = Operator.objects.filter(ON_SALE).select_related("country")
        self.operators = {op.pk: op for op in operators}
        self.prefixes: dict[str, int] = {}
        for prefix, operator_id in (
            NumberingPrefix.objects.filter(operator_id__in=self.operators)
            .order_by("prefix", "operator_id")
            .values_list("prefix", "operator_id")
        ):
            self.prefixes.setdefault(prefix, operator_id)  # the lowest operator id, as the POST's order
        self.longest_prefix = max((len(p) for p in self.prefixes), default=0)
        self.products: dict[int, list[Product]] = defaultdict(list)
        for product in (
            Product.objects.filter(ON_SALE, operator_id__in=self.operators, current_version__isnull=False)
            .select_related("current_version")
            .order_by("id")
        ):
            self.products[product.operator_id].append(product)
        self.book = PriceBook(seller=seller_id, products=[p for ps in self.products.values() for p in ps], at=self.at)
        fresh = NumberLookup.objects.filter(
            Q(operator__isnull=True) | Q(operator_id__in=self.operators), expires_at__gt=self.at
        )
        self.lookups: dict[str, int | None] | None = None
        if fresh.count() <= self.MAX_LOOKUPS_IN_MEMORY:
            self.lookups = {}
            for msisdn, operator_id in fresh.order_by("looked_up_at").values_list("msisdn", "operator_id"):
                if operator_id is not None:
                    self.lookups[msisdn] = operator_id

    def operator_id(self, msisdn: str, named: int | None) -> int:
        """As `catalog.selectors.operator_for_number`, from memory."""
        digits = msisdn.removeprefix("+")
        if named is not None:
            operator = self.operators.get(named)
            if operator is None:
                raise UnknownOperatorError()
            if operator.country.dialing_code and not digits.startswith(operator.country.dialing_code):
                raise OperatorMismatchError()
            return named
        looked_up = self._looked_up(msisdn)
        if looked_up is not None:
            return looked_up
        for length in range(min(len(digits), self.longest_prefix), 1, -1):
            operator_id = self.prefixes.get(digits[:length])
            if operator_id is not None:
                return operator_id
        raise NoOperatorError()

    def _looked_up(self, msisdn: str) -> int | None:
        if self.lookups is not None:
            return self.lookups.get(msisdn)
        found = (
            NumberLookup.objects.filter(msisdn=msisdn, expires_at__gt=self.at, operator_id__in=self.operators)
            .order_by("-looked_up_at")
            .values_list("operator_id", flat=True)
            .first()
        )
        return found

    def sale(
        self, *, msisdn: str, amount: int | None, product_id: int | None = None, operator_id: int | None = None
    ) -> Sale:
        operator_id = self.operator_id(msisdn, operator_id)
        product, amount = pick_product(self.products[operator_id], amount=amount, product_id=product_id)
        return sale_of(operator_id=operator_id, product=product, amount=amount, book=self.book)
