"""Reading Reloadly's airtime operators and countries into the provider interface's catalog
(providers/base.py). Reloadly sells by operator: a RANGE operator is one ranged product (its id is
the operator id), a FIXED operator one fixed product per amount (`<operator id>:<amount in the
smallest unit>`); a charge names either, and the adapter sends the operator id. Amounts are the
destination currency's (`localMinAmount`, `localFixedAmounts`); the cost in our account's currency
is the amount at the operator's FX rate (destination units per account unit) less its
`internationalDiscount` (percent). An operator that takes no local amounts cannot deliver an exact
destination amount and is not sold. Assumptions: docs/provider.md, "Reloadly"."""

import math
from decimal import Decimal

from core.countries import alpha3
from core.currencies import UnknownCurrency, exponent, to_minor
from providers.base import CatalogCountry, CatalogOperator, CatalogProduct, UnreadableProduct
from providers.dtone_catalog import minor_rate


def operator_id(product_id: str) -> str:
    """The operator a catalog product id names (`202`, `203:500000`)."""
    return product_id.split(":", 1)[0]


def country_from(data: dict) -> CatalogCountry:
    codes = [str(code).lstrip("+") for code in data.get("callingCodes") or [] if str(code).lstrip("+").isdigit()]
    iso = alpha3(str(data["isoName"]))
    if iso is None:
        raise KeyError(f"unknown country {data['isoName']!r}")
    return CatalogCountry(iso_code=iso, name=str(data["name"]), calling_code=codes[0] if codes else None)


def operator_from(data: dict) -> CatalogOperator:
    country = data["country"]
    iso = alpha3(str(country["isoName"]))
    if iso is None:
        raise KeyError(f"unknown country {country['isoName']!r}")
    return CatalogOperator(
        provider_operator_id=str(data["id"]),
        name=str(data["name"]),
        country_iso_code=iso,
        country_name=str(country["name"]),
    )


def discounted_rate(data: dict) -> Decimal:
    """Destination units we get for one unit of our currency, after the operator's discount."""
    rate, discount = Decimal(str(data["fx"]["rate"])), Decimal(str(data.get("internationalDiscount") or 0))
    if rate <= 0 or not 0 <= discount < 100:
        raise ValueError(f"fx rate {rate}, discount {discount}%")
    return rate / (1 - discount / 100)


def products_from(data) -> list[CatalogProduct | UnreadableProduct]:
    operator = str(data.get("id")) if isinstance(data, dict) else "?"
    try:
        if data.get("supportsLocalAmounts") is not True:
            return [UnreadableProduct(operator, "takes amounts in our currency only: no exact destination amount")]
        destination, cost_currency = data["destinationCurrencyCode"], data["senderCurrencyCode"]
        rate, effective = Decimal(str(data["fx"]["rate"])), discounted_rate(data)
        common = {
            "operator": operator_from(data),
            "provider_type": data["denominationType"],
            "service": "data" if data.get("data") is True else "airtime",
            "destination_currency": destination,
            "cost_currency": cost_currency,
        }
        if data["denominationType"] == "RANGE":
            return [
                CatalogProduct(
                    provider_product_id=operator,
                    name=str(data["name"]),
                    kind="ranged",
                    min_amount=to_minor(data["localMinAmount"], destination),
                    max_amount=to_minor(data["localMaxAmount"], destination),
                    cost=0,
                    cost_rate=minor_rate(effective, per=cost_currency, of=destination),
                    retail_rate=minor_rate(rate, per=cost_currency, of=destination),
                    **common,
                )
            ]
        if data["denominationType"] == "FIXED":
            return [
                CatalogProduct(
                    provider_product_id=f"{operator}:{to_minor(local, destination)}",
                    name=f"{data['name']} {local} {destination}",
                    kind="fixed",
                    amount=to_minor(local, destination),
                    cost=_price(local, effective, cost_currency),
                    retail_price=_price(local, rate, cost_currency),
                    **common,
                )
                for local in data.get("localFixedAmounts") or []
            ]
        return [UnreadableProduct(operator, f"denominationType {data['denominationType']!r}")]
    except UnknownCurrency as exc:
        return [UnreadableProduct(operator, str(exc))]
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        return [UnreadableProduct(operator, f"{type(exc).__name__}: {exc}")]


def _price(local, rate: Decimal, currency: str) -> int:
    """`local` destination units at `rate`, in our currency's smallest unit, rounded up."""
    return math.ceil(Decimal(str(local)) / rate * Decimal(10) ** exponent(currency))
