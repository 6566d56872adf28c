"""Reads of the catalog: which operator serves a number, what a seller can sell to it, at what
price. No network call and no write: the provider's lookups are read from their cache
(NumberLookup), run by a worker (catalog.tasks)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import F, Q, Subquery
from django.db.models.functions import Coalesce, Length
from django.utils import timezone

from catalog import pricing
from catalog.errors import NoOperatorError, OperatorMismatchError, UnknownOperatorError
from catalog.models import NumberingPrefix, NumberLookup, Operator, PriceRule, Product, ProductVersion

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
    if operator_id is not None:
        return ResolvedOperator(_named_operator(msisdn, operator_on_sale(operator_id=operator_id)), "explicit")
    lookup = _fresh_lookups(msisdn).select_related("operator__country").first()
    if lookup is not None:
        return ResolvedOperator(lookup.operator, "lookup")
    match = _prefix_matches(msisdn).select_related("operator__country").first()
    if match is None:
        raise NoOperatorError()
    return ResolvedOperator(match.operator, "prefix")


def _named_operator(msisdn: str, operator: Operator) -> Operator:
    code = operator.country.dialing_code
    if code and not msisdn.removeprefix("+").startswith(code):
        raise OperatorMismatchError()
    return operator


def _fresh_lookups(msisdn: str):
    """The provider's answers for the number still trusted, about operators on sale, newest first."""
    return NumberLookup.objects.filter(
        msisdn=msisdn, expires_at__gt=timezone.now(), operator__enabled=True, operator__withdrawn_at__isnull=True
    ).order_by("-looked_up_at")


def _prefix_matches(msisdn: str):
    """The numbering prefixes of operators on sale that the number starts with, longest first."""
    digits = msisdn.removeprefix("+")
    return (
        NumberingPrefix.objects.filter(prefix__in=[digits[:n] for n in range(2, len(digits) + 1)])
        .filter(operator__enabled=True, operator__withdrawn_at__isnull=True)
        .order_by(Length("prefix").desc(), "operator_id")
    )


def products_for_number(*, msisdn: str, operator_id: int | None = None) -> list[Product]:
    """What `products_on_sale(operator=operator_for_number(...))` answers, in one query: the
    operator found in the database, as a subquery (named, else looked up, else by prefix). Empty
    when no operator serves the number or it sells nothing: the caller asks
    `operator_for_number` then, to tell which (an error path only)."""
    if operator_id is not None:
        operator = Q(operator_id=operator_id)
    else:
        found = Coalesce(
            Subquery(_fresh_lookups(msisdn).values("operator_id")[:1]),
            Subquery(_prefix_matches(msisdn).values("operator_id")[:1]),
        )
        operator = Q(operator_id=found)
    products = list(
        Product.objects.filter(ON_SALE, operator, current_version__isnull=False)
        .filter(operator__enabled=True, operator__withdrawn_at__isnull=True)
        .select_related("current_version", "operator__country")
        .order_by("id")
    )
    if operator_id is not None and products:
        _named_operator(msisdn, products[0].operator)
    return products


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
    """Every rule that can price `products` for `seller` at `at`, read in one query (with the
    list each belongs to); `price()`
    then picks per product and amount, in this order: the seller's own list (a product rule,
    else an operator rule), then the default list (the same), the latest `effective_from` of each
    kind winning; with no rule, the face value. A price below cost is no price unless the rule
    that made it allows it."""

    def __init__(self, *, seller, products: Iterable[Product], at: datetime | None = None):
        self.at = at or timezone.now()
        products = list(products)
        of_lists = (
            Q(price_list__is_default=True) | Q(price_list__seller=seller)
            if seller is not None
            else Q(price_list__is_default=True)
        )
        rules = (
            PriceRule.objects.filter(
                of_lists,
                Q(product__in=[p.pk for p in products]) | Q(operator__in={p.operator_id for p in products}),
                effective_from__lte=self.at,
            )
            .annotate(in_default_list=F("price_list__is_default"))
            .order_by("-effective_from", "-id")
        )
        # Keyed by (in the default list, "product" | "operator", id): the latest of each wins.
        self.rules: dict[tuple, PriceRule] = {}
        for rule in rules:
            key = (rule.in_default_list, "product", rule.product_id) if rule.product_id else (
                rule.in_default_list, "operator", rule.operator_id)  # fmt: skip
            self.rules.setdefault(key, rule)

    def rule_for(self, product: Product) -> PriceRule | None:
        for in_default_list in (False, True):  # the seller's own list first, then the default one
            rule = self.rules.get((in_default_list, "product", product.pk)) or self.rules.get(
                (in_default_list, "operator", product.operator_id)
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
