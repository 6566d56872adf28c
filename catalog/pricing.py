"""Arithmetic of costs and prices, in integers of the platform currency's smallest unit. Pure:
no queries, so the listing and the quote compute the same numbers for the same inputs."""

from decimal import ROUND_CEILING, Decimal

from catalog.models import ProductKind, ProductVersion, RuleMethod

BASIS = 10_000  # basis points in one whole


def _ceil_times(amount: int, rate: Decimal) -> int:
    return int((Decimal(amount) * rate).to_integral_value(rounding=ROUND_CEILING))


def in_range(version: ProductVersion, amount: int) -> bool:
    if version.kind == ProductKind.FIXED:
        return amount == version.amount
    on_step = version.amount_step is None or (amount - version.min_amount) % version.amount_step == 0
    return version.min_amount <= amount <= version.max_amount and on_step


def product_cost(version: ProductVersion, amount: int) -> int:
    """What the provider charges us for `amount` destination units of this version (rounded up:
    a cost is never understated)."""
    return cost_of(version.kind, version.cost, version.cost_rate, amount)


def cost_of(kind: str, cost: int, cost_rate: Decimal | None, amount: int) -> int:
    """`product_cost` from a version's cost terms alone (the fulfilment's routing reads them in
    bulk, without a model instance per route)."""
    if kind == ProductKind.FIXED:
        return cost
    return cost + _ceil_times(amount, cost_rate)


def face_value(version: ProductVersion, amount: int) -> int | None:
    """The provider's retail price in the platform currency, or None when it gives none."""
    if version.kind == ProductKind.FIXED:
        return version.retail_price
    return None if version.retail_rate is None else _ceil_times(amount, version.retail_rate)


def rule_price(*, method: str, basis_points: int, face: int | None, cost: int) -> int | None:
    """A discount is taken off face value (rounded down, so the price rounds up); a markup is added
    to cost (rounded up). None when the rule needs a face value the product does not have."""
    if method == RuleMethod.DISCOUNT:
        if face is None:
            return None
        return face - face * basis_points // BASIS
    return cost - (-cost * basis_points // BASIS)
