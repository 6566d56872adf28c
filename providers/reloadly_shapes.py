"""Reading Reloadly's top-up transactions and error answers into the provider interface's terms
(providers/base.py): which status is which Outcome, which `errorCode` is which failure code or
refusal. Our reading of Reloadly's contract and every assumption in it: docs/provider.md, "Reloadly"."""

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from core.currencies import UnknownCurrency, exponent, to_minor
from providers.base import Outcome

STATUS_OUTCOMES = {
    "SUCCESSFUL": Outcome.SUCCEEDED,
    "PENDING": Outcome.PENDING,
    "PROCESSING": Outcome.PENDING,  # the name Reloadly's own SDKs give it
    "FAILED": Outcome.FAILED,
    "REFUNDED": Outcome.REVERSED,  # completed, then refunded to our account
}
# errorCode of a refused top-up -> (failure code, refusal), when no transaction has our identifier.
REFUSALS = {
    "INSUFFICIENT_BALANCE": ("provider_rejected", "insufficient_balance"),
    "INVALID_RECIPIENT_PHONE": ("invalid_number", None),
    "INVALID_PHONE_NUMBER": ("invalid_number", None),
    "COULD_NOT_AUTO_DETECT_OPERATOR": ("invalid_number", None),
    "OPERATOR_UNAVAILABLE_OR_CURRENTLY_INACTIVE": ("provider_rejected", "product_unavailable"),
    "OPERATOR_NOT_IN_SERVICE": ("provider_rejected", "product_unavailable"),
    "COUNTRY_NOT_SUPPORTED": ("provider_rejected", "product_unavailable"),
    "INVALID_AMOUNT_FOR_OPERATOR": ("provider_rejected", "product_unavailable"),
    "TOPUP_TRANSACTION_FAILED": ("operator_declined", None),
    "PHONE_RECENTLY_RECHARGED": ("operator_declined", None),
}
# Refused for now, nothing processed: send again later.
TRANSIENT = frozenset({"TRANSACTION_CANNOT_BE_PROCESSED_AT_THE_MOMENT"})
# Refusals that may mean the identifier is ours from an earlier attempt: never believed without a record.
REUSED_MARKERS = ("DUPLICATE", "CUSTOM_IDENTIFIER")


class Unreadable(ValueError):
    pass


@dataclass(frozen=True)
class ReloadlyTransaction:
    reference: str
    external_id: str | None
    msisdn: str | None
    amount: int | None  # delivered, smallest unit of `currency`; None when finer than the currency
    currency: str | None
    created_at: datetime | None
    outcome: Outcome
    status: str
    product_id: str | None
    cost: int | None
    cost_currency: str | None


def _moment(raw) -> datetime | None:
    """`yyyy-MM-dd HH:mm:ss`, which we read as UTC."""
    try:
        return datetime.strptime(str(raw), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def _exact(value, currency) -> int | None:
    try:
        return to_minor(Decimal(str(value)), currency) if value is not None and currency else None
    except (UnknownCurrency, ValueError, InvalidOperation):
        return None


def _cost(data: dict) -> int | None:
    """What the top-up took from our account: the requested amount less the discount, both in our
    currency, rounded to its smallest unit (Reloadly states more decimals)."""
    currency = data.get("requestedAmountCurrencyCode")
    try:
        paid = Decimal(str(data["requestedAmount"])) - Decimal(str(data.get("discount") or 0))
        if data.get("discountCurrencyCode") not in (None, currency):
            return None
        return int(paid.scaleb(exponent(currency)).to_integral_value(rounding=ROUND_HALF_UP))
    except (KeyError, TypeError, InvalidOperation, UnknownCurrency):
        return None


def transaction_from(data) -> ReloadlyTransaction:
    """A top-up transaction; raises Unreadable without the fields we rely on."""
    if not isinstance(data, dict) or not isinstance(data.get("transactionId"), int):
        raise Unreadable(f"not a top-up: {str(data)[:200]}")
    if data.get("status") not in STATUS_OUTCOMES:
        raise Unreadable(f"top-up {data['transactionId']} has an unknown status {data.get('status')!r}")
    phone = data.get("recipientPhone")
    digits = str(phone).lstrip("+") if phone is not None else ""
    currency = data.get("deliveredAmountCurrencyCode")
    return ReloadlyTransaction(
        reference=str(data["transactionId"]),
        external_id=data.get("customIdentifier"),
        msisdn=f"+{digits}" if digits.isdigit() else None,
        amount=_exact(data.get("deliveredAmount"), currency),
        currency=currency,
        created_at=_moment(data.get("transactionDate")),
        outcome=STATUS_OUTCOMES[data["status"]],
        status=data["status"],
        product_id=str(data["operatorId"]) if data.get("operatorId") is not None else None,
        cost=_cost(data),
        cost_currency=data.get("requestedAmountCurrencyCode"),
    )


def error_code(payload) -> str | None:
    code = payload.get("errorCode") if isinstance(payload, dict) else None
    return code if isinstance(code, str) and code else None
