"""Reads of the catalog: which operator serves a number, what a seller can sell to it, at what
price. No network call and no write: the provider's lookups are read from their cache
(NumberLookup), run by a worker (catalog.tasks)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import Q
from django.db.models.functions import Length
from django.utils import timezone

from catalog import pricing
from catalog.errors import NoOperatorError, OperatorMismatchError, UnknownOperatorError
from catalog.models import NumberingPrefix, NumberLookup, Operator, PriceRule, Product, ProductVersion
from core.db.prepared import PreparedStatement, array_literal

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


# The version's columns a sale reads (catalog.sales.pick_product, catalog.pricing).
_VERSION_FIELDS = (
    "id", "product_id", "kind", "service", "destination_currency", "amount", "min_amount", "max_amount",
    "amount_step", "cost", "cost_rate", "retail_price", "retail_rate",
)  # fmt: skip

# The products on sale of a number's operator, with their current versions, in one statement: the
# operator named ($2), else the provider's fresh lookup of the number ($1), else its longest
# numbering prefix ($3: the number's leading digits, every length), as `operator_for_number`
# decides (tests/catalog/test_number_products.py holds them to the same answers). The hot read of a
# charge POST, so prepared, like the charge's insert: the ORM's compilation of it cost more than
# the rest of the request.
_NUMBER_PRODUCTS = PreparedStatement(
    "catalog_number_products",
    f"""WITH operator AS (
        SELECT coalesce(
            $2,
            (SELECT l.operator_id FROM catalog_numberlookup l JOIN catalog_operator o ON o.id = l.operator_id
              WHERE l.msisdn = $1 AND l.expires_at > clock_timestamp() AND o.enabled AND o.withdrawn_at IS NULL
              ORDER BY l.looked_up_at DESC LIMIT 1),
            (SELECT n.operator_id FROM catalog_numberingprefix n JOIN catalog_operator o ON o.id = n.operator_id
              WHERE n.prefix = ANY($3) AND o.enabled AND o.withdrawn_at IS NULL
              ORDER BY length(n.prefix) DESC, n.operator_id LIMIT 1)) AS id
    )
    SELECT p.id, p.operator_id, p.name, c.dialing_code, {", ".join(f"v.{f}" for f in _VERSION_FIELDS)}
      FROM operator
      JOIN catalog_operator o ON o.id = operator.id AND o.enabled AND o.withdrawn_at IS NULL
      JOIN catalog_country c ON c.id = o.country_id
      JOIN catalog_product p ON p.operator_id = o.id AND p.enabled AND p.withdrawn_at IS NULL
      JOIN catalog_productversion v ON v.id = p.current_version_id
     ORDER BY p.id""",
    ["varchar", "bigint", "varchar[]"],
)


def products_for_number(*, msisdn: str, operator_id: int | None = None) -> list[Product]:
    """What `products_on_sale(operator=operator_for_number(...).operator)` answers, in one
    statement. Empty when no operator serves the number or it sells nothing: the caller asks
    `operator_for_number` then, to tell which (an error path only)."""
    digits = msisdn.removeprefix("+")
    with connection.cursor() as cursor:
        _NUMBER_PRODUCTS.execute(
            cursor, [msisdn, operator_id, array_literal(digits[:n] for n in range(2, len(digits) + 1))]
        )
        rows = cursor.fetchall()
    products = []
    for product_id, operator, name, dialing_code, *version in rows:
        if operator_id is not None and dialing_code and not digits.startswith(dialing_code):
            raise OperatorMismatchError()
        product = Product(id=product_id, operator_id=operator, name=name, current_version_id=version[0])
        product.current_version = ProductVersion(**dict(zip(_VERSION_FIELDS, version, strict=True)))
        products.append(product)
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


# The rules of the default list and of the seller's own ($1) for these products ($2) or their
# operators ($3), in force at $4, latest first. Prepared: read by every charge POST.
_PRICE_RULES = PreparedStatement(
    "catalog_price_rules",
    """SELECT r.id, l.is_default, r.product_id, r.operator_id, r.method, r.basis_points, r.allow_below_cost
         FROM catalog_pricerule r JOIN catalog_pricelist l ON l.id = r.price_list_id
        WHERE (l.is_default OR l.seller_id = $1) AND (r.product_id = ANY($2) OR r.operator_id = ANY($3))
          AND r.effective_from <= $4
        ORDER BY r.effective_from DESC, r.id DESC""",
    ["bigint", "bigint[]", "bigint[]", "timestamptz"],
)


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
        seller_id = getattr(seller, "pk", seller)
        with connection.cursor() as cursor:
            _PRICE_RULES.execute(
                cursor,
                [
                    seller_id,
                    array_literal(p.pk for p in products),
                    array_literal({p.operator_id for p in products}),
                    self.at,
                ],
            )
            rows = cursor.fetchall()
        # Keyed by (in the default list, "product" | "operator", id): the latest of each wins.
        self.rules: dict[tuple, PriceRule] = {}
        for rule_id, in_default_list, product_id, operator_id, method, basis_points, allow_below_cost in rows:
            rule = PriceRule(
                id=rule_id,
                product_id=product_id,
                operator_id=operator_id,
                method=method,
                basis_points=basis_points,
                allow_below_cost=allow_below_cost,
            )
            key = (in_default_list, "product", product_id) if product_id else (in_default_list, "operator", operator_id)
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
