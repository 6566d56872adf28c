"""Reading DT One DVS's transactions, errors and balances into the provider interface's terms
(providers/base.py): which status class is which Outcome, which status or error code is which
failure code or refusal. Our reading of DVS's contract and every assumption in it:
docs/provider.md, "DT One DVS"."""

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal, InvalidOperation

from core.currencies import UnknownCurrency, exponent, to_minor
from providers.base import Balance, Outcome

# By status class, as DT One recommends (developers.dtone.com, "Handling Transactions"); its class
# ids alongside, read when a class comes without its name.
CLASS_OUTCOMES = {
    "CREATED": Outcome.PENDING,  # we always auto-confirm: confirmation is under way
    "CONFIRMED": Outcome.PENDING,
    "SUBMITTED": Outcome.PENDING,
    "COMPLETED": Outcome.SUCCEEDED,
    "REVERSED": Outcome.REVERSED,
    "REJECTED": Outcome.FAILED,  # refused by DT One before reaching the operator
    "CANCELLED": Outcome.FAILED,
    "DECLINED": Outcome.FAILED,  # refused by the operator
}
CLASS_NAMES = {1: "CREATED", 2: "CONFIRMED", 3: "REJECTED", 4: "CANCELLED", 5: "SUBMITTED", 7: "COMPLETED",
               8: "REVERSED", 9: "DECLINED"}  # fmt: skip

# API error codes (the `errors[].code` of a 4xx) that say why a create was refused.
INSUFFICIENT_BALANCE = 1006001
PRODUCT_UNAVAILABLE = (1003001, 1003002, 1003003)  # not in our account, amount out of range, unit invalid
INVALID_NUMBER = (1005003,)
ID_ALREADY_USED = 1007001


class Unreadable(ValueError):
    pass


@dataclass(frozen=True)
class DvsTransaction:
    reference: str
    external_id: str
    msisdn: str | None
    amount: int | None  # requested destination amount, smallest unit of `currency`
    currency: str | None
    created_at: datetime | None
    outcome: Outcome
    failure_code: str | None
    refusal: str | None
    status: str  # DT One's status message
    product_id: str | None
    cost: int | None
    cost_currency: str | None


def failure_of(status_class: str, message: str) -> tuple[str | None, str | None]:
    """(failure code, refusal) of a final unsuccessful status."""
    if status_class not in ("REJECTED", "CANCELLED", "DECLINED"):
        return None, None
    if "INVALID-CREDIT-PARTY" in message:
        return "invalid_number", None
    if message == "REJECTED-INSUFFICIENT-BALANCE":
        return "provider_rejected", "insufficient_balance"
    if status_class == "DECLINED" or "CREDIT-PARTY" in message or "OPERATOR" in message:
        return "operator_declined", None  # about the number or the operator: never another provider
    return "provider_rejected", None


def _money(value, unit) -> int | None:
    try:
        return to_minor(Decimal(str(value)), unit) if value is not None and unit else None
    except (UnknownCurrency, ValueError, InvalidOperation):
        return None


def _moment(raw) -> datetime | None:
    try:
        moment = datetime.fromisoformat(raw)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def transaction_from(data) -> DvsTransaction:
    """A DVS transaction object; raises Unreadable without the fields we rely on."""
    if not isinstance(data, dict) or not isinstance(data.get("id"), int):
        raise Unreadable(f"not a transaction: {str(data)[:200]}")
    status = data.get("status") if isinstance(data.get("status"), dict) else {}
    status_class = status.get("class") if isinstance(status.get("class"), dict) else {}
    class_name = status_class.get("message") or CLASS_NAMES.get(status_class.get("id"))
    if class_name not in CLASS_OUTCOMES or not isinstance(data.get("external_id"), str):
        raise Unreadable(f"transaction without a known status class or external id: {str(data)[:200]}")
    message = str(status.get("message") or class_name)
    failure_code, refusal = failure_of(class_name, message)
    party = data.get("credit_party_identifier") or {}
    destination = ((data.get("requested_values") or {}).get("destination")) or {}
    wholesale = ((data.get("prices") or {}).get("wholesale")) or {}
    cost = _money(wholesale.get("amount"), wholesale.get("unit"))
    fee = _money(wholesale.get("fee") or 0, wholesale.get("unit"))
    product = data.get("product") or {}
    return DvsTransaction(
        reference=str(data["id"]),
        external_id=data["external_id"],
        msisdn=party.get("mobile_number") if isinstance(party, dict) else None,
        amount=_money(destination.get("amount"), destination.get("unit")),
        currency=destination.get("unit"),
        created_at=_moment(data.get("creation_date")),
        outcome=CLASS_OUTCOMES[class_name],
        failure_code=failure_code,
        refusal=refusal,
        status=message,
        product_id=str(product["id"]) if isinstance(product, dict) and product.get("id") is not None else None,
        cost=None if cost is None or fee is None else cost + fee,
        cost_currency=wholesale.get("unit"),
    )


def error_codes(payload) -> list[int]:
    """The codes of a DVS error body `{"errors": [{code, message}]}`."""
    errors = payload.get("errors") if isinstance(payload, dict) else None
    return [e["code"] for e in errors or [] if isinstance(e, dict) and isinstance(e.get("code"), int)]


def refusal_of(codes: list[int]) -> tuple[str, str | None]:
    """(failure code, refusal) of a create refused with these error codes and no transaction."""
    if INSUFFICIENT_BALANCE in codes:
        return "provider_rejected", "insufficient_balance"
    if any(code in PRODUCT_UNAVAILABLE for code in codes):
        return "provider_rejected", "product_unavailable"
    if any(code in INVALID_NUMBER for code in codes):
        return "invalid_number", None
    return "provider_rejected", None


def balance_from(items, currency: str | None = None) -> Balance:
    """The account balance in `currency` (the first one without it) from `GET /balances`; raises
    Unreadable. DVS states major units; an amount finer than the currency is floored."""
    if not isinstance(items, list):
        raise Unreadable(f"balances are a list, not {str(items)[:200]}")
    for item in items:
        if not isinstance(item, dict) or item.get("unit_type", "CURRENCY") != "CURRENCY":
            continue
        if currency is not None and item.get("unit") != currency:
            continue
        try:
            return Balance(
                available=floor_minor(item["available"], item["unit"]),
                currency=item["unit"],
                holding=floor_minor(item.get("holding") or 0, item["unit"]),
                credit_limit=floor_minor(item.get("credit_limit") or 0, item["unit"]),
            )
        except (KeyError, TypeError, ValueError, ArithmeticError, UnknownCurrency) as exc:
            raise Unreadable(f"unreadable balance {str(item)[:200]}: {exc}") from exc
    raise Unreadable(f"no balance in {currency or 'a currency'} among {str(items)[:200]}")


def floor_minor(value, currency: str) -> int:
    """A major-unit amount in the smallest unit, floored (balances may carry more decimals)."""
    return int(Decimal(str(value)).scaleb(exponent(currency)).to_integral_value(rounding=ROUND_FLOOR))
