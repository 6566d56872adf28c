"""Reads of the catalog: which operator serves a number, what a seller can sell to it, at what
price. No network call and no write: the provider's lookups are read from their cache
(NumberLookup), run by a worker (catalog.tasks)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q
from django.db.models.functions import Length
from django.utils import timezone

from catalog import pricing
from catalog.errors import NoOperatorError, OperatorMismatchError, UnknownOperatorError
from catalog.models import NumberingPrefix, NumberLookup, Operator, PriceList, PriceRule, Product, ProductVersion

ON_SALE = Q(enabled=True, withdrawn_at__isnull=True)


@dataclass(frozen=True)
class ResolvedOperator:
    operator: Operator
    source: str  # "explicit" (the seller named it), "lookup" (the provider's, cached), "prefix"


def operator_on_sale(*, operator_id: int) -> Operator:
    operator = Operator.objects.select_related("country").filter(ON_SALE, pk=operator_id).first()
    if operator is None:
        raise UnknownOperatorError()
    return operator


def operator_for_number(*, msisdn: str, operator_id: int | None = None) -> ResolvedOperator:
    """The operator a number (E.164) is sold for: the one the seller names, which wins (a ported
    number); else the provider's cached lookup while fresh; else the longest numbering prefix.
    Raises NoOperatorError (400 `no_operator`) when none serves it."""
    digits = msisdn.removeprefix("+")
    if operator_id is not None:
        operator = operator_on_sale(operator_id=operator_id)
        if operator.country.dialing_code and not digits.startswith(operator.country.dialing_code):
            raise OperatorMismatchError()
        return ResolvedOperator(operator, "explicit")
    lookup = (
        NumberLookup.objects.select_related("operator__country")
        .filter(msisdn=msisdn, expires_at__gt=timezone.now(), operator__enabled=True)
        .filter(operator__withdrawn_at__isnull=True)
        .order_by("-looked_up_at")
        .first()
    )
    if lookup is not None:
        return ResolvedOperator(lookup.operator, "lookup")
    match = (
        NumberingPrefix.objects.select_related("operator__country")
        .filter(prefix__in=[digits[:n] for n in range(2, len(digits) + 1)])
        .filter(operator__enabled=True, operator__withdrawn_at__isnull=True)
        .order_by(Length("prefix").desc(), "operator_id")
        .first()
    )
    if match is None:
        raise NoOperatorError()
    return ResolvedOperator(match.operator, "prefix")


def number_lookup_due(*, msisdn: str) -> bool:
    """Whether the provider should be asked about the number (no fresh answer cached)."""
    return not NumberLookup.objects.filter(msisdn=msisdn, expires_at__gt=timezone.now()).exists()


def products_on_sale(*, operator: Operator) -> list[Product]:
    return list(
        Product.objects.filter(ON_SALE, operator=operator, current_version__isnull=False)
        .select_related("current_version")
        .order_by("id")
    )


def product_on_sale(*, product_id: int) -> Product | None:
    return (
        Product.objects.filter(ON_SALE, pk=product_id, operator__enabled=True, operator__withdrawn_at__isnull=True)
        .select_related("current_version", "operator__country")
        .first()
    )


@dataclass(frozen=True)
class Price:
    price: int
    cost: int
    face_value: int | None
    rule: PriceRule | None


class PriceBook:
    """Every rule that can price `products` for `seller` at `at`, read in one query; `price()`
    then picks per product and amount, in this order: the seller's own list (a product rule,
    else an operator rule), then the default list (the same), the latest `effective_from` of each
    kind winning; with no rule, the face value. A price below cost is no price unless the rule
    that made it allows it."""

    def __init__(self, *, seller, products: Iterable[Product], at: datetime | None = None):
        self.at = at or timezone.now()
        products = list(products)
        wanted = Q(is_default=True) | Q(seller=seller) if seller is not None else Q(is_default=True)
        # The seller's own list first (is_default False sorts first), then the default one.
        self.layers = [lst.pk for lst in sorted(PriceList.objects.filter(wanted), key=lambda lst: lst.is_default)]
        rules = PriceRule.objects.filter(
            Q(product__in=[p.pk for p in products]) | Q(operator__in={p.operator_id for p in products}),
            price_list__in=self.layers,
            effective_from__lte=self.at,
        ).order_by("-effective_from", "-id")
        self.rules: dict[tuple, PriceRule] = {}
        for rule in rules:
            key = (rule.price_list_id, "product", rule.product_id) if rule.product_id else (
                rule.price_list_id, "operator", rule.operator_id)  # fmt: skip
            self.rules.setdefault(key, rule)

    def rule_for(self, product: Product) -> PriceRule | None:
        for layer in self.layers:
            rule = self.rules.get((layer, "product", product.pk)) or self.rules.get(
                (layer, "operator", product.operator_id)
            )
            if rule is not None:
                return rule
        return None

    def price(self, product: Product, version: ProductVersion, amount: int) -> Price | None:
        return price_of(version=version, amount=amount, rule=self.rule_for(product))


def price_of(*, version: ProductVersion, amount: int, rule: PriceRule | None) -> Price | None:
    cost = pricing.product_cost(version, amount)
    face = pricing.face_value(version, amount)
    if rule is None:
        price = face
    else:
        price = pricing.rule_price(method=rule.method, basis_points=rule.basis_points, face=face, cost=cost)
    if price is None or price <= 0:
        return None
    if price < cost and not (rule is not None and rule.allow_below_cost):
        return None
    return Price(price=price, cost=cost, face_value=face, rule=rule)
