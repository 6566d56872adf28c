"""Reading DT One DVS catalog objects (products, operators, countries, lookups) into the provider
interface's terms (providers/base.py). Amounts arrive in major units with decimals and
leave as integers of the smallest unit (core/currencies.py); a product this cannot read exactly
becomes an UnreadableProduct with the reason, never a guess. Our reading of DVS's shapes, and
every assumption in it: docs/provider.md, "The catalog"."""

from decimal import ROUND_CEILING, Decimal

from core.currencies import UnknownCurrency, rate_to_minor, to_minor
from providers.base import CatalogCountry, CatalogOperator, CatalogProduct, NumberOperator, UnreadableProduct

FIXED_TYPES = ("FIXED_VALUE_RECHARGE", "FIXED_VALUE_PIN_PURCHASE")
RANGED_TYPES = ("RANGED_VALUE_RECHARGE",)
DATA_SUBSERVICES = ("data", "bundles", "data bundles")
RATE_PLACES = Decimal("1e-12")  # ProductVersion.cost_rate's decimal places


def minor_rate(rate, *, per: str, of: str) -> Decimal:
    if rate is None or Decimal(str(rate)) <= 0:
        raise ValueError("a positive rate is required")
    return rate_to_minor(rate, per=per, of=of).quantize(RATE_PLACES, rounding=ROUND_CEILING)


def operator_from(data: dict) -> CatalogOperator:
    country = data["country"]
    return CatalogOperator(
        provider_operator_id=str(data["id"]),
        name=str(data["name"]),
        country_iso_code=str(country["iso_code"]),
        country_name=str(country["name"]),
        prefixes=tuple(str(p) for p in data.get("numbering_prefixes") or ()),
    )


def country_from(data: dict) -> CatalogCountry:
    code = data.get("calling_code")
    return CatalogCountry(
        iso_code=str(data["iso_code"]), name=str(data["name"]), calling_code=str(code) if code else None
    )


def lookup_from(data: dict) -> NumberOperator:
    return NumberOperator(
        provider_operator_id=str(data["id"]),
        name=str(data["name"]),
        country_iso_code=str(data["country"]["iso_code"]),
        identified=data.get("identified") is True,
    )


def _service(data: dict) -> str:
    subservice = ((data.get("service") or {}).get("subservice") or {}).get("name") or ""
    benefits = {b.get("type") for b in data.get("benefits") or [] if isinstance(b, dict)}
    return "data" if subservice.strip().lower() in DATA_SUBSERVICES or "DATA" in benefits else "airtime"


def _validity(data: dict) -> str:
    validity = data.get("validity")
    if not isinstance(validity, dict) or validity.get("quantity") is None:
        return ""
    return f"{validity['quantity']} {validity.get('unit') or ''}".strip()


def product_from(data) -> CatalogProduct | UnreadableProduct:
    product_id = str(data.get("id")) if isinstance(data, dict) else "?"
    try:
        kind_of = data["type"]
        destination, wholesale = data["destination"], data["prices"]["wholesale"]
        retail = (data.get("prices") or {}).get("retail") or {}
        dest_currency, cost_currency = destination["unit"], wholesale["unit"]
        if destination.get("unit_type", "CURRENCY") != "CURRENCY":
            return UnreadableProduct(product_id, f"destination unit_type {destination.get('unit_type')}")
        common = {
            "provider_product_id": product_id,
            "name": str(data["name"]),
            "operator": operator_from(data["operator"]),
            "provider_type": kind_of,
            "service": _service(data),
            "destination_currency": dest_currency,
            "cost_currency": cost_currency,
            "description": str(data.get("description") or "")[:500],
            "validity": _validity(data),
            "benefits": tuple(data.get("benefits") or ()),
        }
        if kind_of in FIXED_TYPES:
            retail_amount = retail.get("amount")
            return CatalogProduct(
                kind="fixed",
                amount=to_minor(destination["amount"], dest_currency),
                cost=to_minor(wholesale["amount"], cost_currency) + to_minor(wholesale.get("fee") or 0, cost_currency),
                retail_price=None
                if retail_amount is None or retail.get("unit") != cost_currency
                else to_minor(retail_amount, cost_currency) + to_minor(retail.get("fee") or 0, cost_currency),
                **common,
            )
        if kind_of in RANGED_TYPES:
            bounds, rates = destination["amount"], data.get("rates") or {}
            return CatalogProduct(
                kind="ranged",
                min_amount=to_minor(bounds["min"], dest_currency),
                max_amount=to_minor(bounds["max"], dest_currency),
                amount_step=to_minor(bounds["increment"], dest_currency) if bounds.get("increment") else None,
                cost=to_minor(wholesale.get("fee") or 0, cost_currency),
                cost_rate=minor_rate(rates.get("wholesale"), per=cost_currency, of=dest_currency),
                retail_rate=None
                if rates.get("retail") is None
                else minor_rate(rates["retail"], per=cost_currency, of=dest_currency),
                **common,
            )
        return UnreadableProduct(product_id, f"type {kind_of!r} is not sold here")
    except UnknownCurrency as exc:
        return UnreadableProduct(product_id, str(exc))
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        return UnreadableProduct(product_id, f"{type(exc).__name__}: {exc}")
