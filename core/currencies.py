"""ISO 4217 minor-unit exponents of the currencies the catalog and the provider adapters convert: providers state amounts
in major units with decimals (DT One: `{"amount": 2.5, "unit": "USD"}`), the ledger keeps integers
in the smallest unit. A currency missing here makes its products unreadable by a sync (counted and
logged as skipped), never a guessed exponent."""

from decimal import Decimal

EXPONENTS = {
    "AED": 2, "BDT": 2, "BRL": 2, "COP": 2, "EGP": 2, "EUR": 2, "GBP": 2, "GHS": 2, "IDR": 2, "INR": 2,
    "IRR": 2, "JPY": 0, "KES": 2, "MXN": 2, "NGN": 2, "PHP": 2, "PKR": 2, "TRY": 2, "UGX": 0, "USD": 2,
    "VND": 0, "XOF": 0, "ZAR": 2,
}  # fmt: skip


class UnknownCurrency(ValueError):
    pass


def exponent(currency: str) -> int:
    try:
        return EXPONENTS[currency]
    except KeyError:
        raise UnknownCurrency(f"unknown currency {currency!r}") from None


def to_minor(amount, currency: str) -> int:
    """A provider's major-unit amount (int, float from JSON, or str) as an exact integer of the
    smallest unit; an amount with more decimals than the currency has is refused."""
    scaled = Decimal(str(amount)).scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} {currency} has more decimals than the currency")
    return int(scaled)


def rate_to_minor(rate, *, per: str, of: str) -> Decimal:
    """A provider's rate `rate` units of `of` for 1 unit of `per` (major units both) as `per`'s
    smallest units per one smallest unit of `of`: what `ProductVersion.cost_rate` holds."""
    return (Decimal(10) ** exponent(per)) / (Decimal(str(rate)) * Decimal(10) ** exponent(of))
