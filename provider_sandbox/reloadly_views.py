"""The sandbox's catalog as Reloadly shows it: operators (each `RANGE` or `FIXED`, amounts in the
destination currency when `supportsLocalAmounts`, an FX rate and a discount) and countries, built
from the same DT One-shaped catalog the other dialects serve, so a top-up costs the account the
same whichever dialect asked for it.

Each DT One operator with a ranged airtime product becomes a RANGE operator with id 2 x its id;
one with fixed airtime products becomes a FIXED operator with id 2 x its id + 1 (Reloadly lists
separate operators per denomination type; these ids are the sandbox's own). The FX rate is the
products' retail rate (destination units per account unit), the discount what wholesale saves on
retail; the cost of a top-up is DT One's wholesale price of the same amount."""

import math
from dataclasses import dataclass
from decimal import Decimal

from core.countries import alpha2
from core.currencies import exponent, to_minor


@dataclass(frozen=True)
class Operator:
    view: dict  # what Reloadly answers
    country: str  # alpha-3, the catalog's key
    fixed: dict[int, dict]  # FIXED: destination amount (smallest unit) -> the DT One product priced so
    ranged: dict | None  # RANGE: the DT One product priced so


def _airtime(product: dict) -> bool:
    return ((product.get("service") or {}).get("subservice") or {}).get("name") == "Airtime"


def _discount(retail: float, wholesale: float) -> float:
    return float(round((1 - Decimal(str(retail)) / Decimal(str(wholesale))) * 100, 2))


def _base(operator: dict, reloadly_id: int, kind: str, unit: str, rate: float, discount: float) -> dict:
    country = operator["country"]
    return {
        "id": reloadly_id,
        "operatorId": reloadly_id,
        "name": operator["name"] if kind == "RANGE" else f"{operator['name']} fixed amounts",
        "bundle": False,
        "data": False,
        "pin": False,
        "supportsLocalAmounts": True,
        "denominationType": kind,
        "senderCurrencyCode": "USD",
        "senderCurrencySymbol": "$",
        "destinationCurrencyCode": unit,
        "destinationCurrencySymbol": unit,
        "commission": discount,
        "internationalDiscount": discount,
        "localDiscount": 0,
        "mostPopularAmount": None,
        "minAmount": None,
        "maxAmount": None,
        "localMinAmount": None,
        "localMaxAmount": None,
        "country": {"isoName": alpha2(country["iso_code"]), "name": country["name"]},
        "fx": {"rate": rate, "currencyCode": unit},
        "logoUrls": [],
        "fixedAmounts": [],
        "fixedAmountsDescriptions": {},
        "localFixedAmounts": [],
        "localFixedAmountsDescriptions": {},
        "suggestedAmounts": [],
        "suggestedAmountsMap": {},
        "promotions": [],
    }


def operators(catalog) -> dict[int, Operator]:
    found, by_operator = {}, {}
    for product in catalog.products:
        if _airtime(product):
            by_operator.setdefault(product["operator"]["id"], []).append(product)
    for operator in catalog.operators:
        mine = by_operator.get(operator["id"], [])
        ranged = [p for p in mine if p["type"] == "RANGED_VALUE_RECHARGE"]
        fixed = sorted(
            (p for p in mine if p["type"] == "FIXED_VALUE_RECHARGE"), key=lambda p: p["destination"]["amount"]
        )
        country = operator["country"]["iso_code"]
        if ranged:
            product = ranged[0]
            rates, bounds = product["rates"], product["destination"]["amount"]
            view = _base(
                operator, 2 * operator["id"], "RANGE", product["destination"]["unit"], rates["retail"],
                _discount(rates["retail"], rates["wholesale"]),
            ) | {
                "minAmount": product["prices"]["retail"]["amount"]["min"],
                "maxAmount": product["prices"]["retail"]["amount"]["max"],
                "localMinAmount": bounds["min"],
                "localMaxAmount": bounds["max"],
            }  # fmt: skip
            found[view["id"]] = Operator(view, country, {}, product)
        if fixed:
            first = fixed[0]
            unit = first["destination"]["unit"]
            view = _base(
                operator, 2 * operator["id"] + 1, "FIXED", unit, first["rates"]["retail"],
                _discount(first["rates"]["retail"], first["rates"]["wholesale"]),
            ) | {
                "fixedAmounts": [p["prices"]["retail"]["amount"] for p in fixed],
                "localFixedAmounts": [p["destination"]["amount"] for p in fixed],
            }  # fmt: skip
            found[view["id"]] = Operator(
                view, country, {to_minor(p["destination"]["amount"], unit): p for p in fixed}, None
            )
    return found


def countries(catalog) -> list[dict]:
    currencies = {}
    for product in catalog.products:
        currencies.setdefault(product["operator"]["country"]["iso_code"], product["destination"]["unit"])
    return [
        {
            "isoName": alpha2(country["iso_code"]),
            "name": country["name"],
            "currencyCode": currencies.get(country["iso_code"]),
            "currencyName": currencies.get(country["iso_code"]),
            "currencySymbol": "",
            "flag": "",
            "callingCodes": [f"+{country['calling_code']}"] if country.get("calling_code") else [],
        }
        for country in catalog.countries
    ]


def priced(operator: Operator, amount: int) -> tuple[int, Decimal] | None:
    """(our cost in account cents, the retail price in USD) of delivering `amount` (destination
    smallest unit), or None when the operator does not sell that amount."""
    view = operator.view
    unit = view["destinationCurrencyCode"]
    if operator.ranged is not None:
        low, high = to_minor(view["localMinAmount"], unit), to_minor(view["localMaxAmount"], unit)
        if not low <= amount <= high:
            return None
        major = Decimal(amount).scaleb(-exponent(unit))
        cost = math.ceil(major / Decimal(str(operator.ranged["rates"]["wholesale"])) * 100)
        return cost, round(major / Decimal(str(view["fx"]["rate"])), 5)
    product = operator.fixed.get(amount)
    if product is None:
        return None
    wholesale, retail = product["prices"]["wholesale"], product["prices"]["retail"]
    cost = to_minor(Decimal(str(wholesale["amount"])) + Decimal(str(wholesale.get("fee") or 0)), "USD")
    return cost, Decimal(str(retail["amount"]))
