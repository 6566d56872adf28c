"""Price lists and their rules. A rule is never edited once written: a change is a new rule with
a later `effective_from` (never in the past, so no price already quoted or sold is re-explained)."""

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from catalog import pricing
from catalog.errors import BelowCostError
from catalog.models import Operator, PriceList, PriceRule, Product, RuleMethod
from core.errors import DomainError
from core.models import Seller

# How far in the past an effective_from may lie (a form filled in a minute ago), not more.
PAST_SLACK = timedelta(minutes=5)


def price_list_default() -> PriceList:
    price_list, _ = PriceList.objects.get_or_create(is_default=True, defaults={"name": "Default"})
    return price_list


def price_list_for_seller(*, seller: Seller) -> PriceList:
    price_list, _ = PriceList.objects.get_or_create(seller=seller, defaults={"name": f"{seller.name} prices"})
    return price_list


def price_rule_problems(
    *, operator: Operator | None, product: Product | None, method: str, basis_points: int, allow_below_cost: bool
) -> list[str]:
    """The products the rule would price below their current cost (empty when allowed)."""
    if allow_below_cost:
        return []
    products = (
        [product] if product is not None else list(Product.objects.filter(operator=operator, withdrawn_at__isnull=True))
    )
    problems = []
    for item in products:
        version = item.current_version
        if version is None:
            continue
        amounts = [version.amount] if version.amount is not None else [version.min_amount, version.max_amount]
        for amount in amounts:
            cost = pricing.product_cost(version, amount)
            price = pricing.rule_price(
                method=method, basis_points=basis_points, face=pricing.face_value(version, amount), cost=cost
            )
            if price is not None and price < cost:
                problems.append(f"product {item.pk} ({item.name}): price {price} < cost {cost} at amount {amount}")
                break
    return problems


@transaction.atomic
def price_rule_create(
    *,
    price_list: PriceList,
    method: str,
    basis_points: int,
    operator: Operator | None = None,
    product: Product | None = None,
    effective_from: datetime | None = None,
    allow_below_cost: bool = False,
    created_by=None,
) -> PriceRule:
    if (operator is None) == (product is None):
        raise DomainError("A rule names either an operator or a product.")
    if method not in RuleMethod.values:
        raise DomainError(f"method: one of {', '.join(RuleMethod.values)}")
    now = timezone.now()
    effective_from = effective_from or now
    if effective_from < now - PAST_SLACK:
        raise DomainError("effective_from: a rule cannot start in the past (prices already quoted would change).")
    problems = price_rule_problems(
        operator=operator, product=product, method=method, basis_points=basis_points, allow_below_cost=allow_below_cost
    )
    if problems:
        raise BelowCostError(f"{BelowCostError.default_detail} {'; '.join(problems[:10])}")
    return PriceRule.objects.create(
        price_list=price_list,
        operator=operator,
        product=product,
        method=method,
        basis_points=basis_points,
        effective_from=effective_from,
        allow_below_cost=allow_below_cost,
        created_by=created_by,
    )
